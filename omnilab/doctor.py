"""``omnilab doctor``: what works on this machine, what does not, and what to do about it.

Each check gives one line: ``ok``, ``warn`` (works, degraded, or only needed by some
commands) or ``problem`` (something a run needs is broken). The command exits non-zero
when there is a problem, so scripts and CI can gate on it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from omnilab.checks import Check, Status
from omnilab.redact import redact_text, redact_url

if TYPE_CHECKING:
    from omnilab.config import Settings


def check_ports() -> Check:
    from omnilab.runtimes import ports
    from omnilab.services import service_classes

    wanted = sorted({p for cls in service_classes().values() for p in cls.stack_ports.values()})
    busy = [p for p in wanted if not ports.is_free(p)]
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
    except OSError as exc:
        return Check(
            "ports", "problem", f"no free TCP port on 127.0.0.1 ({exc})", "free some ports"
        )
    free = [p for p in wanted if p not in busy]
    detail = f"free: {' '.join(map(str, free)) or 'none'}"
    if busy:
        detail += f"; busy: {' '.join(map(str, busy))} (stacks move to free ports)"
    return Check("ports", "ok", detail)


def check_tracking(settings: Settings) -> Check:
    dsn = settings.tracking_dsn
    if not dsn:
        return Check("tracking store", "ok", settings.tracking_location)
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(
            "tracking store",
            "problem",
            f"{redact_url(dsn)} does not answer ({redact_text(first, dsn)})",
            "check OMNILAB_TRACKING_URL (or tracking_url in the config file)",
        )
    return Check("tracking store", "ok", redact_url(dsn))


def _promotion_targets() -> set[str]:
    """The services whose data a promotion can copy into production (the ``service``
    of each promotable kind); a kind whose plug-in cannot load counts for none."""
    from omnilab import plugins

    targets = set()
    for cls in plugins.available("promotable").values():
        service = getattr(cls, "service", None)
        if isinstance(service, str):
            targets.add(service)
    return targets


def check_production(settings: Settings) -> list[Check]:
    """Production services reachable: needed by ``omnilab promote`` (for the services
    it copies into), never by runs."""
    from omnilab.services import service_classes

    checks = []
    targets = _promotion_targets()
    for cls in service_classes().values():
        hint = (
            "`omnilab promote` copies into it; check the URL and that the service runs"
            if cls.name in targets
            else "runs do not need it; check the URL if your own code uses it"
        )
        url = cls.production_url(settings)
        if url is None:
            continue
        try:
            problem = cls.production_problem(settings)
        except Exception as exc:  # a URL its client cannot parse, say
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            problem = redact_text(problem, url)
        status: Status = "ok" if problem is None else "warn"
        detail = f"{redact_url(url)}" + ("" if problem is None else f" does not answer ({problem})")
        name = f"production {cls.env_names[0] if cls.env_names else cls.name}"
        checks.append(Check(name, status, detail, "" if problem is None else hint))
    return checks


def run_checks(settings: Settings) -> list[Check]:
    """Every runtime's lines (in ``auto``'s order of preference), then ports, the
    tracking store and production."""
    from omnilab.runtimes import runtime_classes

    runtimes = runtime_classes()
    order = sorted(runtimes, key=lambda n: runtimes[n].auto_preference)
    checks: list[Check] = []
    for name in order:
        found = runtimes[name].doctor_checks(settings)
        if settings.runtime != name and any(
            other != name and runtimes[other].unavailable_reason(settings, []) is None
            for other in runtimes
        ):
            # Another runtime can run the stacks: what this one lacks is only a warning.
            found = [
                Check(c.name, "warn" if c.status == "problem" else c.status, c.detail, c.hint)
                for c in found
            ]
        checks += found
    checks.append(check_ports())
    checks.append(check_tracking(settings))
    checks += check_production(settings)
    return checks

"""``omnilab doctor``: what works on this machine, what does not, and what to do about it.

Each check gives one line: ``ok``, ``warn`` (works, degraded, or only needed by some
commands) or ``problem`` (something a run needs is broken). The command exits non-zero
when there is a problem, so scripts and CI can gate on it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from omnilab.redact import redact_url

if TYPE_CHECKING:
    from omnilab.config import Settings

Status = Literal["ok", "warn", "problem"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _docker_needed(settings: Settings) -> bool:
    return settings.runtime == "docker"


def check_engine(settings: Settings) -> tuple[Check, Any | None]:
    from omnilab.errors import RuntimeUnavailable
    from omnilab.runtimes.docker.engine import connect, engine_address

    try:
        client = connect()
        version = client.version()
    except RuntimeUnavailable as exc:
        status: Status = "problem" if _docker_needed(settings) else "warn"
        hint = "start the engine or set DOCKER_HOST"
        if not _docker_needed(settings):
            hint += "; until then stacks run as local processes (--runtime auto)"
        return Check("docker engine", status, str(exc), hint), None
    detail = (
        f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) "
        f"at {engine_address()}"
    )
    return Check("docker engine", "ok", detail), client


def check_images(settings: Settings, client: Any) -> list[Check]:
    from omnilab.errors import ServiceUnavailable
    from omnilab.runtimes.docker.images import builder, recipes
    from omnilab.runtimes.docker.runtime import resolve_image
    from omnilab.services import SERVICES

    checks = []
    for name, cls in SERVICES.items():
        service = cls()
        try:
            recipe = resolve_image(client, service, None)
        except ServiceUnavailable as exc:
            status: Status = "problem" if _docker_needed(settings) else "warn"
            spec = recipes.for_service(name)
            hint = "omnilab images build" if spec else "docker load the image (README: air-gapped)"
            detail = str(exc).split("; ")[0].removeprefix(f"{name}: ")
            checks.append(Check(f"image {name}", status, detail, hint))
            continue
        if recipe is None:
            checks.append(Check(f"image {name}", "ok", f"{service.image()} (pulled on first use)"))
            continue
        spec = recipes.for_service(name)
        if spec and recipe.image == spec.tag:
            stale = builder.status(client, spec).stale
            if stale:
                checks.append(
                    Check(f"image {name}", "warn", f"{spec.tag}: {stale}", "omnilab images build")
                )
                continue
        checks.append(Check(f"image {name}", "ok", recipe.source))
    return checks


def check_gpu(client: Any | None) -> Check:
    from omnilab.gpu import host_gpus
    from omnilab.runtimes.docker.engine import gpu_support

    gpus = host_gpus()
    if not gpus:
        return Check("gpu", "ok", "no NVIDIA GPU on this host: runs use the CPU")
    names = ", ".join(f"{g.index}:{g.name}" for g in gpus)
    if client is None:
        return Check("gpu", "ok", f"{names} (local runtime)")
    support = gpu_support(client.info())
    if support.kind is None:
        return Check(
            "gpu",
            "warn",
            f"{names} on the host, but {support.detail}",
            "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure)",
        )
    return Check("gpu", "ok", f"{names}, passed to containers via {support.detail}")


def check_ports() -> Check:
    from omnilab.runtimes import ports
    from omnilab.services import SERVICES

    wanted = sorted({p for cls in SERVICES.values() for p in cls.stack_ports.values()})
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


def check_local(settings: Settings) -> list[Check]:
    from omnilab.errors import OmnilabError
    from omnilab.services import SERVICES

    checks = []
    for name, cls in SERVICES.items():
        try:
            recipe = cls().local_recipe(settings)
            checks.append(Check(f"local {name}", "ok", recipe.source))
        except OmnilabError as exc:
            status: Status = "warn" if name in ("ollama", "qdrant") else "problem"
            checks.append(Check(f"local {name}", status, str(exc).removeprefix(f"{name}: ")))
    return checks


def check_tracking(settings: Settings) -> Check:
    dsn = settings.tracking_dsn
    if not dsn:
        return Check("tracking store", "ok", f"embedded PostgreSQL under {settings.home}/")
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(
            "tracking store",
            "problem",
            f"{redact_url(dsn)} does not answer ({first})",
            "check OMNILAB_TRACKING_URL / POSTGRES_URL",
        )
    return Check("tracking store", "ok", redact_url(dsn))


def _reachable(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _http_answers(url: str, path: str, headers: dict[str, str] | None = None) -> str | None:
    import httpx

    try:
        httpx.get(url.rstrip("/") + path, headers=headers or {}, timeout=3)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    return None


def check_production(settings: Settings) -> list[Check]:
    """Production services reachable: needed by ``omnilab promote``, not by runs."""
    import redis

    checks = []
    hint = "needed by `omnilab promote`; check the URL and that the service runs"
    probes = (
        ("QDRANT_URL", settings.qdrant_url, 6333),
        ("REDIS_URL", settings.redis_url, 6379),
        ("POSTGRES_URL", settings.production_postgres_url, 5432),
        ("OLLAMA_BASE_URL", settings.production_ollama_url, 11434),
    )
    for var, url, port in probes:
        problem = _reachable(url, port)
        if problem is None and var == "QDRANT_URL":
            key = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else None
            problem = _http_answers(url, "/readyz", key)
        elif problem is None and var == "OLLAMA_BASE_URL":
            problem = _http_answers(url, "/api/version")
        elif problem is None and var == "REDIS_URL":
            try:
                client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
                client.ping()
                client.close()
            except redis.AuthenticationError:
                pass  # it answers; the URL's password is promotion's business
            except redis.RedisError as exc:
                problem = str(exc)
        status: Status = "ok" if problem is None else "warn"
        detail = f"{redact_url(url)}" + ("" if problem is None else f" does not answer ({problem})")
        checks.append(Check(f"production {var}", status, detail, "" if problem is None else hint))
    return checks


def run_checks(settings: Settings) -> list[Check]:
    engine_check, client = check_engine(settings)
    checks = [engine_check]
    if client is not None:
        checks += check_images(settings, client)
    checks.append(check_gpu(client))
    checks.append(check_ports())
    local = check_local(settings)
    if client is not None and settings.runtime != "local":
        # Docker can run the stacks: a missing local binary is then only a warning.
        local = [
            Check(c.name, "warn" if c.status == "problem" else c.status, c.detail, c.hint)
            for c in local
        ]
    checks += local
    checks.append(check_tracking(settings))
    checks += check_production(settings)
    return checks

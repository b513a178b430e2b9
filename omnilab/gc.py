"""``omnilab gc``: remove what stacks whose owner is gone left behind.

The reaper normally removes a stack within a second of its owner's death; this is the
backstop for what it could not (the machine rebooted, the engine was down, an older
omnilab without a reaper). Two sources:

1. stack state files (any runtime) of this host whose owner is gone and that were not
   kept: torn down through their runtime's ``destroy``, the same path as every teardown;
2. what each runtime finds of its own outside state files
   (``Runtime.collect_leftovers``: the docker runtime's labelled containers, networks
   and volumes).

A kept stack (``--keep``, ``omnilab stack up``) is never touched: ``omnilab stack down``
removes it.

``omnilab worker`` does the same when it starts (:mod:`omnilab.queue.supervisor`): a host
that comes back after a crash removes what its dead workers' runs left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnilab.errors import OmnilabError
from omnilab.host import host_name
from omnilab.progress import QuietReporter
from omnilab.runtimes import Leftover, runtime_class, runtime_classes
from omnilab.runtimes.state import StackState, all_states

if TYPE_CHECKING:
    from omnilab.config import Settings


def _abandoned_states(settings: Settings) -> list[StackState]:
    """Stacks of this host whose owner is gone. A state file written on another host
    (a state folder shared between hosts) names a process this host cannot see: its
    own host judges it."""
    here = host_name()
    return [
        s
        for s in all_states(settings.state_dir)
        if not s.keep and s.host == here and not s.owner_is_alive()
    ]


def collect(settings: Settings, *, dry_run: bool = False) -> tuple[list[Leftover], str | None]:
    """Find (and unless ``dry_run``, remove) leftovers; the second value says why a
    runtime's own search was skipped, if one was."""
    report: list[Leftover] = []
    for state in _abandoned_states(settings):
        item = Leftover("stack", f"{state.id[:12]} ({state.runtime})", state.id, "owner is gone")
        report.append(item)
        if dry_run:
            continue
        try:
            cls = runtime_class(state.runtime)
            if cls is None:
                raise OmnilabError(f"runtime {state.runtime!r} is not available")
            cls(settings, QuietReporter()).destroy(state)
            state.remove()
            item.removed = True
        except Exception as exc:
            item.error = str(exc).splitlines()[0]
    skipped: list[str] = []
    for name, cls in runtime_classes().items():
        found, why = cls.collect_leftovers(settings, dry_run=dry_run)
        report += found
        if why:
            skipped.append(f"{name} objects not checked: {why}")
    return report, "; ".join(skipped) or None

"""Process identity on Linux: is the process that owned something still the same one?"""

from __future__ import annotations

from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # a zombie has finished: it owns nothing any more
    return int(fields[19])


def owner_alive(pid: int, start_time: int | None) -> bool:
    """Whether ``pid`` runs and is the process that started at ``start_time``."""
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)

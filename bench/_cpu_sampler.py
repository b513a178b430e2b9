"""CPU seconds of the processes doing a piece of work, read from /proc (Linux).

Wall time on a shared 2-core machine says little about where the work goes; CPU
seconds per process do: a PostgreSQL backend's title names the statement it runs
(``postgres: user db host COPY``), so sampling the servers' processes (and this
process's children, such as psql or pg_dump) while an arm runs attributes its CPU to
statements. Sampling costs CPU itself, so it is done in a separate, untimed round; a
process's last 10 ms before it exits can be missed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            words = f.read().replace("\0", " ").split()
    except OSError:
        return ""
    if words[:1] == ["postgres:"]:
        # "postgres: user db 127.0.0.1(port) COPY" or "postgres: walwriter"
        tail = [w for w in words[1:] if "(" not in w]
        return " ".join(tail[2:] if len(words) > 4 else tail)
    return os.path.basename(words[0]) if words else ""


class CpuSampler:
    """Every 10 ms, the CPU seconds of every child of ``parents`` (pid -> group name)."""

    def __init__(self, parents: dict[int, str]) -> None:
        self.parents = parents
        self.seen: dict[int, dict[str, Any]] = {}
        self._started = False  # processes first seen after the start: all their CPU counts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            stat = _stat(pid)
            if stat is None or stat[0] not in self.parents:
                continue
            entry = self.seen.setdefault(
                int(pid),
                {
                    "group": self.parents[stat[0]],
                    "first": 0.0 if self._started else stat[1],
                    "titles": [],
                },
            )
            entry["cpu"] = stat[1]
            title = _title(int(pid))
            if title and title != "idle" and title not in entry["titles"]:
                entry["titles"].append(title)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(0.01)

    def __enter__(self) -> CpuSampler:
        self._poll()
        self._started = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_statement(self) -> dict[str, float]:
        """CPU seconds per "group: what it ran" (a process that ran several statements
        is listed under all of them, joined with "+")."""
        totals: dict[str, float] = defaultdict(float)
        for entry in self.seen.values():
            spent = entry["cpu"] - entry["first"]
            if spent <= 0:
                continue
            what = "+".join(t for t in entry["titles"] if t not in ("startup", "SET")) or "?"
            totals[f"{entry['group']}: {what}"] += spent
        return dict(sorted(totals.items()))


def postmaster_of(conn: Any) -> int:
    """The pid of the server process a connection's backend was forked from."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    stat = _stat(str(pid))
    assert stat is not None, "the server runs on another machine"
    return stat[0]

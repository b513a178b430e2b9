"""Process identity on Linux: is the process that owned something still the same one?"""

from __future__ import annotations

import os
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


def _listening_inodes(ports: set[int]) -> dict[int, int] | None:
    """Socket inode -> port of the TCP sockets listening on ``ports``, from the kernel's
    tables; None where there are none to read (not Linux)."""
    found: dict[int, int] = {}
    read_any = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        read_any = True
        for line in lines:
            fields = line.split()
            # local address "ADDR:PORT" in hex, state 0A is LISTEN, the inode is field 10
            if len(fields) > 9 and fields[3] == "0A":
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    found[int(fields[9])] = port
    return found if read_any else None


def group_listens_on(pgid: int, ports: set[int]) -> bool | None:
    """Whether processes of group ``pgid`` hold a listening socket on every one of
    ``ports``; None when that cannot be told here (not Linux, not allowed to look).

    A server that answers on a port is not necessarily the one just started there: two
    processes may pick the same free port at once, and the loser's readiness probe then
    reaches the winner's server (which, without credentials, as Ollama, answers it)."""
    inodes = _listening_inodes(ports)
    if inodes is None:
        return None
    held: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in inodes:
                        held.add(inodes[inode])
        except PermissionError:
            return None
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return held == ports

"""Host port allocation for stacks.

The first stack gets the ports of design.md (6335/6336, 6380, 5433, 11435); a port that
is busy moves that service to a free port chosen by the kernel, and the caller says so.
Ports handed out but not yet bound are remembered in this process so that parallel
stacks never get the same one; between processes a lost race shows up as a server that
cannot bind, which the runtimes retry with fresh ports.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from omnilab.errors import StackStartError

_lock = threading.Lock()
_reserved: set[int] = set()

#: Never hand these out, even as a fallback: they are the production services' ports.
PRODUCTION_PORTS = frozenset({6333, 6334, 6379, 5432, 11434})


class PortsExhausted(StackStartError):
    """No free TCP port could be found on 127.0.0.1: a one-line error, stack removed."""


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``host:port`` now.

    SO_REUSEADDR mirrors what servers set themselves, so connections of a stopped stack
    lingering in TIME_WAIT do not make a port look busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _ephemeral(host: str = "127.0.0.1") -> int:
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, 0))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                break  # the kernel's ephemeral range is used up
            port: int = sock.getsockname()[1]
        if port not in _reserved and port not in PRODUCTION_PORTS:
            return port
    raise PortsExhausted(
        f"no free TCP port left on {host} (the kernel's ephemeral range, "
        "net.ipv4.ip_local_port_range, is used up); stop some stacks or servers"
    )


@dataclass
class Allocation:
    ports: dict[str, int]
    #: role -> preferred port that was busy, for the "moved" message.
    moved: dict[str, int] = field(default_factory=dict)

    def release(self) -> None:
        release(self.ports.values())


def allocate(preferred: dict[str, int], *, avoid: Set[int] = frozenset()) -> Allocation:
    """Reserve one port per role, the preferred one when free."""
    ports: dict[str, int] = {}
    moved: dict[str, int] = {}
    with _lock:
        for role, want in preferred.items():
            if want not in _reserved and want not in avoid and is_free(want):
                port = want
            else:
                port = _ephemeral()
                moved[role] = want
            _reserved.add(port)
            ports[role] = port
    return Allocation(ports, moved)


def release(ports: Iterable[int]) -> None:
    with _lock:
        for port in ports:
            _reserved.discard(port)

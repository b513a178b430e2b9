"""Progress output for long work (starting services, running, tearing down).

Runners and stacks report through a :class:`Reporter`; the CLI prints to stderr so that
``--json`` output on stdout stays machine-readable, and notebooks can plug in their own.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class Reporter:
    """Prints one line per event to a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream
        self.quiet = quiet
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def note(self, message: str) -> None:
        """A one-line message: a decision taken, a port moved, a fallback used."""
        if self.quiet:
            return
        with self._lock:
            print(message, file=self.stream, flush=True)

    def service_starting(self, name: str, source: str) -> None:
        self.note(f"  {name}: starting {source}")

    def service_ready(self, name: str, url: str, seconds: float) -> None:
        self.note(f"  {name}: ready at {url} ({seconds:.2f}s)")


class QuietReporter(Reporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)

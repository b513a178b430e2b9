"""Buffered metric logging: ``ctx.log_metric`` must cost the experiment next to nothing.

A call validates its input and appends one tuple to a list; a background thread swaps
the list out and writes it to PostgreSQL with ``COPY`` in batches. The experiment's
thread never waits on the database.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

MetricRow = tuple[str, int, float, float]  # key, step, value, unix time
Writer = Callable[[list[MetricRow]], None]


class MetricBuffer:
    """Collects metrics from any thread and hands them to ``writer`` in batches."""

    def __init__(self, writer: Writer, *, interval: float = 0.25, batch_size: int = 50_000) -> None:
        self._writer = writer
        self._interval = interval
        self._batch_size = batch_size
        self._pending: list[MetricRow] = []
        self._steps: dict[str, int] = {}
        self._latest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.written = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="omnilab-metrics", daemon=True)
        self._thread.start()

    def log(self, key: str, value: Any, step: int | None = None) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric name must be a non-empty string, not {key!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {key!r} must be a number, not {value!r}") from None
        with self._lock:
            step = self._steps.get(key, -1) + 1 if step is None else int(step)
            self._steps[key] = max(step, self._steps.get(key, step))
            self._latest[key] = (step, number)
            self._pending.append((key, step, number, time.time()))
            if len(self._pending) >= self._batch_size:
                self._wake.set()

    def record(self, row: MetricRow) -> None:
        """Take a metric logged elsewhere (inside an experiment's container) as it was
        logged there: its own step and time."""
        key, step, value, ts = row
        with self._lock:
            self._steps[key] = max(int(step), self._steps.get(key, int(step)))
            self._latest[str(key)] = (int(step), float(value))
            self._pending.append((str(key), int(step), float(value), float(ts)))
            if len(self._pending) >= self._batch_size:
                self._wake.set()

    def latest_steps(self) -> dict[str, int]:
        with self._lock:
            return dict(self._steps)

    def latest(self) -> dict[str, tuple[int, float]]:
        """Each metric's last logged (step, value), in the order first logged: what a
        live display shows while the run goes on."""
        with self._lock:
            return dict(self._latest)

    def _take(self) -> list[MetricRow]:
        with self._lock:
            rows, self._pending = self._pending, []
        return rows

    def _write(self, rows: list[MetricRow]) -> None:
        if not rows:
            return
        try:
            self._writer(rows)
            self.written += len(rows)
        except Exception as exc:
            # Keep them for the next attempt, in order, ahead of newer ones.
            with self._lock:
                self._pending[:0] = rows
            message = f"{type(exc).__name__}: {exc}"
            if message not in self.errors:
                self.errors.append(message)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write(self._take())

    def flush(self) -> None:
        """Write everything logged so far (from the calling thread)."""
        self._write(self._take())

    def close(self) -> list[MetricRow]:
        """Stop the thread and flush; returns rows that could not be written."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()
        return self._take()


def to_timestamp(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def finite(value: float) -> float | None:
    """JSON has no NaN or infinity; summaries of metrics show them as null."""
    return value if math.isfinite(value) else None

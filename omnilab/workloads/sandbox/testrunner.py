"""Runs inside the sandbox: import test modules, call their ``test_*`` functions.

Stdlib only and Python 3.8+, since it runs under whatever interpreter the sandbox has
(the host's, or a container image's). Usage::

    python -I testrunner.py MARKER WALL_SECONDS MEMORY_MB test_module [test_module ...]

It prints ``MARKER <json>`` lines on its own copy of stdout, one per test as it ends
(so a run killed midway still tells what had passed) and a last one saying it is done;
what the code under test prints is captured per test and cut short. An alarm ends it
if the code under test outlives the wall-clock limit even when the sandbox's own timer
cannot reach it.
"""

# Annotations stay strings, so that Python 3.8 runs this file too.
from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import signal
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout

OUTPUT_LIMIT = 4000


def _short_error(exc: BaseException) -> str:
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if os.path.basename(f.filename) != os.path.basename(__file__)
    ]
    # The deepest frame in the code under test says more than one inside the stdlib.
    here = os.getcwd()
    ours = [f for f in frames if os.path.dirname(os.path.abspath(f.filename)) == here]
    where = ""
    if ours or frames:
        frame = (ours or frames)[-1]
        where = f" ({os.path.basename(frame.filename)} line {frame.lineno})"
    text = f"{type(exc).__name__}: {exc}"
    return (text[:1000] + where).strip()


def main(argv: list[str]) -> int:
    marker, wall, memory_mb, modules = argv[0], float(argv[1]), int(argv[2]), argv[3:]
    try:  # a large allocation then fails in the test (MemoryError), not the whole run
        import resource

        limit = memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or limit < hard:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    channel = os.fdopen(os.dup(1), "w")
    sys.path.insert(0, os.getcwd())
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, lambda *a: os._exit(124))
        signal.alarm(int(wall) + 1)

    def emit(kind: str, payload: object) -> None:
        channel.write(f"{marker} {json.dumps({kind: payload})}\n")
        channel.flush()

    for name in modules:
        captured = io.StringIO()
        try:
            with redirect_stdout(captured), redirect_stderr(captured):
                module = importlib.import_module(name)
        except BaseException as exc:
            emit("error", {"module": name, "error": _short_error(exc)})
            continue
        tests = [
            (fname, fn)
            for fname, fn in vars(module).items()
            if fname.startswith("test") and inspect.isfunction(fn) and fn.__module__ == name
        ]
        tests.sort(key=lambda item: item[1].__code__.co_firstlineno)
        for fname, fn in tests:
            out = io.StringIO()
            began = time.perf_counter()
            entry: dict[str, object] = {"name": f"{name}::{fname}", "passed": False}
            try:
                with redirect_stdout(out), redirect_stderr(out):
                    fn()
                entry["passed"] = True
            except BaseException as exc:  # SystemExit and MemoryError count as failures
                entry["error"] = _short_error(exc)
            entry["seconds"] = round(time.perf_counter() - began, 6)
            if out.getvalue():
                entry["output"] = out.getvalue()[:OUTPUT_LIMIT]
            emit("test", entry)
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

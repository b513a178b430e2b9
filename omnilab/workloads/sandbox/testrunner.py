"""Runs inside the sandbox: import test modules, call their ``test_*`` functions.

Stdlib only and Python 3.8+, since it runs under whatever interpreter the sandbox has
(the host's, or a container image's). Usage::

    python -I testrunner.py MARKER WALL_SECONDS test_module [test_module ...]

It prints one line ``MARKER <json>`` on its own copy of stdout at the end; what the code
under test prints is captured per test and cut short. An alarm ends it if the code under
test outlives the wall-clock limit even when the sandbox's own timer cannot reach it.
"""

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


def _short_error(exc):
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


def main(argv):
    marker, wall, modules = argv[0], float(argv[1]), argv[2:]
    channel = os.fdopen(os.dup(1), "w")
    sys.path.insert(0, os.getcwd())
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, lambda *a: os._exit(124))
        signal.alarm(int(wall) + 1)
    report = {"tests": [], "errors": []}
    for name in modules:
        captured = io.StringIO()
        try:
            with redirect_stdout(captured), redirect_stderr(captured):
                module = importlib.import_module(name)
        except BaseException as exc:
            report["errors"].append({"module": name, "error": _short_error(exc)})
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
            entry = {"name": f"{name}::{fname}", "passed": False}
            try:
                with redirect_stdout(out), redirect_stderr(out):
                    fn()
                entry["passed"] = True
            except BaseException as exc:  # SystemExit and MemoryError count as failures
                entry["error"] = _short_error(exc)
            entry["seconds"] = round(time.perf_counter() - began, 6)
            if out.getvalue():
                entry["output"] = out.getvalue()[:OUTPUT_LIMIT]
            report["tests"].append(entry)
    channel.write(f"{marker} {json.dumps(report)}\n")
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Starts processes and returns without stopping them: a plain child, one in a session
of its own, a double-forked daemon and one that ignores SIGTERM. Their pids go to
``pids.json`` in the working directory. It also prints, itself and through a child."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from omnilab import Experiment


class Spawner(Experiment):
    gpu = False

    def run(self, ctx):
        print("spawning: this line is the experiment's own output")
        sys.stdout.flush()
        subprocess.run(["echo", "and this one a child's, on file descriptor 1"], check=True)
        plain = subprocess.Popen(["sleep", "300"])
        session = subprocess.Popen(["sleep", "301"], start_new_session=True)
        # The shell exits at once: its background sleep is an orphan, re-parented.
        daemon = subprocess.run(
            ["sh", "-c", "sleep 302 >/dev/null 2>&1 & echo $!"],
            capture_output=True,
            text=True,
            check=True,
        )
        stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 303"])
        pids = {
            "plain": plain.pid,
            "session": session.pid,
            "daemon": int(daemon.stdout),
            "stubborn": stubborn.pid,
        }
        # Each is `sleep` once its shell has exec'd it (and the stubborn one trapped
        # SIGTERM first): what the run then ends is the same every time.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(map(_is_sleep, pids.values())):
            time.sleep(0.01)
        try:
            with open("pids.json", "w") as fh:
                json.dump(pids, fh)
        except OSError:  # a container's working directory is read-only: the run's record
            pass  # of what was ended is what tells there
        return {"started": len(pids)}


def _is_sleep(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip() == "sleep"
    except OSError:
        return False

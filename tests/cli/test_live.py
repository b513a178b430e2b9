"""`omnilab run` on a terminal: a live display that updates while the run goes on; plain
lines when stderr is not a terminal, under CI, with ``OMNILAB_REPORTER=lines``, and
with ``--json`` (stdout is the JSON alone).

The terminal is a real pseudo-terminal: the command cannot tell it from a person's.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import EXPERIMENTS, OMNILAB, ROOT, run_cli
from tests.support.promotion_support import Production

TICKING = EXPERIMENTS / "ticking.py"
#: Styles and the cursor's visibility: not text.
STYLE = re.compile(r"\x1b\[[0-9;]*m|\x1b\[\?25[hl]")
#: Cursor moves and erasing: where a redraw begins, a line break as far as text goes.
REDRAW = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


def plain(text: str) -> str:
    """The text a terminal was sent, one redrawn piece per line."""
    return REDRAW.sub("\n", STYLE.sub("", text)).replace("\r", "")


def terminal_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "OMNILAB_REPORTER")}
    return {**env, "TERM": "xterm-256color", **extra}


@dataclass
class Terminal:
    """``omnilab`` with a pseudo-terminal as its stderr (and stdout, unless piped)."""

    process: subprocess.Popen[bytes]
    master: int
    received: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, *args: str | Path, env: dict[str, str], pipe_stdout: bool = False) -> Terminal:
        master, slave = os.openpty()
        # 100 columns, as a person's window; a new pty has none (0x0).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        process = subprocess.Popen(
            [str(OMNILAB), *map(str, args)],
            stdin=slave,
            stdout=subprocess.PIPE if pipe_stdout else slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        return cls(process, master)

    @property
    def text(self) -> str:
        return self.received.decode("utf-8", errors="replace")

    def read(self, timeout: float = 0.2) -> bool:
        """Take what the terminal shows next; False once the command has closed it."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every end of the pty's other side is closed
            return False
        self.received += chunk
        return bool(chunk)

    def finish(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read():
            pass
        code = self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        os.close(self.master)
        return code


def test_a_terminal_sees_the_run_progress_while_it_goes_on(workdir: Path) -> None:
    term = Terminal.start(
        "run", TICKING, "-p", "ticks=10", "-p", "interval=0.5", env=terminal_env()
    )
    try:
        # While the experiment runs (10 ticks, 0.5 s apart), its clock and its metric
        # change on screen: seen before the command has ended.
        clocks: set[str] = set()
        ticks: set[int] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(clocks) < 4 or len(ticks) < 3):
            assert term.read(), "the command ended before its progress was seen:\n" + term.text
            shown = plain(term.text)
            clocks = set(re.findall(r"running Ticking · (\d+\.\d)s", shown))
            ticks = {int(t) for t in re.findall(r"^  tick  (\d+)  step \1$", shown, re.M)}
        assert term.process.poll() is None, "progress must show while the run goes on"
        assert len(clocks) >= 4 and len(ticks) >= 3, term.text
        assert HIDE_CURSOR in term.text  # drawn in place, not printed line after line
    finally:
        code = term.finish()
    assert code == 0, term.text
    shown = plain(term.text)
    # What stays: the run, the experiment's time and last metrics, the outcome; the
    # cursor is back.
    run_id = re.search(r"^run ([0-9a-f]{32}) \(Ticking\)$", shown, re.M)
    assert run_id, shown
    assert re.search(r"^  ran Ticking in \d+\.\d\ds$", shown, re.M), shown
    assert "  metrics: tick 9 (step 9)" in shown
    assert f"run {run_id[1][:8]} succeeded in " in shown
    assert "ticking: done" in shown  # the experiment's own print, above the display
    assert term.text.rfind(SHOW_CURSOR) > term.text.rfind(HIDE_CURSOR)
    assert re.search(rf"^run {run_id[1]} succeeded in .*\n(.*\n)?summary", shown, re.M), shown


def test_services_starting_are_shown_with_their_time(workdir: Path) -> None:
    term = Terminal.start("run", f"{EXPERIMENTS / 'float_params.py'}:Timed", env=terminal_env())
    code = term.finish()
    assert code == 0, term.text
    shown = plain(term.text)
    assert re.search(r"redis: starting .* · \d+\.\ds", shown), shown  # while it started
    assert re.search(
        r"^  redis: ready at redis://:\*\*\*\*@127\.0\.0\.1:\d+/0 \(\d+\.\d\ds\)$", shown, re.M
    )
    assert re.search(r"^  stack removed in \d+\.\d\ds$", shown, re.M), shown


@pytest.mark.parametrize(
    "env",
    [{"CI": "true"}, {"OMNILAB_REPORTER": "lines"}, {"TERM": "dumb"}],
    ids=["ci", "lines", "dumb"],
)
def test_plain_lines_on_a_terminal_when_asked(workdir: Path, env: dict[str, str]) -> None:
    term = Terminal.start(
        "run", TICKING, "-p", "ticks=2", "-p", "interval=0.1", env=terminal_env(**env)
    )
    code = term.finish()
    assert code == 0, term.text
    assert HIDE_CURSOR not in term.text
    assert "\nrunning Ticking\r\n" in term.text  # one line, as in a log


def test_plain_lines_when_stderr_is_not_a_terminal(workdir: Path) -> None:
    result = run_cli("run", TICKING, "-p", "ticks=2", "-p", "interval=0.1", env={"CI": ""})
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\x1b" not in result.stdout
    assert "running Ticking\n" in result.stderr
    assert re.search(r"^run [0-9a-f]{32} \(Ticking\)$", result.stderr, re.M)


def test_json_keeps_stdout_pure_and_progress_plain(workdir: Path) -> None:
    """``--json`` on a terminal: stdout (piped to a program) is the JSON and nothing
    else; stderr, the terminal, gets plain lines."""
    term = Terminal.start(
        "run",
        TICKING,
        "-p",
        "ticks=2",
        "-p",
        "interval=0.1",
        "--json",
        env=terminal_env(),
        pipe_stdout=True,
    )
    code = term.finish()
    assert term.process.stdout is not None
    stdout = term.process.stdout.read().decode()
    assert code == 0, term.text
    run = json.loads(stdout)
    assert run["status"] == "succeeded" and run["summary"] == {"ticks": 2}
    assert "\x1b" not in stdout
    assert HIDE_CURSOR not in term.text
    assert "running Ticking" in term.text and "ticking: done" in term.text


def test_promote_on_a_terminal_draws_each_copy(production: Production, workdir: Path) -> None:
    made = run_cli("run", ROOT / "experiments" / "promote_demo.py")
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.split()[1]
    term = Terminal.start("promote", run_id[:8], env=terminal_env())
    code = term.finish()
    assert code == 0, term.text
    shown = plain(term.text)
    # Each copy was a bar with its count while it went on...
    assert re.search(r"docs .*\b\d+/50 points", shown), shown
    assert re.search(r"emb:\* .*\b\d+/51 keys", shown), shown
    assert re.search(r"scores .*\b\d+/50 rows", shown), shown
    # ...and what stays is the promotion's lines and its outcome.
    assert re.search(r"^  staged .*docs.*counts and checksums match", shown, re.M), shown
    assert "succeeded" in shown and "undo with: omnilab rollback" in shown
    assert term.text.rfind(SHOW_CURSOR) > term.text.rfind(HIDE_CURSOR)

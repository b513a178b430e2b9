"""The terminal's live display (omnilab.terminal) and the lines it replaces: bars for
copies and image builds, periodic lines where nothing is drawn, the choice between them.

A rich console writing to memory as a terminal would (``force_terminal``) stands for the
terminal here; tests/cli/test_live.py drives the whole command in a real pseudo-terminal.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from omnilab.progress import Reporter, default_reporter
from omnilab.services.promotable import Progress
from omnilab.terminal import TerminalReporter, in_ci, live_terminal, metrics_line

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
STYLE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal() -> tuple[TerminalReporter, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    return TerminalReporter(console, refresh_per_second=20), screen


def seen(screen: io.StringIO) -> str:
    return STYLE.sub("\n", screen.getvalue())


def test_a_copy_is_a_bar_while_it_goes_and_leaves_no_trace() -> None:
    reporter, screen = terminal()
    with Progress(reporter, "docs", 1000, "points", step="") as progress:
        progress.advance(400)
        time.sleep(0.3)  # a few redraws
        assert "docs" in seen(screen) and "400/1,000 points" in seen(screen)
        assert HIDE_CURSOR in screen.getvalue()
        progress.advance(600)
        time.sleep(0.3)
        assert "1,000/1,000 points" in seen(screen)
    # The display is down, the cursor back, the bar gone (transient): the promotion's
    # own line ("staged docs: ...") is what stays.
    assert screen.getvalue().rfind(SHOW_CURSOR) > screen.getvalue().rfind(HIDE_CURSOR)
    reporter.note("staged docs")
    assert seen(screen).rstrip().endswith("staged docs")


def test_a_copy_without_a_terminal_says_how_far_it_is_now_and_then() -> None:
    log = io.StringIO()
    reporter = Reporter(log)
    with reporter.task("emb:*", 100, "keys", every=0.0, verb="copied") as task:
        task.advance(50)
    assert log.getvalue() == "    emb:*: 50/100 keys copied (50%)\n"
    quiet = io.StringIO()
    with Reporter(quiet).task("emb:*", 100, "keys") as task:  # every 5 s: none yet
        task.advance(50)
    assert quiet.getvalue() == ""


def _build_stream(
    reporter: TerminalReporter, states: list[tuple[float, float | None, str]]
) -> Iterator[dict[str, Any]]:
    """What the engine sends during a build (decoded), noting the bar after each step."""
    for line in ("Step 1/3 : FROM omnilab/base", " ---> 1a2b", "Step 2/3 : RUN apt-get [1/2]"):
        yield {"stream": line + "\n"}
        [task] = reporter._bars.tasks
        states.append((task.completed, task.total, task.description))
    yield {"stream": 'Step 3/3 : CMD ["redis-server"]\n'}
    yield {"stream": "Successfully built 1a2b\n"}


def test_an_image_build_is_a_bar_of_its_steps() -> None:
    from omnilab.runtimes.docker.images import builder, recipes

    reporter, _ = terminal()
    states: list[tuple[float, float | None, str]] = []
    spec = recipes.catalog()["redis"]
    builder._follow(_build_stream(reporter, states), spec, reporter, verbose=False)
    assert states[0] == (0, 3, "  redis: Step 1/3 : FROM omnilab/base")
    assert states[2] == (1, 3, "  redis: Step 2/3 : RUN apt-get [1/2]")  # not markup
    assert not reporter._bars.tasks and reporter._live is None  # done: gone

    # Without a terminal: the same steps as lines, as before there were bars.
    log = io.StringIO()
    builder._follow(
        iter(
            [
                {"stream": "Step 1/2 : FROM x\n"},
                {"stream": " ---> 1a\n"},
                {"stream": "Step 2/2 : RUN y\n"},
            ]
        ),
        spec,
        Reporter(log),
        verbose=False,
    )
    assert log.getvalue() == "    Step 1/2 : FROM x\n    Step 2/2 : RUN y\n"


def test_the_display_follows_a_run_and_leaves_a_summary() -> None:
    from omnilab.tracking.metrics import MetricBuffer

    reporter, screen = terminal()
    written: list[Any] = []
    buffer = MetricBuffer(written.extend)
    reporter.run_started("ab" * 16, "Demo")
    reporter.service_starting("redis", "valkey-server 9.1 (wheel)")
    time.sleep(0.2)
    assert re.search(r"redis: starting valkey-server 9\.1 \(wheel\) · \d\.\ds", seen(screen))
    reporter.service_ready("redis", "redis://:****@127.0.0.1:6379/0", 0.25)
    reporter.experiment_running("Demo", buffer)
    for i in range(3):
        buffer.log("loss", 1 / (i + 1))
    buffer.log("acc", 0.5)
    time.sleep(0.2)
    assert re.search(r"running Demo · \d\.\ds", seen(screen))
    assert re.search(r"loss\s+0\.333333\s+step 2", seen(screen))
    reporter.experiment_ended("Demo", 0.41)
    reporter.stack_removed("ab" * 16, 0.05)
    reporter.run_finished("ab" * 16, "succeeded", 0.9)
    buffer.close()
    assert reporter._live is None
    lines = [line for line in seen(screen).splitlines() if line.strip()]
    for line in (
        "run " + "ab" * 16 + " (Demo)",
        "  redis: ready at redis://:****@127.0.0.1:6379/0 (0.25s)",
        "  ran Demo in 0.41s",
        "  metrics: loss 0.333333 (step 2), acc 0.5 (step 0)",
        "  stack removed in 0.05s",
        "run abababab succeeded in 0.90s",
    ):
        assert line in lines, seen(screen)


def test_metrics_line_counts_what_it_leaves_out() -> None:
    latest = {f"m{i}": (i, float(i)) for i in range(10)}
    assert metrics_line(latest, limit=2) == "m0 0 (step 0), m1 1 (step 1), +8 more"


@pytest.mark.parametrize(
    ("value", "ci"), [("", False), ("0", False), ("false", False), ("true", True), ("1", True)]
)
def test_ci_is_any_true_value_of_CI(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_not_chosen_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNILAB_REPORTER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert not live_terminal(io.StringIO())
    assert type(default_reporter()) is Reporter  # pytest's stderr is not a terminal
    monkeypatch.setenv("OMNILAB_REPORTER", "terminal")
    assert isinstance(default_reporter(), TerminalReporter)

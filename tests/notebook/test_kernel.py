"""omnilab in a real Jupyter kernel (ipykernel, driven with jupyter_client).

Live progress replaces the stderr lines, a run shows as a card, and a stack opened in
a kernel is removed when the block ends, when the kernel is interrupted, restarted or
killed.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

import omnilab
from tests.support import EXPERIMENTS, HELLO, stack_processes, wait_until


class Kernel:
    """A kernel started in the test's working directory, with the test's environment."""

    def __init__(self, cwd: Path) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd))  # inherits os.environ: the test's store
        self.client: BlockingKernelClient = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(self, code: str) -> str:
        return self.client.execute(code, store_history=True)

    def messages(self, msg_id: str, timeout: float = 120) -> Iterator[dict[str, Any]]:
        """iopub messages of one execution, until the kernel is idle again."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the kernel did not finish in time"
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            yield msg
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return

    def run(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        msg_id = self.execute(code)
        msgs = list(self.messages(msg_id, timeout))
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        assert not errors, out + "\n".join("\n".join(e["traceback"]) for e in errors)
        return msgs

    def wait_for_line(self, msg_id: str, line: str, timeout: float = 120) -> str:
        """Wait until the execution prints ``line`` (a whole line) on stdout."""
        seen = ""
        for msg in self.messages(msg_id, timeout):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                seen += msg["content"]["text"]
                if line in seen.splitlines():
                    return seen
            if msg["msg_type"] == "error":
                pytest.fail("\n".join(msg["content"]["traceback"]))
        pytest.fail(f"the kernel went idle without printing {line!r}: {seen!r}")

    def pid(self) -> int:
        msgs = self.run("import os; print(os.getpid())")
        return int(next(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"))

    def close(self) -> None:
        self.client.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(workdir: Path) -> Iterator[Kernel]:
    k = Kernel(workdir)
    try:
        yield k
    finally:
        k.close()


def _stack_files(workdir: Path) -> list[Path]:
    return list((workdir / "state").glob("stacks/*.json"))


def test_a_run_shows_live_progress_and_returns_a_card(kernel: Kernel) -> None:
    msgs = kernel.run(
        "import omnilab\n"
        "from omnilab.loader import load\n"
        f"Hello = load({str(HELLO)!r}).cls\n"
        "run = omnilab.run(Hello, params={'n_items': 20})\n"
        "run"
    )
    kinds = [m["msg_type"] for m in msgs]
    # One progress display, updated in place; not lines on stderr.
    shown = [m for m in msgs if m["msg_type"] == "display_data"]
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1, kinds
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert updates and all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    stderr = "".join(
        m["content"]["text"]
        for m in msgs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert "runtime:" not in stderr and "ready at" not in stderr
    texts = [u["content"]["data"]["text/plain"] for u in updates]
    assert any("postgres" in t and "ready" in t for t in texts), texts
    assert any("running" in t for t in texts)
    assert "succeeded in" in texts[-1] and "removed" in texts[-1]
    # The run itself, as the cell's result: a card with its charts.
    result = next(m for m in msgs if m["msg_type"] == "execute_result")["content"]["data"]
    run = omnilab.Run.load(result["text/plain"].split()[1])
    html = result["text/html"]
    assert run.short_id in html and "succeeded" in html and "<svg" in html
    assert "top_score" in html and "neighbours.txt" in html


def test_input_refused_before_anything_starts_shows_no_panel(kernel: Kernel) -> None:
    msg_id = kernel.execute(
        "import omnilab\n"
        "from omnilab import Experiment, Redis\n"
        "class NeedsGpu(Experiment):\n"
        "    services = [Redis()]\n"
        "    gpu = True  # this host has none\n"
        "    def run(self, ctx):\n"
        "        return {}\n"
        "omnilab.run(NeedsGpu)\n"
    )
    msgs = list(kernel.messages(msg_id))
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert len(errors) == 1 and "GPU" in errors[0]["evalue"], errors
    assert not [m for m in msgs if "display" in m["msg_type"]]  # no stale "starting" panel
    assert not stack_processes()


def test_a_stack_closed_in_a_later_cell_says_so_there(kernel: Kernel) -> None:
    opened = kernel.run("import omnilab\ns = omnilab.Stack(omnilab.Redis()).start()\ns")
    result = next(m for m in opened if m["msg_type"] == "execute_result")["content"]["data"]
    assert "running" in result["text/html"] and "s.redis" in result["text/html"]
    closed = kernel.run("s.close()\ns")
    panels = [m["content"]["data"] for m in closed if m["msg_type"] == "display_data"]
    assert len(panels) == 1 and "removed in" in panels[0]["text/plain"]
    result = next(m for m in closed if m["msg_type"] == "execute_result")["content"]["data"]
    assert "stopped" in result["text/html"]
    assert not stack_processes()


def test_interrupting_the_kernel_inside_a_stack_block_tears_down(
    kernel: Kernel, workdir: Path
) -> None:
    msg_id = kernel.execute(
        "import time, omnilab\n"
        "from omnilab import Redis, Postgres\n"
        "with omnilab.stack(Redis(), Postgres()) as s:\n"
        "    s.redis.set('k', 'v')\n"
        "    print('up', flush=True)\n"
        "    time.sleep(120)\n"
    )
    kernel.wait_for_line(msg_id, "up")
    assert len(stack_processes()) >= 2 and _stack_files(workdir)
    kernel.manager.interrupt_kernel()
    msgs = list(kernel.messages(msg_id, timeout=60))
    assert any(
        m["msg_type"] == "error" and m["content"]["ename"] == "KeyboardInterrupt" for m in msgs
    )
    assert not stack_processes() and not _stack_files(workdir)
    assert kernel.manager.is_alive()  # the kernel survives; only the stack is gone
    kernel.run("assert s.services and s._closed")


def test_restarting_the_kernel_removes_its_stack(kernel: Kernel, workdir: Path) -> None:
    # Opened in one cell and kept across cells, as interactive work does.
    kernel.run(
        "import omnilab\n"
        "from omnilab import Redis, Postgres\n"
        "s = omnilab.Stack(Redis(), Postgres()).start()\n"
        "s.redis.set('k', 'v')"
    )
    servers = stack_processes()
    assert len(servers) >= 2 and _stack_files(workdir)
    began = time.monotonic()
    kernel.manager.restart_kernel(now=True)
    assert wait_until(lambda: not stack_processes(), timeout=15), stack_processes()
    assert wait_until(lambda: not _stack_files(workdir), timeout=5)
    assert time.monotonic() - began < 15
    kernel.client.wait_for_ready(timeout=60)
    kernel.run("assert 's' not in globals()")  # a fresh kernel, nothing carried over


def test_a_kernel_that_dies_mid_run_leaves_nothing_and_the_run_is_failed(
    kernel: Kernel, workdir: Path
) -> None:
    pid = kernel.pid()
    msg_id = kernel.execute(
        f"import omnilab\nrun = omnilab.run({str(EXPERIMENTS / 'sleepy.py')!r})"
    )
    kernel.wait_for_line(msg_id, "sleeping")
    assert len(stack_processes()) >= 2
    os.kill(pid, signal.SIGKILL)  # a crash: no Python code of the kernel runs again
    assert wait_until(lambda: not stack_processes(), timeout=15), stack_processes()
    assert wait_until(lambda: not _stack_files(workdir), timeout=5)
    # The run could not record its end; the next look at the runs does.
    table = omnilab.runs(experiment="Sleepy", limit=5)
    mine = [r for r in table if r.record.environment.get("pid") == pid]
    assert len(mine) == 1 and mine[0].status == "failed"
    assert "ended without recording an outcome" in (mine[0].error or "")

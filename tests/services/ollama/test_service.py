"""Ollama in a local stack: a binary on PATH, else OLLAMA_BASE_URL, else a clear refusal.

The server here is the tests' Ollama stand-in (no real Ollama or model can be had); it
is driven through the official `ollama` client over HTTP.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from omnilab import Ollama, ServiceUnavailable, Stack
from omnilab.progress import QuietReporter
from tests.support import EXPERIMENTS, STANDIN_BIN, run_cli


def test_ollama_binary_runs_as_a_process_of_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:{os.environ['PATH']}")
    with Stack(Ollama(), runtime="local", reporter=QuietReporter()) as s:
        running = s.services["ollama"]
        assert running.handle["kind"] == "process"
        assert running.endpoint.port == 11435 or running.moved
        models = s.ollama.list()
        assert [m.model for m in models.models] == ["standin:latest"]
        reply = s.ollama.generate(model="standin", prompt="ping")
        assert reply.response == "echo: ping"
        assert running.version == "ollama 0.6.2-standin"


def test_ollama_base_url_is_used_when_there_is_no_binary(standin_ollama: str) -> None:
    result = run_cli(
        "run", EXPERIMENTS / "chat.py", "--json", env={"OLLAMA_BASE_URL": standin_ollama}
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["summary"]["reply"] == "echo: say hello"
    assert "not isolated" in result.stderr
    assert run["stack"]["services"]["ollama"]["url"] == standin_ollama


def test_ollama_base_url_that_does_not_answer_is_refused_before_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(ServiceUnavailable, match="does not answer"):
        Stack(Ollama(), runtime="local", reporter=QuietReporter()).prepare()


def test_env_system_file_configures_ollama(workdir: Path, standin_ollama: str) -> None:
    (workdir / ".env.system").write_text(f"OLLAMA_BASE_URL={standin_ollama}\n")
    result = run_cli("run", EXPERIMENTS / "chat.py")
    assert result.returncode == 0, result.stderr

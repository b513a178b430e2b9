"""Words that were wrong or misleading: doctor's, a kept stack's, the GPU line, a file
that needs an extra of omnilab."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from omnilab.catalog import Catalog
from omnilab.config import Settings
from omnilab.doctor import check_production
from omnilab.progress import Reporter
from omnilab.runtimes.local.runtime import LocalRuntime
from omnilab.stack import Stack
from tests.support import ROOT, free_port, run_cli


def test_doctor_says_which_production_services_promote_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing answers on these ports: every production line warns, and only those that
    promotion copies into (Redis, PostgreSQL, Qdrant) speak of `omnilab promote`."""
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("POSTGRES_URL", f"postgresql://127.0.0.1:{port}/x")
    monkeypatch.setenv("QDRANT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OLLAMA_BASE_URL", f"http://127.0.0.1:{port}")
    checks = {c.name: c for c in check_production(Settings())}
    assert {c.status for c in checks.values()} == {"warn"}
    ollama = checks["production OLLAMA_BASE_URL"]
    assert "promote" not in ollama.hint and "runs do not need it" in ollama.hint
    for name in ("REDIS_URL", "POSTGRES_URL", "QDRANT_URL"):
        assert "`omnilab promote` copies into it" in checks[f"production {name}"].hint


def test_doctor_speaks_of_no_experiment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without an `ollama` binary or OLLAMA_BASE_URL, doctor's local Ollama line says
    what a stack would need, not what "this experiment" needs (there is none)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no ollama here
    monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    lines = {c.name: c for c in LocalRuntime.doctor_checks(Settings())}
    detail = lines["local ollama"].detail
    assert "this experiment" not in detail
    assert detail.startswith("a local stack that needs Ollama runs an `ollama` binary")


def test_stack_up_does_not_speak_of_keep(workdir: Path) -> None:
    result = run_cli("stack", "up", "redis")
    assert result.returncode == 0, result.stderr
    assert "kept running:" in result.stderr and "--keep" not in result.stderr
    stack_id = json.loads(run_cli("stack", "ls", "--json").stdout)[0]["id"]
    assert run_cli("stack", "down", stack_id).returncode == 0


@pytest.mark.parametrize("runtime", ["local", "docker"])
def test_one_gpu_line_when_no_gpu_is_used(runtime: str) -> None:
    """gpu="auto" on a host (or engine) that gives no GPU: one line, with the reason
    where the runtime has one. Only prepared: nothing starts."""
    stream = io.StringIO()
    stack = Stack(runtime=runtime, gpu="auto", reporter=Reporter(stream))
    stack.prepare()
    gpu_lines = [line for line in stream.getvalue().splitlines() if line.startswith("gpu:")]
    assert len(gpu_lines) == 1, stream.getvalue()
    if not stack.gpus:
        assert gpu_lines[0].endswith("; running on CPU")
    if runtime == "docker" and not stack.gpus:
        assert (
            "the Docker engine cannot pass GPUs" in gpu_lines[0]
            or "no NVIDIA GPU" in (gpu_lines[0])
        )


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own Aer examples, on a Python without Qiskit: the catalog (what
    `serve` and `worker` warn with) says which extra to install."""
    for module in [m for m in sys.modules if m == "qiskit" or m.startswith("qiskit.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "qiskit", None)  # `import qiskit` now fails
    problems = Catalog(ROOT / "experiments").problems
    ghz = next(p for p in problems if "aer_ghz.py" in p)
    assert "No module named 'qiskit'" in ghz or "import of qiskit halted" in ghz
    assert ghz.endswith("; install it with: pip install 'omnilab[aer]'")

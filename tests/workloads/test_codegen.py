"""Code generation end to end: real stacks (Redis, the Ollama stand-in), real sandbox.

The stand-in answers from tests/support/fixtures/codegen.json: real solutions to the
example tasks, one deliberately wrong (roman numerals without subtractive notation), so
the pass rates asserted here are computed, not assumed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnilab import Ollama, Redis, Stack, UsageError
from omnilab.progress import QuietReporter
from omnilab.workloads.codegen import CACHE_PATTERN, CodeGen, CodingTask
from omnilab.workloads.completions import CompletionError, ModelUnavailable
from omnilab.workloads.prompts import TemplateError
from omnilab.workloads.sandbox import Limits
from tests.support import CODEGEN_FIXTURES, ROOT, STANDIN_BIN, run_cli
from tests.support.promotion_support import Production

EXAMPLE = ROOT / "experiments" / "codegen_tasks.py"


@pytest.fixture
def standin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ollama` on PATH is the stand-in, answering from the codegen fixtures."""
    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:{os.environ['PATH']}")
    monkeypatch.setenv("OLLAMA_STANDIN_FIXTURES", str(CODEGEN_FIXTURES))


@pytest.fixture
def stack(standin_env: None) -> Iterator[Stack]:
    with Stack(Ollama(), Redis(), runtime="local", reporter=QuietReporter()) as s:
        yield s


def stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/standin/stats", timeout=5).json()["by_route"]


def ollama_url(stack: Stack) -> str:
    running = stack.services["ollama"]
    return running.service.url(running.endpoint)


def task(name: str, signature: str, tests: str | None = None, **extra: object) -> CodingTask:
    return CodingTask(
        name=name, description=f"the {name} task", signature=signature, tests=tests, **extra
    )


def test_example_experiment_scores_real_solutions(standin_env: None, workdir: Path) -> None:
    result = run_cli("run", EXAMPLE, "--json", "--runtime", "local")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    summary = run["summary"]
    assert summary["status"] == {
        "fizzbuzz": "passed",
        "palindrome": "passed",
        "word_count": "passed",
        "roman": "failed",
        "intervals": "passed",
    }
    assert summary["pass_rate"] == 0.8
    assert (summary["tests_passed"], summary["tests_total"]) == (12, 14)
    assert summary["cache_hits"] == 0
    assert summary["sandbox"]["network"].startswith("none")
    # The model was missing on the server: pulled, with progress, before any completion.
    assert "pulling it" in result.stderr and "pulled 'qwen2.5-coder:1.5b'" in result.stderr
    # Files and manifest under generated-code/<run id>/.
    folder = workdir / "generated-code" / run["id"]
    assert (folder / "roman" / "solution.py").read_text().startswith("def to_roman")
    assert "Roman numerals" in (folder / "roman" / "prompt.md").read_text()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["name"] == "qwen2.5-coder:1.5b" and manifest["model"]["digest"]
    assert manifest["options"] == {"temperature": 0.0, "seed": 0}
    solutions = [f for f in manifest["files"] if f["kind"] == "solution"]
    assert len(solutions) == 5
    for entry in solutions:
        assert entry["template"] == "solve" and entry["template_origin"] == "shipped"
        assert len(entry["prompt_sha256"]) == 64 and entry["completion_tokens"] > 0
        assert entry["cache_key"].startswith("omnilab:completion:")
    assert manifest["sandbox"]["limits"]["wall_s"] == 10.0
    # Tracked: the manifest as an artifact, scores and speed as metrics.
    assert any(a["path"] == "codegen/manifest.json" for a in run["artifacts"])
    assert run["metrics"]["pass_rate"]["last"] == 0.8
    assert run["metrics"]["latency_s"]["count"] == 5
    assert run["metrics"]["tokens_per_s"]["min"] > 0


def test_a_rerun_in_the_same_stack_asks_the_model_nothing(stack: Stack, workdir: Path) -> None:
    tasks = [
        task(
            "fizzbuzz",
            "def fizzbuzz(n: int) -> list[str]",
            "from solution import fizzbuzz\n"
            "def test_three():\n    assert fizzbuzz(3)[-1] == 'Fizz'\n",
        ),
        task("intervals", "def merge_intervals(intervals)"),
    ]
    first = CodeGen(stack, model="standin", progress=io.StringIO()).run(tasks)
    asked = stats(ollama_url(stack)).get("/api/chat", 0)
    assert asked == 2
    second = CodeGen(stack, model="standin", progress=io.StringIO()).run(tasks)
    assert stats(ollama_url(stack)).get("/api/chat", 0) == asked  # nothing new asked
    assert [c.cached for c in second.completions] == [True, True]
    assert [c.text for c in second.completions] == [c.text for c in first.completions]
    assert second.summary()["status"] == {"fizzbuzz": "passed", "intervals": "untested"}
    keys = sorted(stack.redis.scan_iter(match=CACHE_PATTERN))
    assert keys == sorted(c.key for c in first.completions)
    # A different option is a different question.
    CodeGen(stack, model="standin", options={"temperature": 0.7}, progress=io.StringIO()).run(
        tasks[:1]
    )
    assert stats(ollama_url(stack)).get("/api/chat", 0) == asked + 1


def test_a_later_run_reads_a_promoted_cache(
    standin_env: None,
    standin_ollama: str,
    production: Production,
    monkeypatch: pytest.MonkeyPatch,
    workdir: Path,
) -> None:
    """Run 1 is promoted (`run --promote`: its completions go to production Redis, the run
    queue's keys there untouched); run 2 reads them with cache_from=production and asks the
    model nothing."""
    monkeypatch.setenv("PATH", os.environ["PATH"].replace(f"{STANDIN_BIN}:", ""))
    monkeypatch.setenv("OLLAMA_BASE_URL", standin_ollama)
    prod = production.redis()
    prod.set("rq:queue:omnilab", "queued work")  # the run queue shares REDIS_URL
    first = run_cli("run", EXAMPLE, "--json", "--promote")
    assert first.returncode == 0, first.stderr
    assert "promoted" in first.stderr
    promoted = sorted(prod.scan_iter(match=CACHE_PATTERN))
    assert len(promoted) == 5
    assert prod.get("rq:queue:omnilab") == b"queued work"
    asked = stats(standin_ollama).get("/api/chat", 0)
    second = run_cli("run", EXAMPLE, "--json", "-p", "cache_from=production")
    assert second.returncode == 0, second.stderr
    assert stats(standin_ollama).get("/api/chat", 0) == asked
    summary = json.loads(second.stdout)["summary"]
    assert summary["cache_hits"] == 5 and summary["pass_rate"] == 0.8
    manifest = workdir / "generated-code" / json.loads(second.stdout)["id"] / "manifest.json"
    text = manifest.read_text()
    password = production.redis_url.split(":")[2].split("@")[0]
    assert password not in text and password not in second.stderr
    assert json.loads(text)["cache"]["sources"][0].startswith("production (redis://:****@")
    prod.close()


def test_a_cache_source_that_does_not_answer_is_refused(stack: Stack) -> None:
    with pytest.raises(UsageError, match=r"redis://:\*\*\*\*@127.0.0.1:9/0 does not answer"):
        CodeGen(stack, model="standin", cache_from="redis://:pw@127.0.0.1:9/0")


def test_generated_tests_and_a_repair(stack: Stack) -> None:
    roman = CodingTask(
        name="roman",
        description="Convert an integer from 1 to 3999 to Roman numerals",
        signature="def to_roman(n: int) -> str",
        generate_tests=True,
    )
    report = CodeGen(stack, model="standin", repairs=1, progress=io.StringIO()).run([roman])
    result = report.results[0]
    assert result.tests_completion is not None  # the model wrote the tests
    assert result.first_status == "failed"  # the first answer lacks IV and IX
    assert result.status == "passed" and result.repairs == 1
    folder = report.directory / "roman"
    assert "IIII" not in (folder / "solution.py").read_text()
    assert (folder / "solution.attempt0.py").exists()
    assert "def test_subtractive" in (folder / "test_solution.py").read_text()
    summary = report.summary()
    assert (summary["passed_first_try"], summary["passed"], summary["repairs"]) == (0, 1, 1)


def test_failures_of_generated_code_are_scored_not_fatal(stack: Stack) -> None:
    port = stack.services["redis"].endpoint.port
    tasks = [
        task("syntax", "def broken_syntax(x)", "def test_x():\n    pass\n"),
        task(
            "sleeper",
            "def sleeps_forever()",
            "from solution import sleeps_forever\ndef test_s():\n    sleeps_forever()\n",
        ),
        task(
            "network",
            "def phones_home(port)",
            f"from solution import phones_home\ndef test_redis():\n    phones_home({port})\n",
        ),
        task(
            "lint",
            "def unused_import(x)",
            "from solution import unused_import\ndef test_x():\n    unused_import(1)\n",
        ),
    ]
    gen = CodeGen(stack, model="standin", limits=Limits(wall_s=1), progress=io.StringIO())
    report = gen.run(tasks)
    status = report.summary()["status"]
    assert status == {
        "syntax": "syntax-error",
        "sleeper": "timeout",
        "network": "failed",
        "lint": "failed",
    }
    network = report.results[2].sandbox
    assert "Network is unreachable" in network.tests[0]["error"]  # the run's own Redis
    lint = report.results[3].lint
    assert {i["code"] for i in lint.issues} == {"F401", "F821"}
    assert report.pass_rate == 0.0


def test_generate_mode_without_streaming(stack: Stack) -> None:
    gen = CodeGen(stack, model="standin", mode="generate", stream=False, progress=io.StringIO())
    report = gen.run(
        [
            task(
                "palindrome",
                "def is_palindrome(text: str) -> bool",
                "from solution import is_palindrome\n"
                "def test_p():\n    assert is_palindrome('Aba')\n",
            )
        ]
    )
    assert report.results[0].status == "passed"
    assert stats(ollama_url(stack)).get("/api/generate") == 1
    completion = report.results[0].completion
    assert completion.first_token_s is None and completion.completion_tokens


def test_bad_input_is_refused_before_any_completion(stack: Stack, tmp_path: Path) -> None:
    gen = CodeGen(stack, model="standin", progress=io.StringIO())
    fine = task("fizzbuzz", "def fizzbuzz(n: int)")
    with pytest.raises(TemplateError, match="no prompt template 'nope' \\(available: fix, solve"):
        gen.run([fine, task("other", "def f()", template="nope")])
    with pytest.raises(UsageError, match="coding tasks named twice: fizzbuzz"):
        gen.run([fine, fine])
    with pytest.raises(UsageError, match="coding task #1: name: String should match"):
        gen.run([{"name": "../escape", "description": "x"}])
    with pytest.raises(UsageError, match="coding task #1: filename: Value error, must be"):
        gen.run([{"name": "x", "description": "x", "filename": "test_x.py"}])
    user = tmp_path / "templates"
    user.mkdir()
    (user / "solve.j2").write_text("Solve {{ description }} in {{ language }}.\n")
    with pytest.raises(TemplateError, match="'language' is undefined"):
        CodeGen(stack, model="standin", templates_dir=user).run([fine])
    assert stats(ollama_url(stack)) == {}  # nothing was asked of the model
    assert not (Path("generated-code")).exists()


def test_user_templates_win_over_shipped_ones(stack: Stack, tmp_path: Path) -> None:
    user = tmp_path / "templates"
    user.mkdir()
    (user / "solve.j2").write_text("{{ signature }}: in {{ language }}, please.\n")
    gen = CodeGen(stack, model="standin", templates_dir=user, progress=io.StringIO())
    report = gen.run([task("word_count", "def word_count(text)", variables={"language": "Py"})])
    prompt = (report.directory / "word_count" / "prompt.md").read_text()
    assert prompt == "def word_count(text): in Py, please.\n"
    manifest = json.loads(report.manifest.read_text())
    assert manifest["files"][0]["template_origin"] == str(user)


def test_a_missing_model_is_refused_when_pulling_is_off(stack: Stack) -> None:
    gen = CodeGen(stack, model="not-there:7b", pull=False, progress=io.StringIO())
    with pytest.raises(ModelUnavailable, match="'not-there:7b' is not on the server"):
        gen.run([task("fizzbuzz", "def fizzbuzz(n: int)")])


def test_codegen_needs_ollama_in_the_stack(standin_env: None) -> None:
    with (
        Stack(Redis(), runtime="local", reporter=QuietReporter()) as s,
        pytest.raises(UsageError, match="CodeGen needs Ollama"),
    ):
        CodeGen(s, model="standin")


def test_a_dropped_connection_is_retried(
    standin_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_STANDIN_DROP", "2")
    with Stack(Ollama(), runtime="local", reporter=QuietReporter()) as s:
        gen = CodeGen(s, model="standin", cache=False, progress=io.StringIO())
        answer = gen.complete("Write def fizzbuzz(n: int)")
        assert answer.text.startswith("Here is the module")
        assert stats(ollama_url(s))["/api/chat"] == 3  # two resets, then the answer
    monkeypatch.setenv("OLLAMA_STANDIN_DROP", "3")
    with Stack(Ollama(), runtime="local", reporter=QuietReporter()) as s:
        gen = CodeGen(s, model="standin", cache=False, progress=io.StringIO())
        with pytest.raises(CompletionError, match="connection lost 3 times"):
            gen.complete("Write def fizzbuzz(n: int)")

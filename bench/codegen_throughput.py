"""Code-generation completions per second: omnilab against the ollama client, same server.

    python bench/codegen_throughput.py [--completions 200] [--rounds 5] [--tokens-per-s 0]

One Ollama stand-in server (the tests', tests/support/ollama_standin/, answering the
codegen fixtures: 40-150 tokens each, streamed) and one real Redis (omnilab's local
stack) serve all arms, alternating, after a warm-up:

- direct: ``ollama.Client.chat(model, messages, stream=True)``, pieces joined;
- omnilab: batches of 5 prompts (the example's tasks) through the completion path that
  ``CodeGen.run`` uses (``complete_many``): cache keys, one Redis lookup per batch (all
  misses: every prompt is new), the same streamed chat per prompt, timings, the answers
  stored in Redis in one round trip; the two arms alternate every batch;
- omnilab cached: the round's prompts again in one batch, every answer from the run's
  Redis (what a re-run of the same tasks costs);
- and, for completeness, the same two one prompt per call (``CodeGen.complete``), which
  costs a Redis round trip per prompt.

Goals: omnilab >= 0.9x the direct client's completions/s; the cached re-run >= 50x
faster than the uncached one. ``--tokens-per-s`` paces the stand-in like a model
generating that fast (0: it answers at once, so every cost of omnilab shows in full).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import summary, write

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "support" / "ollama_standin" / "ollama_standin.py"
FIXTURES = ROOT / "tests" / "support" / "fixtures" / "codegen.json"
#: Prompts per CodeGen batch, as in experiments/codegen_tasks.py.
CHUNK = 5
SIGNATURES = [
    "def fizzbuzz(n: int)",
    "def is_palindrome(text)",
    "def word_count(text)",
    "def to_roman(n)",
    "def merge_intervals(intervals)",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_standin(tokens_per_s: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_STANDIN_FIXTURES": str(FIXTURES),
        "OLLAMA_STANDIN_TOKENS_PER_S": str(tokens_per_s),
    }
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "serve"], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the Ollama stand-in did not start")


def prompts(count: int, tag: str) -> list[str]:
    return [
        f"Write {SIGNATURES[i % len(SIGNATURES)]} in Python. [{tag} #{i}]" for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--completions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens-per-s", type=float, default=0.0)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))

    import ollama

    from omnilab import Ollama, Redis, Stack
    from omnilab.progress import QuietReporter
    from omnilab.workloads.codegen import CodeGen

    proc, url = start_standin(args.tokens_per_s)
    os.environ["OLLAMA_BASE_URL"] = url
    model = "standin"
    try:
        with Stack(Ollama(), Redis(), runtime="local", reporter=QuietReporter()) as stack:
            if stack.services["ollama"].handle.get("kind") != "external":
                raise SystemExit("an `ollama` binary on PATH was used; remove it from PATH")
            client = ollama.Client(host=url)
            gen = CodeGen(stack, model=model, progress=io.StringIO())
            gen.llm.ensure_model()

            def direct(batch: list[str]) -> float:
                """Seconds for the batch through the ollama client."""
                began = time.perf_counter()
                for prompt in batch:
                    reply = client.chat(
                        model=model,
                        messages=[{"role": "user", "content": prompt}],
                        stream=True,
                        options={},
                    )
                    "".join(part.message.content or "" for part in reply)
                return time.perf_counter() - began

            def through_omnilab(batch: list[str], hits: int, per_call: bool = False) -> float:
                """Seconds for the batch through omnilab; checks how many came from the cache."""
                began = time.perf_counter()
                if per_call:
                    answers = [gen.complete(prompt) for prompt in batch]
                else:
                    answers = gen.llm.complete_many(batch)
                elapsed = time.perf_counter() - began
                assert sum(a.cached for a in answers) == hits, "unexpected cache hits/misses"
                return elapsed

            warm = prompts(20, "warm-up")
            direct(warm), through_omnilab(warm, 0)
            # Arms alternate every CHUNK prompts (the size of a CodeGen.run of the example
            # tasks), so a neighbour's load on this shared machine falls on both alike.
            n = args.completions
            arms = ("direct", "omnilab", "cached", "omnilab_per_call", "cached_per_call")
            rates: dict[str, list[float]] = {arm: [] for arm in arms}
            for r in range(args.rounds):
                ours, theirs = prompts(n, f"omnilab {r}"), prompts(n, f"direct {r}")
                spent = {"direct": 0.0, "omnilab": 0.0}
                for i in range(0, n, CHUNK):
                    spent["direct"] += direct(theirs[i : i + CHUNK])
                    spent["omnilab"] += through_omnilab(ours[i : i + CHUNK], 0)
                rates["direct"].append(n / spent["direct"])
                rates["omnilab"].append(n / spent["omnilab"])
                rates["cached"].append(n / through_omnilab(ours, n))  # the re-run
                singles = prompts(n, f"per call {r}")
                per_call = sum(through_omnilab([p], 0, per_call=True) for p in singles)
                rates["omnilab_per_call"].append(n / per_call)
                again = sum(through_omnilab([p], 1, per_call=True) for p in singles)
                rates["cached_per_call"].append(n / again)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    stats = {arm: summary(values) for arm, values in rates.items()}
    ratio = stats["omnilab"]["median"] / stats["direct"]["median"]
    # Each round's arms ran interleaved, so the round's own ratio is the steadier figure.
    per_round = [o / d for o, d in zip(rates["omnilab"], rates["direct"], strict=True)]
    cached_speedup = stats["cached"]["median"] / stats["omnilab"]["median"]
    pace = f"{args.tokens_per_s:g} tokens/s" if args.tokens_per_s else "no pacing"
    print(f"codegen completions/s, {args.completions} per round, {args.rounds} rounds ({pace})")
    labels = {
        "direct": "ollama client, direct",
        "omnilab": "omnilab, batches of 5",
        "cached": "omnilab, cached re-run",
        "omnilab_per_call": "omnilab, one per call",
        "cached_per_call": "cached, one per call",
    }
    for arm, s in stats.items():
        print(
            f"  {labels[arm]:26s} median {s['median']:9.1f}/s "
            f"(min {s['min']:.1f}, max {s['max']:.1f})"
        )
    print(
        f"  ratio omnilab/direct: {ratio:.3f}x of medians; per round "
        f"{', '.join(f'{r:.2f}' for r in per_round)} (goal >= 0.9x)"
    )
    print(f"  cached re-run / uncached: {cached_speedup:.1f}x  (goal >= 50x)")
    per_call = stats["cached_per_call"]["median"] / stats["omnilab_per_call"]["median"]
    print(f"  one prompt per call: cached / uncached {per_call:.1f}x")
    suffix = f"_paced_{args.tokens_per_s:g}" if args.tokens_per_s else ""
    path = write(
        f"codegen_throughput{suffix}",
        {
            "params": vars(args),
            "completions_per_s": stats,
            "ratio_omnilab_direct": ratio,
            "ratio_per_round": per_round,
            "cached_speedup": cached_speedup,
            "cached_speedup_per_call": per_call,
            "goals": {"ratio": 0.9, "cached_speedup": 50},
            "load_average_after": os.getloadavg(),
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()

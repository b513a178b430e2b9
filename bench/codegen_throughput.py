"""Code-generation completions per second: omnilab against the ollama client, same server.

    python bench/codegen_throughput.py [--completions 200] [--rounds 5] [--tokens-per-s 0]

One Ollama stand-in server (tests/ollama_standin.py, answering the codegen fixtures:
40-150 tokens each, streamed) and one real Redis (omnilab's local stack) serve all arms,
alternating, after a warm-up:

- direct: ``ollama.Client.chat(model, messages, stream=True)``, pieces joined;
- omnilab: ``CodeGen.complete(prompt)``: cache key, Redis lookup (a miss: every prompt
  is new), the same streamed chat, timings, and the answer stored in Redis;
- omnilab cached: the same prompts again, every one answered by the run's Redis.

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
STANDIN = ROOT / "tests" / "ollama_standin.py"
FIXTURES = ROOT / "tests" / "fixtures" / "codegen.json"
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
                began = time.perf_counter()
                for prompt in batch:
                    reply = client.chat(
                        model=model,
                        messages=[{"role": "user", "content": prompt}],
                        stream=True,
                        options={},
                    )
                    "".join(part.message.content or "" for part in reply)
                return len(batch) / (time.perf_counter() - began)

            def through_omnilab(batch: list[str]) -> tuple[float, int]:
                began = time.perf_counter()
                hits = sum(gen.complete(prompt).cached for prompt in batch)
                return len(batch) / (time.perf_counter() - began), hits

            warm = prompts(20, "warm-up")
            direct(warm), through_omnilab(warm)
            rates: dict[str, list[float]] = {"direct": [], "omnilab": [], "cached": []}
            for r in range(args.rounds):
                fresh_direct = prompts(args.completions, f"direct {r}")
                fresh_ours = prompts(args.completions, f"omnilab {r}")
                rates["direct"].append(direct(fresh_direct))
                rate, hits = through_omnilab(fresh_ours)
                assert hits == 0, "an uncached round hit the cache"
                rates["omnilab"].append(rate)
                rate, hits = through_omnilab(fresh_ours)  # the same prompts again
                assert hits == len(fresh_ours), "the re-run missed the cache"
                rates["cached"].append(rate)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    stats = {arm: summary(values) for arm, values in rates.items()}
    ratio = stats["omnilab"]["median"] / stats["direct"]["median"]
    cached_speedup = stats["cached"]["median"] / stats["omnilab"]["median"]
    pace = f"{args.tokens_per_s:g} tokens/s" if args.tokens_per_s else "no pacing"
    print(f"codegen completions/s, {args.completions} per round, {args.rounds} rounds ({pace})")
    labels = {
        "direct": "ollama client, direct",
        "omnilab": "omnilab CodeGen.complete",
        "cached": "omnilab, cached re-run",
    }
    for arm, s in stats.items():
        print(
            f"  {labels[arm]:26s} median {s['median']:9.1f}/s "
            f"(min {s['min']:.1f}, max {s['max']:.1f})"
        )
    print(f"  ratio omnilab/direct: {ratio:.3f}x  (goal >= 0.9x)")
    print(f"  cached re-run / uncached: {cached_speedup:.1f}x  (goal >= 50x)")
    suffix = f"_paced_{args.tokens_per_s:g}" if args.tokens_per_s else ""
    path = write(
        f"codegen_throughput{suffix}",
        {
            "params": vars(args),
            "completions_per_s": stats,
            "ratio_omnilab_direct": ratio,
            "cached_speedup": cached_speedup,
            "goals": {"ratio": 0.9, "cached_speedup": 50},
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()

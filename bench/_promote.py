"""Helpers shared by the promotion benchmarks: a source and a production, timed arms."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from _common import summary

from omnilab.config import get_settings
from omnilab.progress import QuietReporter
from omnilab.services.promotable import ItemRecord, Progress, Promotable


def state_dir() -> None:
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))


def promote_item(item: Promotable, source_endpoint: Any) -> dict[str, float]:
    """One item promoted the way ``omnilab promote`` does it: plan, staged copy with its
    verification, atomic switch. Returns the time of each phase and the total."""
    promoter = item.promoter(get_settings(), uuid.uuid4().hex, source_endpoint, QuietReporter())
    try:
        began = time.perf_counter()
        plan = promoter.plan("fail")
        planned = time.perf_counter()
        assert plan.action == "create", plan
        record = ItemRecord(item=item.to_dict(), plan=plan)
        promoter.stage(record, Progress(QuietReporter(), plan.label, plan.source_count, "x"))
        staged = time.perf_counter()
        promoter.switch(record)
        switched = time.perf_counter()
    finally:
        promoter.close()
    assert record.checksums["source"], record
    return {
        "plan_s": planned - began,
        "stage_and_verify_s": staged - planned,
        "switch_s": switched - staged,
        "total_s": switched - began,
        "method": record.staging.get("copy_method", ""),  # type: ignore[dict-item]
        **{f"stage_{k}_s": v for k, v in record.seconds.items()},
    }


def alternate(
    arms: dict[str, Callable[[], Any]], reset: Callable[[], None], rounds: int
) -> dict[str, list[Any]]:
    """Run each arm ``rounds`` times, alternating, production emptied before each."""
    results: dict[str, list[Any]] = {name: [] for name in arms}
    for i in range(rounds):
        for name, arm in arms.items():
            reset()
            began = time.perf_counter()
            detail = arm()
            elapsed = time.perf_counter() - began
            results[name].append({"elapsed_s": elapsed, **(detail or {})})
            print(f"  round {i + 1} {name:28s} {elapsed:8.3f}s", flush=True)
    return results


def medians(samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in samples[0].items() if isinstance(v, float)]
    out: dict[str, Any] = {k: statistics.median(s[k] for s in samples) for k in keys}
    out["elapsed"] = summary([s["elapsed_s"] for s in samples])
    return out


def report(
    name: str,
    results: dict[str, list[Any]],
    peer_arm: str,
    goal: float,
    facts: dict[str, Any],
) -> dict[str, Any]:
    """Print medians and the speed ratio of every omnilab arm against the peer; write JSON."""
    from _common import write

    peer = medians(results[peer_arm])
    data: dict[str, Any] = {**facts, "goal_ratio": goal, "peer": peer, "arms": {}}
    print(f"  {peer_arm}: median {peer['elapsed']['median']:.3f}s")
    for arm, samples in results.items():
        if arm == peer_arm:
            continue
        ours = medians(samples)
        ratio = peer["elapsed"]["median"] / ours["elapsed"]["median"]
        phases = ", ".join(
            f"{k.removesuffix('_s')} {ours[k]:.3f}"
            for k in ours
            if k.endswith("_s") and k != "total_s"
        )
        print(f"  {arm}: median {ours['elapsed']['median']:.3f}s ({phases})")
        print(f"    speed ratio against the peer: {ratio:.2f}x (goal >= {goal:g}x)")
        data["arms"][arm] = {**ours, "ratio": ratio, "method": samples[0].get("method")}
    data["samples"] = results
    path = write(name, data)
    print(f"  results: {path}")
    return data

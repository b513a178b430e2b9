"""Notebook display of a run with 10,000 metric points: omnilab's card against the usual
pandas + matplotlib rendering of the same data, same store, same run.

    python bench/notebook_card.py [--rounds 15] [--points 10000] [--metrics 2] [--scale]

A run is recorded in a real PostgreSQL (started by omnilab's local runtime) with
``--points`` points spread over ``--metrics`` metrics. Arms, alternating, after a
warm-up round each:

- omnilab: ``run._repr_html_()`` on the ``Run`` as ``omnilab.run`` returns it (what
  Jupyter calls to show it): reads the charts' series from the store (reduced per pixel
  column in SQL), builds the card and one SVG chart per metric;
- omnilab, cold object: ``Run.load(id)`` then ``_repr_html_()``, as for a past run;
- peer: what one writes by hand: read every point (``store.metrics``), a pandas
  DataFrame shown as Jupyter shows it (``_repr_html_``, truncated to pandas'
  ``display.max_rows``), and a matplotlib figure (one subplot per metric, every point)
  encoded as PNG, as Jupyter's inline backend does; and its plot alone, from points
  already in memory;
- ablation: omnilab's SVG drawn from every point instead of the reduced series.

Goal: the card under 200 ms at 10,000 points. ``--scale`` adds timings at 50,000,
100,000 and 1,000,000 points (3 rounds of the card, 1 of the peer).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime

from _common import summary, write

GOAL_MS = 200.0


def record_run(store, points: int, metrics: int) -> str:  # type: ignore[no-untyped-def]
    """A finished run with ``points`` points over ``metrics`` metrics, written with COPY."""
    from omnilab.tracking.records import RunRecord

    run_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    store.create_run(
        RunRecord(
            id=run_id,
            experiment="BenchCard",
            status="succeeded",
            params={"lr": 0.001, "batch": 64, "model": "tiny"},
            summary={"loss": 0.05, "accuracy": 0.97},
            timings={"stack_start_s": 0.8, "experiment_s": 12.0, "teardown_s": 0.1, "total_s": 13},
            created_at=now,
            started_at=now,
            finished_at=now,
        )
    )
    per_metric = points // metrics
    t0 = time.time()
    rows = [
        (f"metric_{k}", i, math.exp(-i / per_metric * (k + 2)) + 0.02 * math.sin(i), t0 + i * 1e-3)
        for k in range(metrics)
        for i in range(per_metric)
    ]
    writer = store.metric_writer(run_id)
    writer(rows)
    writer.close()
    return run_id


def omnilab_card(run_id: str) -> tuple[float, int]:
    from omnilab.recorded import Run

    run = Run.load(run_id)  # as omnilab.run returns it: record, summaries, artifacts
    began = time.perf_counter()
    html = run._repr_html_()
    return time.perf_counter() - began, len(html)


def omnilab_card_cold(run_id: str) -> tuple[float, int]:
    from omnilab.recorded import Run

    began = time.perf_counter()
    html = Run.load(run_id)._repr_html_()
    return time.perf_counter() - began, len(html)


def _matplotlib_png(frame) -> bytes:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    keys = sorted(frame["key"].unique())
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 1.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        part = frame[frame["key"] == key]
        ax.plot(part["step"], part["value"], linewidth=1)
        ax.set_title(key)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _frame(run_id: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        points = store.metrics(run_id)
    return pd.DataFrame(
        {
            "key": [p.key for p in points],
            "step": [p.step for p in points],
            "value": [p.value for p in points],
        }
    )


def peer(run_id: str) -> tuple[float, int]:
    """Every point read, shown as Jupyter shows a DataFrame (``_repr_html_``, truncated
    to pandas' display.max_rows) and plotted with matplotlib to PNG."""
    began = time.perf_counter()
    frame = _frame(run_id)
    html = frame._repr_html_()
    png = _matplotlib_png(frame)
    return time.perf_counter() - began, len(html) + len(png)


_FRAMES: dict[str, object] = {}


def peer_plot_only(run_id: str) -> tuple[float, int]:
    """Only the matplotlib figure, from points already in memory."""
    frame = _FRAMES.setdefault(run_id, _frame(run_id))
    began = time.perf_counter()
    png = _matplotlib_png(frame)
    return time.perf_counter() - began, len(png)


def ablation_all_points(run_id: str) -> tuple[float, int]:
    """The same SVG charts, drawn from every point (no reduction)."""
    from omnilab.notebook.svg import Line, line_chart
    from omnilab.tracking.store import TrackingStore

    began = time.perf_counter()
    with TrackingStore.open() as store:
        points = store.metrics(run_id)
    by_key: dict[str, tuple[list[float], list[float]]] = {}
    for p in points:
        steps, values = by_key.setdefault(p.key, ([], []))
        steps.append(p.step)
        values.append(p.value)
    svgs = [line_chart([Line(k, s, v)], title=k) for k, (s, v) in sorted(by_key.items())]
    return time.perf_counter() - began, sum(map(len, svgs))


ARMS = {
    "omnilab card": omnilab_card,
    "omnilab card, cold Run.load": omnilab_card_cold,
    "peer: pandas + matplotlib PNG": peer,
    "peer, plot only (points in memory)": peer_plot_only,
    "ablation: SVG of every point": ablation_all_points,
}


def measure(run_id: str, rounds: int) -> dict[str, dict]:  # type: ignore[type-arg]
    for fn in ARMS.values():
        fn(run_id)  # warm-up: imports, font cache, first connection
    samples: dict[str, list[float]] = {name: [] for name in ARMS}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in ARMS.items():
            seconds, size = fn(run_id)
            samples[name].append(seconds * 1000)
            sizes[name] = size
    return {name: {**summary(s), "bytes": sizes[name]} for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=2)
    parser.add_argument("--scale", action="store_true", help="also time 50k, 100k and 1M points")
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))

    began = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    matplotlib_import_ms = (time.perf_counter() - began) * 1000

    from omnilab import Postgres, Stack
    from omnilab.progress import QuietReporter
    from omnilab.tracking.store import TrackingStore

    stack = Stack(Postgres(database="tracking"), runtime="local", reporter=QuietReporter())
    stack.start()
    try:
        running = stack.services["postgres"]
        os.environ["OMNILAB_TRACKING_URL"] = running.service.url(running.endpoint, secrets=True)
        with TrackingStore.open() as store:
            run_id = record_run(store, args.points, args.metrics)
        print(
            f"notebook card, {args.points:,} points over {args.metrics} metrics, "
            f"{args.rounds} rounds (ms)"
        )
        result = measure(run_id, args.rounds)
        for name, s in result.items():
            print(
                f"  {name:40s} median {s['median']:8.1f}  min {s['min']:8.1f}  "
                f"max {s['max']:8.1f}  output {s['bytes'] / 1024:8.1f} KiB"
            )
        card = result["omnilab card"]["median"]
        peer_ms = result["peer: pandas + matplotlib PNG"]["median"]
        ratio = card / peer_ms
        print(f"  ratio omnilab card / peer: {ratio:.3f}x ({peer_ms / card:.1f}x faster)")
        print(f"  goal: card under {GOAL_MS:.0f} ms: {'met' if card < GOAL_MS else 'NOT met'}")
        print(f"  (first import of matplotlib, not counted above: {matplotlib_import_ms:.0f} ms)")
        scale = {}
        if args.scale:
            for n in (50_000, 100_000, 1_000_000):
                with TrackingStore.open() as store:
                    big = record_run(store, n, args.metrics)
                omnilab_card(big)  # warm
                ms = [omnilab_card(big)[0] * 1000 for _ in range(3)]
                p_ms = peer(big)[0] * 1000
                scale[n] = {"omnilab_card_ms": summary(ms), "peer_ms": p_ms}
                print(
                    f"  {n:>9,} points: omnilab card median {summary(ms)['median']:.0f} ms, "
                    f"peer {p_ms:.0f} ms"
                )
    finally:
        stack.close()
    path = write(
        "notebook_card",
        {
            "points": args.points,
            "metrics": args.metrics,
            "rounds": args.rounds,
            "goal_ms": GOAL_MS,
            "arms_ms": result,
            "ratio_card_over_peer": ratio,
            "matplotlib_import_ms": matplotlib_import_ms,
            "scale": scale,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()

"""Line charts as inline SVG: no plotting library, nothing to install, fast to build.

A notebook shows a run the moment it returns; matplotlib would add a second of import
and tens of milliseconds per figure for what is a few polylines. The charts here take
series already reduced to the chart's width (see :mod:`omnilab.tracking.queries`), so
building one costs about as much as formatting its points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colour-blind-safe palette (Okabe-Ito), readable on light and dark backgrounds.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
)


@dataclass(frozen=True)
class Line:
    """One line of a chart: points in step order, a label for legend and tooltip."""

    label: str
    steps: Sequence[float]
    values: Sequence[float]
    color: str = PALETTE[0]
    total: int | None = None  # points stored, when more than drawn


def fmt(value: float) -> str:
    """Short, exact-enough tick labels: 0.000123 -> 1.23e-04, 12345.6 -> 1.235e+04."""
    if value == 0:
        return "0"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"


def _extent(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if lo == hi:
        pad = abs(lo) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _segments(xs: Sequence[float], ys: Sequence[float]) -> list[str]:
    """``points`` attributes of polylines, split where a value is not finite."""
    out: list[str] = []
    current: list[str] = []
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(y):
            current.append(f"{x:.1f},{y:.1f}")
        elif current:
            out.append(" ".join(current))
            current = []
    if current:
        out.append(" ".join(current))
    return out


def line_chart(
    lines: Sequence[Line],
    *,
    title: str = "",
    width: int = 300,
    height: int = 140,
    x_label: str = "step",
) -> str:
    """An SVG chart of ``lines`` sharing both axes; ``title`` above, min/max on the axes."""
    left, right, top, bottom = 52, 10, 18 if title else 6, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    all_x = [x for line in lines for x in line.steps]
    all_y = [y for line in lines for y in line.values]
    x0, x1 = (min(all_x), max(all_x)) if all_x else (0.0, 1.0)
    if x0 == x1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = _extent(all_y)
    sx = plot_w / (x1 - x0)
    sy = plot_h / (y1 - y0)

    def px(x: float) -> float:
        return left + (x - x0) * sx

    def py(y: float) -> float:
        return top + plot_h - (y - y0) * sy

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" '
        'fill="currentColor" role="img">'
    ]
    if title:
        parts.append(f'<text x="{left}" y="12" font-weight="bold">{escape(title)}</text>')
    # Frame and a light grid at the quarter marks.
    for i in range(5):
        y = top + plot_h * i / 4
        opacity = "0.35" if i in (0, 4) else "0.12"
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="currentColor" stroke-opacity="{opacity}"/>'
        )
    finite = [v for v in all_y if math.isfinite(v)]
    if finite:  # label the data's own extremes, where they are drawn
        lo, hi = min(finite), max(finite)
        marks = [(hi, py(hi) + 3)] if lo == hi else [(hi, py(hi) + 3), (lo, py(lo) + 3)]
        for value, y in marks:
            parts.append(
                f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
            )
    base = height - 6
    parts.append(f'<text x="{left}" y="{base}">{escape(fmt(x0))}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{base}" text-anchor="middle" '
        f'fill-opacity="0.6">{escape(x_label)}</text>'
    )
    parts.append(f'<text x="{left + plot_w}" y="{base}" text-anchor="end">{escape(fmt(x1))}</text>')
    for line in lines:
        xs = [px(x) for x in line.steps]
        ys = [py(y) if math.isfinite(y) else math.nan for y in line.values]
        drawn = len(line.steps)
        tip = f"{line.label}: {drawn} points"
        if line.total is not None and line.total > drawn:
            tip = f"{line.label}: {line.total} points, drawn as {drawn} (per-pixel min/max)"
        parts.append(f"<g><title>{escape(tip)}</title>")
        for points in _segments(xs, ys):
            if " " in points:
                parts.append(
                    f'<polyline points="{points}" fill="none" stroke="{line.color}" '
                    'stroke-width="1.5" stroke-linejoin="round"/>'
                )
            else:  # a single point: a dot, or it would not show
                cx, cy = points.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{line.color}"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)

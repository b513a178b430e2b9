"""HTML building blocks shared by run cards, run tables and comparisons.

Everything a run holds (params, summaries, experiment names, error text, artifact paths)
is the user's data and is escaped here; nothing from a run reaches the page unescaped.
The styles are scoped under ``.omnilab`` and use ``currentColor`` so that the cards
read well in light and dark notebook themes.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

STATUS_COLORS = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "cancelled": "#9a6700",
    "running": "#0969da",
    "queued": "#6e7781",
}

CSS = """<style>
.omnilab{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;
 line-height:1.4;border:1px solid rgba(127,127,127,.35);border-radius:6px;padding:10px 12px;
 margin:4px 0;max-width:100%;overflow-x:auto}
.omnilab .ol-head{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;margin-bottom:6px}
.omnilab .ol-title{font-weight:600;font-size:14px}
.omnilab .ol-muted{opacity:.65}
.omnilab .ol-badge{color:#fff;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.omnilab .ol-sections{display:flex;flex-wrap:wrap;gap:8px 28px}
.omnilab h4{margin:8px 0 2px;font-size:12px;text-transform:uppercase;letter-spacing:.04em;
 opacity:.7}
.omnilab table{border-collapse:collapse;font-size:12px;margin:0}
.omnilab th,.omnilab td{padding:1px 10px 1px 0;text-align:left;vertical-align:top;
 border:none;background:none!important;white-space:nowrap}
.omnilab th{font-weight:600}
.omnilab td.ol-num{text-align:right;font-variant-numeric:tabular-nums}
.omnilab tr.ol-diff td,.omnilab tr.ol-diff th{font-weight:700}
.omnilab .ol-charts{display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:4px}
.omnilab .ol-bar{display:flex;height:8px;width:300px;border-radius:4px;overflow:hidden;
 margin:3px 0}
.omnilab pre{font-size:11px;max-height:240px;overflow:auto;margin:4px 0}
.omnilab .ol-legend span{display:inline-block;margin-right:12px}
.omnilab .ol-swatch{display:inline-block;width:10px;height:10px;border-radius:2px;
 margin-right:4px;vertical-align:middle}
</style>"""


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def number(value: Any) -> str:
    """Numbers as a person reads them: integers whole, floats to 6 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return compact(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def compact(value: Any, width: int = 80) -> str:
    """A value on one line: strings as they are, the rest as short JSON."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)} min {secs:02.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes):02d} min"


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#6e7781")
    return f'<span class="ol-badge" style="background:{color}">{esc(status)}</span>'


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned, everything else escaped and kept short.

    A float stays visibly a float (``5.0``, not ``5``): params keep their types.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = number(value)
        if isinstance(value, float) and text.lstrip("-").isdigit():
            text += ".0"
        return f'<td class="ol-num">{esc(text)}</td>'
    if value is None:
        return '<td class="ol-muted">-</td>'
    text = compact(value)
    full = value if isinstance(value, str) else json.dumps(value, default=str)
    title = f' title="{esc(full)}"' if len(full) > len(text) else ""
    return f"<td{title}>{esc(text)}</td>"


def kv_table(data: dict[str, Any]) -> str:
    if not data:
        return '<span class="ol-muted">(none)</span>'
    rows = "".join(f"<tr><th>{esc(k)}</th>{cell(v)}</tr>" for k, v in data.items())
    return f"<table>{rows}</table>"


def section(title: str, body: str) -> str:
    return f"<div><h4>{esc(title)}</h4>{body}</div>"


def file_link(path: Path, label: str) -> str:
    """A link a notebook front end can open.

    Jupyter serves files below the notebook's folder and resolves relative links against
    it; the kernel starts in that folder, so a path relative to the working directory
    is the one that opens. Files elsewhere get a ``file://`` link (for local front ends).
    """
    try:
        href = quote(os.path.relpath(path, Path.cwd()))
        if href.startswith(".."):
            raise ValueError
    except ValueError:
        href = path.resolve().as_uri()
    return f'<a href="{esc(href)}" target="_blank">{esc(label)}</a>'


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"

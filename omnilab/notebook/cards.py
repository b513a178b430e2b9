"""The HTML card a :class:`~omnilab.recorded.Run` shows in a notebook.

One glance answers what a researcher asks of a run that just returned: did it work,
with which params, what came out, how long each phase took, what it wrote, and how its
metrics moved over steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from omnilab.notebook.charts import MAX_CHARTS, charts_html, load_series, metric_svgs, safely
from omnilab.notebook.html import (
    CSS,
    badge,
    esc,
    file_link,
    kv_table,
    number,
    seconds,
    section,
    size,
    when,
)

if TYPE_CHECKING:
    from omnilab.recorded import Run
    from omnilab.stack import Stack
    from omnilab.tracking.records import ArtifactRecord, MetricSummary

T = TypeVar("T")

#: Artifacts listed on a card; the rest are counted.
MAX_ARTIFACTS = 20

_PHASES = (
    ("stack_start_s", "stack start", "#56B4E9"),
    ("fork_s", "fork", "#009E73"),
    ("experiment_s", "experiment", "#0072B2"),
    ("teardown_s", "teardown", "#999999"),
)


def _header(run: Run) -> str:
    r = run.record
    git = (r.environment or {}).get("git") or {}
    facts = [when(r.created_at), seconds(run.duration)]
    if r.runtime:
        facts.append(f"runtime {r.runtime}")
    if git.get("commit"):
        facts.append(f"git {git['commit'][:10]}{' (dirty)' if git.get('dirty') else ''}")
    if r.tags:
        facts.append("tags " + ", ".join(r.tags))
    name = f"<span>{esc(r.name)}</span>" if r.name else ""
    return (
        '<div class="ol-head">'
        f'<span class="ol-title">{esc(r.experiment)}</span>{name}'
        f'<code title="{esc(r.id)}">{esc(r.short_id)}</code>{badge(r.status)}'
        f'<span class="ol-muted">{esc(" · ".join(facts))}</span></div>'
    )


def _metrics_table(summaries: list[MetricSummary]) -> str:
    if not summaries:
        return '<span class="ol-muted">(none)</span>'
    head = "<tr><th></th><th>last</th><th>min</th><th>max</th><th>points</th><th>step</th></tr>"
    rows = "".join(
        f"<tr><th>{esc(m.key)}</th>"
        + "".join(
            f'<td class="ol-num">{esc(number(v))}</td>'
            for v in (m.last, m.min, m.max, m.count, m.last_step)
        )
        + "</tr>"
        for m in summaries
    )
    return f"<table>{head}{rows}</table>"


def timing_bar(timings: dict[str, Any]) -> str:
    """Where the run's time went, as a bar split by phase, with the figures beside it."""
    total = timings.get("total_s")
    phases = [(label, timings[k], color) for k, label, color in _PHASES if timings.get(k)]
    if not phases:
        return ""
    span = sum(v for _, v, _ in phases)
    bar = "".join(
        f'<div title="{esc(label)} {esc(seconds(v))}" '
        f'style="width:{100 * v / span:.2f}%;background:{color}"></div>'
        for label, v, color in phases
    )
    figures = " · ".join(f"{label} {seconds(v)}" for label, v, _ in phases)
    if total:
        figures += f" · total {seconds(total)}"
    return f'<div class="ol-bar">{bar}</div><div class="ol-muted">{esc(figures)}</div>'


def _services(run: Run) -> str:
    services = (run.record.stack or {}).get("services") or {}
    if not services:
        return ""
    rows = "".join(
        f"<tr><th>{esc(name)}</th><td>{esc(info.get('version') or '-')}</td>"
        f'<td class="ol-muted">{esc(info.get("source") or "")}</td>'
        f'<td class="ol-num">{esc(seconds(info.get("ready_seconds")))}</td></tr>'
        for name, info in services.items()
    )
    return f"<table>{rows}</table>"


def _artifacts(run: Run, artifacts: list[ArtifactRecord]) -> str:
    base = run.artifacts_dir
    items = []
    for a in artifacts[:MAX_ARTIFACTS]:
        link = file_link(base / a.path, a.path) if base is not None else esc(a.path)
        items.append(f'<tr><td>{link}</td><td class="ol-num">{esc(size(a.size))}</td></tr>')
    more = len(artifacts) - MAX_ARTIFACTS
    if more > 0:
        items.append(f'<tr><td class="ol-muted">and {more} more in {esc(base)}</td></tr>')
    return f"<table>{''.join(items)}</table>"


def _error(run: Run) -> str:
    if not run.error:
        return ""
    lines = run.error.strip().splitlines()
    last = lines[-1] if lines else run.error
    detail = ""
    if len(lines) > 1:
        detail = (
            f"<details><summary>traceback</summary><pre>{esc(run.error.rstrip())}</pre></details>"
        )
    return f'<div style="color:#cf222e"><b>error:</b> {esc(last)}</div>{detail}'


def run_card(run: Run) -> str:
    """The card: header, params/summary/metrics side by side, timings, charts, files.

    What lives in the tracking store (metrics, artifacts) may fail to load; the card
    then says so in place of that part instead of failing as a whole.
    """
    problems: list[str] = []

    def load(loader: Callable[[], T]) -> T | None:
        value, problem = safely(loader)
        if problem and problem not in problems:
            problems.append(problem)
        return value

    summaries = load(lambda: run.metric_summaries) or []
    artifacts = load(lambda: run.artifacts) or []
    keys = [m.key for m in summaries]
    charts = ""
    if keys and (series := load(lambda: load_series([run])[0])) is not None:
        charts = charts_html(
            metric_svgs([(run.short_id, series)], keys[:MAX_CHARTS]), keys[MAX_CHARTS:]
        )
    blocks = [
        _header(run),
        '<div class="ol-sections">',
        section("params", kv_table(run.params)),
        section("summary", kv_table(run.summary)),
        section("metrics", _metrics_table(summaries)),
        "</div>",
    ]
    if run.timings:
        blocks.append(section("timings", timing_bar(run.timings)))
    blocks.append(charts)
    blocks += [f'<div class="ol-muted">{esc(p)}</div>' for p in problems]
    extras = []
    if run.record.seeds:
        extras.append(section("forked from production", _seeds(run.record.seeds)))
    if services := _services(run):
        extras.append(section("services", services))
    if artifacts:
        extras.append(section(f"artifacts ({len(artifacts)})", _artifacts(run, artifacts)))
    if extras:
        blocks.append(f'<div class="ol-sections">{"".join(extras)}</div>')
    blocks.append(_error(run))
    return f'{CSS}<div class="omnilab">{"".join(blocks)}</div>'


def _seeds(seeds: list[dict[str, Any]]) -> str:
    """What the run started with: each seed, where it came from, how much, its checksum."""
    from omnilab.fork import describe

    rows = "".join(
        f"<tr><th>{esc(r['item'])}</th><td><code>{esc(r['production'])}</code></td>"
        f"<td>{esc(r['copied'])}</td><td><code>{esc(r['checksum'])}</code></td></tr>"
        for r in describe(seeds)
    )
    return f"<table>{rows}</table>"


def stack_card(stack: Stack) -> str:
    """An ad-hoc stack: what runs, where, and how to reach it (passwords masked)."""
    state = "running" if stack.services and not stack._closed else "stopped"
    rows = "".join(
        f"<tr><th>{esc(name)}</th><td><code>{esc(r.service.url(r.endpoint))}</code></td>"
        f"<td>{esc(r.version or '')}</td>"
        f'<td class="ol-muted">{esc(r.source)}</td></tr>'
        for name, r in stack.services.items()
    )
    names = ", ".join(s.name for s in stack.service_specs)
    clients = ", ".join(f"<code>s.{esc(n)}</code>" for n in stack.services)
    body = f"<table>{rows}</table>" if rows else f'<span class="ol-muted">{esc(names)}</span>'
    hint = f'<div class="ol-muted">clients: {clients}; variables: <code>s.env</code></div>'
    runtime = stack.runtime.name if stack.runtime else stack.requested_runtime
    return (
        f'{CSS}<div class="omnilab"><div class="ol-head"><span class="ol-title">stack</span>'
        f'<code title="{esc(stack.id)}">{esc(stack.id[:12])}</code>{badge(state)}'
        f'<span class="ol-muted">runtime {esc(runtime)}</span></div>{body}'
        f"{hint if state == 'running' and clients else ''}</div>"
    )

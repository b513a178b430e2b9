"""The pages that read, against a real server and runs recorded in its real store:
the runs table (filters, sort, pages, bad input), a run's facts, charts, log and
artifacts (path traversal refused), compare, 404s, escaping and the security headers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.support.queue_helpers import Api, make_key
from tests.support.web import Browser, record_run, run_ids

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def reader(api: Api) -> Browser:
    browser = Browser(api.url)
    assert browser.sign_in(make_key("read")).status_code == 303
    return browser


@pytest.fixture
def sweep(tracking_db: str, workdir: Path) -> dict[str, str]:
    """Five runs of Sweep (newest last made) and two of Other, one failed."""
    ids = {}
    for i, lr in enumerate([0.1, 0.01, 0.001, 0.05, 0.5]):
        ids[f"s{i}"] = record_run(
            tracking_db,
            workdir / "runs",
            params={"lr": lr, "mode": "fast" if i % 2 else "exact"},
            summary={"acc": 0.5 + i / 10},
            metrics={"loss": [1.0, 0.5, 0.1 * (5 - i)]},
            age_s=100 - i,
        )
    ids["o1"] = record_run(
        tracking_db, workdir / "runs", experiment="Other", params={"k": 3}, age_s=50
    )
    ids["o2"] = record_run(
        tracking_db,
        workdir / "runs",
        experiment="Other",
        status="failed",
        age_s=40,
        error="Traceback ...\nValueError: boom",
    )
    return ids


def test_the_runs_table_filters_sorts_and_pages_from_the_url(
    reader: Browser, sweep: dict[str, str]
) -> None:
    page = reader.get("/")
    assert page.status_code == 200
    assert run_ids(page.text) == [sweep[k] for k in ("o2", "o1", "s4", "s3", "s2", "s1", "s0")]
    # One checkbox per row, a column per param and summary value and each metric's last.
    assert page.text.count('type="checkbox" name="run"') == 7
    for column in ("param.lr", "param.mode", "summary.acc", "metric.loss"):
        assert f'data-sort="{column}"' in page.text
    assert 'id="compare"' in page.text
    only = reader.get("/", params={"experiment": "Other"})
    assert run_ids(only.text) == [sweep["o2"], sweep["o1"]]
    failed = reader.get("/", params={"status": "failed"})
    assert run_ids(failed.text) == [sweep["o2"]]
    by_param = reader.get("/", params={"param.lr": "0.01"})
    assert run_ids(by_param.text) == [sweep["s1"]]
    by_text = reader.get("/", params={"param.mode": "fast", "summary.acc": "0.8"})
    assert run_ids(by_text.text) == [sweep["s3"]]
    ascending = reader.get("/", params={"sort": "param.lr", "order": "asc"})
    assert run_ids(ascending.text)[:5] == [sweep[k] for k in ("s2", "s1", "s3", "s0", "s4")]
    by_metric = reader.get("/", params={"experiment": "Sweep", "sort": "metric.loss"})
    assert run_ids(by_metric.text) == [sweep[k] for k in ("s0", "s1", "s2", "s3", "s4")]
    first = reader.get("/", params={"per_page": "3"})
    second = reader.get("/", params={"per_page": "3", "page": "2"})
    assert run_ids(first.text) == [sweep[k] for k in ("o2", "o1", "s4")]
    assert run_ids(second.text) == [sweep[k] for k in ("s3", "s2", "s1")]
    assert "page 2 of 3" in second.text
    # The next page's link keeps the filters: a view can be shared as a URL.
    assert re.search(r'href="\?[^"]*per_page=3[^"]*page=3"', second.text)
    today = reader.get("/", params={"since": "2000-01-01", "until": "2999-12-31"})
    assert len(run_ids(today.text)) == 7
    assert run_ids(reader.get("/", params={"until": "2000-01-01"}).text) == []


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"since": "yesterday"}, "is not a date"),
        ({"status": "exploded"}, "choose one of"),
        ({"page": "abc"}, "whole number"),
        ({"page": str(10**30)}, "whole number"),
        ({"per_page": "0"}, "whole number"),
        ({"sort": "password"}, "sort by one of"),
        ({"order": "sideways"}, "asc or desc"),
        ({"experiment": "../../etc"}, "not an experiment name"),
    ],
)
def test_a_malformed_filter_is_a_clear_message_never_a_500(
    reader: Browser, query: dict[str, str], said: str
) -> None:
    page = reader.get("/", params=query)
    assert page.status_code == 400
    assert re.search(r'<p class="flash"[^>]*>[^<]*' + re.escape(said), page.text), page.text


def test_a_page_past_the_end_says_so(reader: Browser, sweep: dict[str, str]) -> None:
    page = reader.get("/", params={"page": "999999"})
    assert page.status_code == 200 and run_ids(page.text) == []
    assert "past the last page (1)" in page.text


def test_a_run_page_shows_the_cards_facts_charts_log_and_artifacts(
    reader: Browser, tracking_db: str, workdir: Path
) -> None:
    run_id = record_run(
        tracking_db,
        workdir / "runs",
        params={"lr": 0.01},
        summary={"acc": 0.93},
        metrics={"loss": [1.0, 0.5, 0.25], "acc": [0.1, 0.9]},
        log="step 0\nstep 1\ndone\n",
        artifacts={"plots/curve.csv": b"a,b\n1,2\n"},
        runtime="local",
        timings={"stack_start_s": 1.5, "experiment_s": 3.0, "teardown_s": 0.5, "total_s": 5.0},
        environment={
            "python": "3.11.7",
            "hostname": "lab-1",
            "git": {"commit": "0123456789abcdef0123", "branch": "main", "dirty": True},
            "packages": {"omnilab": "0.1.0"},
        },
        stack={
            "services": {
                "redis": {
                    "version": "7.2.4",
                    "image": "omnilab/redis:7.2",
                    "image_digest": "sha256:feedface",
                    "kind": "container",
                    "ready_seconds": 0.4,
                    "url": "redis://:****@127.0.0.1:6380/0",
                }
            },
            "gpus": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1234", "memory_mib": 81559}],
        },
    )
    page = reader.get(f"/runs/{run_id[:8]}")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="run-status"[^>]*>succeeded<', text)
    for fact in (
        "0123456789ab",
        "(dirty)",
        "3.11.7",
        "lab-1",
        "7.2.4",
        "omnilab/redis:7.2",
        "NVIDIA H100",
        "GPU-1234",
        "stack start",
        "experiment 3.00 s",
        "0.93",
    ):
        assert fact in text, fact
    assert text.count('class="metric-chart"') == 2 and text.count("<svg") == 2
    assert re.search(r'<pre id="log"[^>]*>step 0\nstep 1\ndone\n</pre>', text)
    assert 'id="artifacts"' in text
    link = f"/runs/{run_id}/artifacts/plots/curve.csv"
    assert f'href="{link}"' in text
    download = reader.get(link)
    assert download.status_code == 200 and download.content == b"a,b\n1,2\n"
    assert download.headers["content-disposition"].startswith("attachment")
    # A finished run's page does not follow its log.
    assert 'data-live="false"' in text


def test_artifact_downloads_cannot_leave_the_runs_artifact_folder(
    reader: Browser, tracking_db: str, workdir: Path
) -> None:
    secret = workdir / "outside-secret.txt"
    secret.write_text("TOP-SECRET")
    run_id = record_run(tracking_db, workdir / "runs", artifacts={"ok.txt": b"fine"})
    artifacts = workdir / "runs" / run_id / "artifacts"
    os.symlink(secret, artifacts / "link-out.txt")
    os.symlink(artifacts / "ok.txt", artifacts / "link-in.txt")
    base = f"/runs/{run_id}/artifacts/"
    assert reader.get(base + "ok.txt").content == b"fine"
    assert reader.get(base + "link-in.txt").content == b"fine"  # a link that stays inside
    for raw in (
        base + "../logs/output.log",
        base + "../../outside-secret.txt",
        base + "%2e%2e/%2e%2e/outside-secret.txt",
        base + "%2E%2E%2F%2E%2E%2Foutside-secret.txt",
        base + "/" + str(secret).lstrip("/"),
        base + "%2F" + str(secret).lstrip("/").replace("/", "%2F"),
        base + "link-out.txt",
        base + "..%5c..%5coutside-secret.txt",
        base,
    ):
        status, body = reader.raw_get(raw)
        assert status in (404, 400), (raw, status)
        assert "TOP-SECRET" not in body, raw
        assert "<!doctype html>" in body.lower()


def test_unknown_pages_and_runs_are_real_404_pages(reader: Browser, api: Api) -> None:
    for path, said in (
        ("/no-such-page", "no such page"),
        ("/runs/" + "f" * 32, "another deployment"),
        ("/runs/not-a-run", "is not a run id"),
        ("/runs/" + "f" * 32 + "/artifacts/x.txt", "another deployment"),
        ("/compare?run=" + "e" * 32, "another deployment"),
        ("/experiments/Nope", "Nope"),
    ):
        page = reader.get(path)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert said in page.text and 'class="flash' in page.text, path
    # The JSON API's errors stay JSON.
    with httpx.Client(base_url=api.url) as client:
        missing = client.get("/v1/no-such-thing")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
        wrong = client.put("/v1/runs")
        assert wrong.status_code == 405
        assert wrong.headers["content-type"].startswith("application/json")


def test_compare_shows_runs_side_by_side_and_marks_what_differs(
    reader: Browser, sweep: dict[str, str]
) -> None:
    # The runs table's checkboxes make this URL (a GET form: no JavaScript needed).
    page = reader.get("/compare", params=[("run", sweep["s0"]), ("run", sweep["s1"][:8])])
    assert page.status_code == 200
    table = page.text[page.text.index('id="compare-table"') :]
    rows = re.findall(r"<tr( class=\"differs\")?>\s*<th>([^<]+)</th>", table)
    marked = {name for cls, name in rows if cls}
    same = {name for cls, name in rows if not cls}
    assert {"lr", "acc", "loss"} <= marked and {"experiment", "status"} <= same
    assert page.text.count('class="metric-chart"') == 1  # loss, both runs overlaid
    chart = page.text[page.text.index('class="metric-chart"') :]
    assert chart[: chart.index("</svg>")].count("<polyline") == 2
    assert reader.get("/compare").status_code == 400


def test_user_text_is_escaped_everywhere(
    api: Api, reader: Browser, tracking_db: str, workdir: Path
) -> None:
    html = f'{SCRIPT}<img src=x onerror="alert(2)">'
    run_id = record_run(
        tracking_db,
        workdir / "runs",
        experiment="Sweep",
        params={"note": html, html: 1},
        summary={"verdict": html},
        metrics={html: [1.0, 2.0]},
        log=f"{html}\n",
        artifacts={"<b>bold</b>.txt": b"x"},
        name="<i>named</i>",
        tags=["t"],
        error=f"Traceback\nValueError: {html}",
        status="failed",
    )
    for path in (f"/runs/{run_id}", "/", f"/compare?run={run_id}"):
        page = reader.get(path)
        assert page.status_code == 200, path
        assert SCRIPT not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    run_page = reader.get(f"/runs/{run_id}").text
    assert "&lt;b&gt;bold&lt;/b&gt;.txt" in run_page and "&lt;i&gt;named&lt;/i&gt;" in run_page
    # No script of the page's own is inline: the policy forbids it, so there is none.
    assert not re.search(r"<script(?![^>]*\bsrc=)", run_page)


def test_pages_and_static_files_carry_the_security_headers(reader: Browser) -> None:
    for path in ("/", "/login", "/no-such-page", "/static/omnilab.js", "/static/omnilab.css"):
        response = reader.get(path)
        csp = response.headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives["script-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"], path
        assert response.headers["x-content-type-options"] == "nosniff", path
    js = reader.get("/static/omnilab.js").text
    assert "innerHTML" not in js and "textContent" in js


def test_a_finished_runs_charts_are_kept_but_never_outlive_its_attempt(
    reader: Browser, tracking_db: str, workdir: Path
) -> None:
    """A finished run's charts are kept between views; a retried run that finishes again
    shows its new metrics, not the last attempt's charts."""
    from datetime import UTC, datetime, timedelta

    from omnilab.tracking.store import TrackingStore

    run_id = record_run(tracking_db, workdir / "runs", metrics={"loss": [1.0, 0.5, 0.25]})
    first = reader.get(f"/runs/{run_id}").text
    assert "loss" in first and "accuracy" not in first
    assert reader.get(f"/runs/{run_id}").text.count("metric-chart") == first.count("metric-chart")
    with TrackingStore(tracking_db) as store:
        store.update_run(run_id, status="running")
        writer = store.metric_writer(run_id)
        writer([("accuracy", 0, 0.5, 0.0), ("accuracy", 1, 0.75, 0.0)])
        writer.close()
        store.update_run(
            run_id, status="succeeded", finished_at=datetime.now(UTC) + timedelta(seconds=5)
        )
    again = reader.get(f"/runs/{run_id}").text
    assert "accuracy" in again
    assert again.count("metric-chart") > first.count("metric-chart")

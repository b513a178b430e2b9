"""Queue from a form, follow the run live, cancel: through a real server and worker."""

from __future__ import annotations

import re

from tests.api.test_runs import sse_events
from tests.support.queue_helpers import Api, make_key
from tests.support.web import Browser


def test_the_queue_form_is_made_from_the_params_schema_and_shows_errors_by_field(
    api: Api,
) -> None:
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", "run")).status_code == 303
        form = browser.get("/experiments/Typed")
        assert form.status_code == 200 and 'id="queue-form"' in form.text
        for name in ("count", "ratio", "mode", "tags"):
            assert re.search(rf'<(input|select) id="p-{name}" name="{name}"', form.text), name
        assert 'max="1000"' in form.text and "<option selected>fast</option>" in form.text
        token = browser.csrf("/experiments/Typed")
        bad = browser.post(
            "/experiments/Typed/queue",
            {"_csrf": token, "count": "5000", "ratio": "abc", "mode": "fast", "tags": "[1"},
        )
        assert bad.status_code == 422
        errors = dict(
            re.findall(
                r'name="(\w+)"[^>]*>\s*(?:</select>\s*)?<span class="field-error"[^>]*>([^<]+)<',
                bad.text,
            )
        )
        assert "less than or equal to 1000" in errors["count"]
        assert errors["ratio"] == "give a number"
        assert "JSON" in errors["tags"]
        assert 'value="5000"' in bad.text  # what was typed is shown again
        with api.client("read") as client:
            assert client.get("/v1/runs").json()["runs"] == []
        good = browser.post(
            "/experiments/Typed/queue",
            {
                "_csrf": token,
                "count": "7",
                "ratio": "",
                "mode": "exact",
                "tags": '["a"]',
                "_run_name": "from the form",
                "_run_tags": "web",
            },
        )
        assert good.status_code == 303, good.text
        run_id = re.fullmatch(r"/runs/([0-9a-f]{32})\?done=queued", good.headers["location"])
        assert run_id
    queued = api.run(run_id.group(1))
    assert queued["params"] == {"count": 7, "ratio": 0.5, "mode": "exact", "tags": ["a"]}
    assert queued["name"] == "from the form" and queued["tags"] == ["web"]
    assert queued["owner"] == "api-key:test"


def test_a_run_queued_from_the_page_is_followed_live_and_complete_afterwards(
    api: Api, start_worker
) -> None:
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", "run")).status_code == 303
        token = browser.csrf("/experiments/Quick")
        queued = browser.post(
            "/experiments/Quick/queue",
            {"_csrf": token, "n": "4", "pause": "0.3", "label": "<b>tick</b>"},
        )
        run_id = queued.headers["location"].split("/")[2].split("?")[0]
        page = browser.get(f"/runs/{run_id}")
        assert 'data-live="true"' in page.text and 'id="cancel"' in page.text
        offset = re.search(r'id="log" data-offset="(\d+)"', page.text)
        assert offset
        start_worker()
        lines, statuses = [], []
        with browser.http.stream(
            "GET", f"/runs/{run_id}/log/stream", params={"offset": offset.group(1)}
        ) as stream:
            assert stream.status_code == 200
            assert "script-src 'self'" in stream.headers["content-security-policy"]
            for event, _, data in sse_events(stream):
                if event == "log":
                    lines.append(data)
                elif event == "status":
                    statuses.append(data)
                elif event == "end":
                    assert '"succeeded"' in data
                    break
        assert [line for line in lines if "tick" in line] == [f"<b>tick</b> {i}" for i in range(4)]
        done = browser.get(f"/runs/{run_id}")
        assert re.search(r'id="run-status"[^>]*>succeeded<', done.text)
        assert "&lt;b&gt;tick&lt;/b&gt; 3" in done.text and "<b>tick" not in done.text
        assert done.text.count('class="metric-chart"') == 1
        assert 'id="cancel"' not in done.text  # ended: nothing to cancel
    # Without a session the stream is not served.
    with Browser(api.url) as anonymous:
        assert anonymous.get(f"/runs/{run_id}/log/stream").status_code == 303


def test_workers_and_experiments_pages_list_what_is_alive_and_what_can_be_queued(
    api: Api, start_worker
) -> None:
    worker = start_worker()
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read")).status_code == 303
        workers = browser.get("/workers")
        assert 'id="workers"' in workers.text
        assert f'data-worker-id="{worker.worker_id}"' in workers.text
        experiments = browser.get("/experiments")
        assert 'id="experiments"' in experiments.text
        for name in ("Quick", "Typed", "Stacked"):
            assert f'data-experiment="{name}"' in experiments.text
        assert "Print `n` lines" in experiments.text
        assert "broken.py" in experiments.text  # a file that does not import is named
        assert browser.get("/promotions").status_code == 200

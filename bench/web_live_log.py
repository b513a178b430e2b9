"""A live log line's delay from the experiment's ``print`` to the browser's run page,
against a plain client of the API's log stream, same lines, same run.

    python bench/web_live_log.py [--lines 300] [--interval 0.05] [--flush] [--through-redis]

``omnilab serve`` (the web UI at ``/``, the JSON API under ``/v1``) and ``omnilab worker``
run on a throwaway Redis and PostgreSQL (bench/_servers.py). One run of an experiment
that prints ``LIVELINE <n> <time.time()>`` every ``--interval`` seconds is queued; it
prints one line (flushed) and waits until both readers show that line, then prints:

- the browser (headless Chromium, tests/support/browser.py) signs in at ``/login`` with
  an API key and opens ``/runs/{id}``; a MutationObserver on ``#log``
  (bench/live_log_probe.js) notes when each line enters the page, as
  ``performance.timeOrigin + performance.now()``;
- the peer, an httpx client of ``GET /v1/runs/{id}/logs`` (server-sent events), notes
  when each line's event arrives (``time.time()``).

Both clocks are this machine's wall clock, the one the experiment prints, so each delay
is ``seen - printed``. Goal: the browser's p99 <= 250 ms. The ratio browser/peer shows
what the page adds to the stream it is fed by.

By default the experiment calls a plain ``print()``, as experiments do; ``--flush``
prints with ``flush=True`` instead, to tell the run's output buffering apart from the
streaming. The server reads the run's log file, on the same host as the worker;
``--through-redis`` gives the server a runs folder and a host name of its own, as on
another host, so that the lines reach it through the run's Redis stream.

Where the web UI is not there (``/login`` is not found), only the peer is measured, the
line saying so is printed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import percentile, write
from _servers import servers

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "live_log_probe.js"
GOAL_P99_MS = 250.0
LINE = re.compile(r"LIVELINE (\d+) (\d+\.\d+)")
#: The line the experiment prints (flushed) before it waits: a reader that shows it is live.
READY = "LIVELOG waiting for readers"

EXPERIMENT = '''
import os
import time

from omnilab import Experiment, Params


class LiveLog(Experiment):
    """Prints timestamped lines once its readers are attached (the start file exists)."""

    gpu = False

    class Params(Params):
        lines: int = 300
        interval: float = 0.05
        start_file: str = ""
        flush: bool = False

    def run(self, ctx):
        p = ctx.params
        print("LIVELOG waiting for readers", flush=True)
        deadline = time.time() + 120
        while p.start_file and not os.path.exists(p.start_file) and time.time() < deadline:
            time.sleep(0.005)
        for i in range(p.lines):
            print(f"LIVELINE {i} {time.time():.6f}", flush=p.flush)
            time.sleep(p.interval)
        return {"lines": p.lines}
'''


def say(text: str) -> None:
    print(text, flush=True)


class StreamReader(threading.Thread):
    """The peer: reads the API's event stream, noting each LIVELINE's arrival."""

    def __init__(self, url: str, key: str, run_id: str) -> None:
        super().__init__(name="sse-peer", daemon=True)
        self.url, self.key, self.run_id = url, key, run_id
        self.seen: dict[int, tuple[float, float]] = {}  # n -> (arrived_ms, printed_ms)
        self.attached = threading.Event()
        self.ended = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        try:
            with (
                httpx.Client(base_url=self.url, headers=headers, timeout=120) as client,
                client.stream("GET", f"/v1/runs/{self.run_id}/logs") as stream,
            ):
                stream.raise_for_status()
                event = ""
                for line in stream.iter_lines():
                    now = time.time() * 1000
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        if event == "log" and READY in line:
                            self.attached.set()
                        elif event == "log" and (match := LINE.search(line)):
                            n = int(match[1])
                            self.seen.setdefault(n, (now, float(match[2]) * 1000))
                        elif event == "end":
                            break
        except Exception as exc:  # reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.attached.set()
            self.ended.set()


def web_ui_missing(url: str) -> str | None:
    response = httpx.get(f"{url}/login", timeout=10)
    if response.status_code == 200:
        return None
    return (
        f"the web UI is not served here (GET /login answered {response.status_code}): "
        "only the API stream (the peer) is measured"
    )


def open_run_page(url: str, key: str, run_id: str) -> Any:
    """A headless Chromium, signed in, on the run's page, with the probe installed."""
    sys.path.insert(0, str(ROOT))
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support.browser import missing, start_chromium

    reason = missing()
    if reason:
        sys.exit(reason)
    driver = start_chromium()
    try:
        driver.get(f"{url}/login")
        field = driver.find_element(By.CSS_SELECTOR, "input[name=key]")
        field.send_keys(key)
        field.submit()
        try:
            WebDriverWait(driver, 20).until(lambda d: "/login" not in d.current_url)
        except TimeoutException:
            flash = " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash"))
            raise SystemExit(f"signing in at /login failed: {flash or 'still on /login'}") from None
        driver.get(f"{url}/runs/{run_id}")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "log"))
        if not driver.execute_script(PROBE.read_text(), "#log"):
            raise RuntimeError("the run page has no #log to watch")
        # Its stream is live once the line printed before the wait is on the page.
        log = driver.find_element(By.ID, "log")
        WebDriverWait(driver, 30).until(lambda _: READY in (log.get_property("textContent") or ""))
    except BaseException:
        driver.quit()
        raise
    return driver


def delays(seen: dict[int, tuple[float, float]], lines: int) -> dict[str, Any]:
    values = sorted(arrived - printed for arrived, printed in seen.values())
    if not values:
        return {"lines_seen": 0, "lines_missing": lines}
    return {
        "lines_seen": len(values),
        "lines_missing": lines - len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": values[-1],
        "min_ms": values[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--flush", action="store_true", help="print(..., flush=True)")
    parser.add_argument(
        "--through-redis",
        action="store_true",
        help="the server as on another host: the log through the run's Redis stream",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "lines": args.lines,
        "interval_s": args.interval,
        "flush": args.flush,
        "log_source": "redis stream" if args.through_redis else "file",
        "goal_p99_ms": GOAL_P99_MS,
        "load_before": load_before,
    }
    driver = None
    with servers(EXPERIMENT) as s:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        elsewhere = {
            "OMNILAB_RUNS_DIR": str(s.folder / "api-runs"),
            "OMNILAB_HOST": "bench-api-host",
        }
        url = s.serve(port, extra=elsewhere if args.through_redis else None)
        key = s.api_key()
        s.spawn("worker", "--concurrency", "1", "--gpus", "none")
        missing = web_ui_missing(url)
        results["web_ui_missing"] = missing
        if missing:
            say(missing)
        start_file = s.folder / "start"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
            response = api.post(
                "/v1/runs",
                json={
                    "experiment": "LiveLog",
                    "params": {
                        "lines": args.lines,
                        "interval": args.interval,
                        "start_file": str(start_file),
                        "flush": args.flush,
                    },
                },
            )
            response.raise_for_status()
            run_id = response.json()["id"]
            while (status := api.get(f"/v1/runs/{run_id}").json()["status"]) == "queued":
                time.sleep(0.05)
            if status != "running":
                sys.exit(f"the run is {status} before printing anything")
            peer = StreamReader(url, key, run_id)
            peer.start()
            try:
                if not missing:
                    driver = open_run_page(url, key, run_id)
                if not peer.attached.wait(30):
                    sys.exit("the API stream showed no line of the run within 30 s")
                say(f"readers attached; the run prints {args.lines} lines...")
                start_file.touch()
                while (run := api.get(f"/v1/runs/{run_id}").json())["status"] == "running":
                    time.sleep(0.2)
                if run["status"] != "succeeded":
                    sys.exit(f"the run {run['status']}: {run.get('error')}")
                peer.ended.wait(30)
                if driver is not None:
                    time.sleep(1.0)  # the page's last events
                    browser_seen = driver.execute_script("return window.__liveLog || {}")
                    results["browser"] = delays(
                        {int(n): (v[0], v[1]) for n, v in browser_seen.items()}, args.lines
                    )
            finally:
                if driver is not None:
                    driver.quit()
            if peer.error:
                sys.exit(f"the API stream failed: {peer.error}")
            results["peer"] = delays(peer.seen, args.lines)
    results["load_after"] = os.getloadavg()
    browser, stream = results.get("browser"), results["peer"]
    say(
        f"{args.lines} lines, one per {args.interval * 1000:.0f} ms, flush={args.flush}, "
        f"the server reads the {results['log_source']}"
    )
    for label, figures in (("browser (#log)", browser), ("peer (/v1 SSE)", stream)):
        if not figures:
            say(f"  {label:<16} not measured")
        elif "p50_ms" not in figures:
            say(f"  {label:<16} saw no line")
        else:
            say(
                f"  {label:<16} p50 {figures['p50_ms']:7.1f} ms  p90 {figures['p90_ms']:7.1f} ms"
                f"  p99 {figures['p99_ms']:7.1f} ms  max {figures['max_ms']:7.1f} ms"
                f"  ({figures['lines_missing']} missing)"
            )
    if browser and "p99_ms" in browser and "p99_ms" in stream:
        results["ratio_p99"] = browser["p99_ms"] / stream["p99_ms"]
        results["goal_met"] = browser["p99_ms"] <= GOAL_P99_MS and not browser["lines_missing"]
        say(
            f"  ratio browser/peer p99 {results['ratio_p99']:.2f}x; browser p99 <= "
            f"{GOAL_P99_MS:.0f} ms: {'met' if results['goal_met'] else 'NOT met'}"
        )
    say(f"  load average before {load_before}, after {results['load_after']}")
    path = write("web_live_log", results)
    say(f"  written {path}")
    if results["web_ui_missing"]:
        sys.exit(2)


if __name__ == "__main__":
    main()

"""bench/web_live_log.py: its in-page probe on a static page that appends lines as the
run page does, and the benchmark itself end to end (the API stream's side; the browser's
too once the web UI is served)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import ROOT
from tests.support import browser as chromium

SCRIPT = ROOT / "bench" / "web_live_log.py"
PROBE = ROOT / "bench" / "live_log_probe.js"

# Lines arrive as text nodes, as elements, and once as the whole text replaced; one is
# there before the probe is installed.
PAGE = """<!doctype html><html><body><pre id="log">LIVELINE 0 1.0
</pre><script>
window.go = () => {
  const log = document.getElementById("log");
  let n = 1;
  const timer = setInterval(() => {
    const line = "LIVELINE " + n + " " + (Date.now() / 1000).toFixed(6) + "\\n";
    if (n === 10) log.textContent = log.textContent + line;
    else if (n % 2) log.append(document.createTextNode(line));
    else { const span = document.createElement("span"); span.textContent = line; log.append(span); }
    if (++n > 20) clearInterval(timer);
  }, 20);
};
</script></body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "run.html").write_text(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/run.html"
    server.shutdown()
    server.server_close()


def test_probe_times_each_line_once_as_it_enters_the_page(page: str) -> None:
    if chromium.missing():
        pytest.skip(chromium.missing() or "")
    driver = chromium.start_chromium()
    try:
        driver.get(page)
        assert driver.execute_script(PROBE.read_text(), "#log") is True
        driver.execute_script("window.go()")
        WebDriverWait(driver, 10).until(
            lambda d: len(d.execute_script("return window.__liveLog")) == 21
        )
        seen = driver.execute_script("return window.__liveLog")
        assert driver.execute_script(PROBE.read_text(), "#nothing") is False
    finally:
        driver.quit()
    assert sorted(int(n) for n in seen) == list(range(21))
    assert seen["0"][1] == 1000.0  # printed at 1.0 s: there before the probe
    for n in range(1, 21):
        appeared, printed = seen[str(n)]
        # Same clock on both sides; the observer runs right after the append.
        assert -5 <= appeared - printed <= 500, (n, appeared - printed)


def test_the_benchmark_measures_the_api_stream(tmp_path: Path) -> None:
    web_ui = importlib.util.find_spec("omnilab.web") is not None
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--lines", "20", "--interval", "0.02", "--flush"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "BENCH_RESULTS": str(tmp_path)},
    )
    assert done.returncode == (0 if web_ui else 2), done.stdout + done.stderr
    results = json.loads((tmp_path / "web_live_log.json").read_text())
    peer = results["peer"]
    assert peer["lines_seen"] == 20 and peer["lines_missing"] == 0, peer
    assert 0 <= peer["min_ms"] <= peer["p99_ms"] < 30_000
    if web_ui:
        assert results["browser"]["lines_missing"] == 0, results["browser"]
    else:
        assert done.stdout.startswith("the web UI is not served here (GET /login answered 404)")

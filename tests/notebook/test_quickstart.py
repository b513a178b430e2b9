"""experiments/notebooks/quickstart.ipynb runs top to bottom on a real kernel.

nbclient executes every cell as Jupyter would and raises on the first error; the
notebook itself calls ``raise_for_status()`` on its runs, so a failed run fails here.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from omnilab.config import project_root
from tests.support import ROOT, free_port, run_cli, stack_processes, wait_until

NOTEBOOK = ROOT / "experiments" / "notebooks" / "quickstart.ipynb"


def _outputs(cell: Any, mime: str) -> str:
    return "".join(o.get("data", {}).get(mime, "") for o in cell.get("outputs", []))


def test_the_quickstart_is_committed_clean() -> None:
    """No outputs in the repository: they would hold run ids and local paths."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_quickstart_runs_top_to_bottom(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user gets it on a fresh machine: no production service running, none of the
    production variables set, no tracking URL: the runs go to the embedded store of the
    notebook's project (here its folder, which has no project marker above it). The
    promotion part starts its own stand-in for production Redis and removes it
    afterwards."""
    for var in ("REDIS_URL", "POSTGRES_URL", "QDRANT_URL", "OLLAMA_BASE_URL", "ENVIRONMENT"):
        monkeypatch.delenv(var, raising=False)
    # The session's tracking store and timeout are the test suite's, not a new user's.
    # OMNILAB_RUNTIME=local stays: it is what `auto` picks on a fresh machine, where no
    # omnilab image is built yet (this one has them, and `auto` would take docker).
    for var in ("OMNILAB_TRACKING_URL", "OMNILAB_READY_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    assert project_root(workdir) == workdir.resolve()
    if _answers(6379):
        # Something on this host answers at the default production address; it would be
        # (rightly) taken for production. Point the default at nothing instead.
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(workdir)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError on any error
    cells = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.splitlines()[0]: c for c in cells}

    # The single run: a live progress panel, then the card with its charts.
    first = by_source['run = omnilab.run(CacheSizing, params={"cache_kb": 256})']
    panel, card = (o["data"]["text/html"] for o in first.outputs if "data" in o)
    assert "succeeded" in panel and "postgres" in panel
    assert "CacheSizing" in card and card.count("<svg") == 2  # hit_rate, latency_ms
    assert "hit_rate" in _outputs(by_source["run.metrics.tail()"], "text/html")

    # The sweep: three runs, compared on shared charts.
    comparison = _outputs(by_source["comparison = omnilab.compare(sweep)"], "text/html")
    for kb in ("cache_kb=128", "cache_kb=512", "cache_kb=1024"):
        assert kb in comparison
    assert comparison.count("<svg") == 2 and comparison.count("<polyline") >= 6
    table = _outputs(
        by_source['omnilab.runs(experiment=CacheSizing, status="succeeded", limit=10)'],
        "text/html",
    )
    assert table.count(">succeeded<") >= 4

    # No production here: a private Redis stood in for it, then went away.
    probe = next(c for c in cells if c.source.startswith("import os"))
    said = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream")
    assert "no production Redis at" in said and "stands in for production" in said, said
    assert ":****@" in said or "****" in said  # the stand-in's password is masked

    # The promotion plan: the warmed cache, to be created under its production prefix.
    plan = _outputs(by_source["from omnilab.promote import RedisKeys"], "text/html")
    assert "promotion plan" in plan and "dry run: nothing changed" in plan
    assert ">create<" in plan and "cache:item:*" in plan and "WarmCache" in plan
    discard = next(c for c in cells if c.source.startswith("warm.discard()"))
    assert "discarded" in _outputs(discard, "text/plain")

    # No progress went to stderr: it is all in the panels.
    for cell in cells:
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                assert "runtime:" not in out.text and "ready at" not in out.text

    # Four runs recorded in the embedded store of the notebook's folder, all succeeded,
    # as `omnilab runs ls` there lists them (which starts that store and stops it again).
    store = workdir / ".omnilab"
    assert (store / "pgdata" / "PG_VERSION").is_file()
    listing = run_cli("runs", "ls", "--experiment", "CacheSizing", "--json", cwd=workdir)
    assert listing.returncode == 0, listing.stderr
    mine = json.loads(listing.stdout)
    assert len(mine) == 4 and all(r["status"] == "succeeded" for r in mine)
    assert wait_until(lambda: not (store / "pgdata" / "postmaster.pid").exists(), timeout=15)
    assert not stack_processes()

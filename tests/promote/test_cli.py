"""The promotion commands, run as a user would: plans, outcomes, listings, exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support import HELLO, ROOT, run_cli
from tests.support.promotion_support import Production, seed_production

DEMO = ROOT / "experiments" / "promote_demo.py"
NARROW = {"COLUMNS": "80"}


def _run(*args: str) -> str:
    result = run_cli("run", DEMO, *args)
    assert result.returncode == 0, result.stderr
    assert "stack data kept for `omnilab promote" in result.stderr
    return result.stdout.split()[1]  # "run <id> succeeded ..."


def test_plan_promote_list_show_rollback(production: Production, workdir: Path) -> None:
    run_id = _run()
    plan = run_cli("promote", run_id[:8], "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "dry run: nothing changed" in plan.stdout
    for word in ("create", "qdrant", "docs", "emb:*", "public.scores", "50 points", "51 keys"):
        assert word in plan.stdout
    planned = json.loads(run_cli("promote", run_id, "--dry-run", "--json").stdout)
    assert planned["status"] == "planned" and len(planned["items"]) == 3

    done = run_cli("promote", run_id[:8])
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "undo with: omnilab rollback" in done.stdout
    assert "counts and checksums match" in done.stderr
    assert "stack data removed (promoted)" in done.stderr
    again = run_cli("promote", run_id[:8])
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # What production holds now, not "-": the row of the keys says 51 keys on both sides.
    [keys_row] = [line for line in again.stdout.splitlines() if "emb:*  " in line]
    assert re.search(r"\b51 keys\s+51\b", keys_row), keys_row
    nothing = json.loads(run_cli("promote", run_id[:8], "--json").stdout)
    assert nothing["status"] == "nothing_to_do"
    for item in nothing["items"]:
        assert item["plan"]["target_count"] == item["counts"]["target"] > 0

    listing = run_cli("promotions", "ls")
    assert listing.returncode == 0 and run_id[:8] in listing.stdout
    assert "checksum" in listing.stdout and "50 rows" in listing.stdout
    [record] = json.loads(run_cli("promotions", "ls", "--json").stdout)
    assert record["run_id"] == run_id and record["actor"]
    for item in record["items"]:
        assert item["counts"]["source"] == item["counts"]["target"]
        assert item["checksums"]["target"]
    promotion = record["id"][:8]
    shown = run_cli("promotions", "show", promotion)
    assert "verified" in shown.stdout and "yes" in shown.stdout

    back = run_cli("rollback", promotion)
    assert back.returncode == 0, back.stderr
    assert "rolled back" in back.stdout
    twice = run_cli("rollback", promotion)
    assert twice.returncode == 2 and "already rolled back" in twice.stderr
    assert len(twice.stderr.strip().splitlines()) == 1


def test_a_conflict_prints_the_plan_and_exits_2(production: Production) -> None:
    seed_production(production)
    run_id = _run()
    before = production.snapshot()
    refused = run_cli("promote", run_id)
    assert refused.returncode == 2
    assert "conflict" in refused.stdout
    assert "use --on-conflict replace or version" in refused.stderr
    assert production.snapshot() == before
    # At 80 columns every line fits, and the diff table's wrapped cells stay indented.
    narrow = run_cli("promote", run_id, "--dry-run", "--on-conflict", "replace", env=NARROW)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert not [line for line in lines if len(line) > 80], narrow.stdout
    start = next(i for i, line in enumerate(lines) if line.startswith("  production:"))
    end = next(i for i, line in enumerate(lines) if line.split()[:2] == ["diff", "by"])
    assert all(line.startswith("  ") for line in lines[start : end + 4]), narrow.stdout
    assert "+ " in narrow.stdout and "~ " in narrow.stdout  # the examples, wrapped
    replaced = run_cli("promote", run_id, "--on-conflict", "replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "omnilab:replaced:" in replaced.stdout  # where the replaced keys are kept


def test_run_with_promote(production: Production) -> None:
    declined = run_cli("run", DEMO, "--promote", "-p", "min_score=2")
    assert declined.returncode == 0, declined.stderr
    assert "not promoted: PromoteDemo.accept(summary) returned False" in declined.stderr
    # The experiment's verdict, not an error; said once.
    assert "error" not in declined.stderr.lower() and "error" not in declined.stdout.lower()
    assert (declined.stdout + declined.stderr).count("not promoted") == 1
    promoted = run_cli("run", DEMO, "--promote", "-p", "seed=1", "--json")
    assert promoted.returncode == 0, promoted.stderr
    data = json.loads(promoted.stdout)
    assert data["status"] == "succeeded" and data["promotion"]["status"] == "succeeded"
    r = production.redis()
    assert r.exists("emb:meta") and r.hget("emb:meta", "seed") == b"1"
    r.close()


def test_bad_input_is_one_line_and_exit_2(production: Production) -> None:
    cases = [
        (("promote", "nosuchrun"), "no run matches 'nosuchrun'"),
        (("promote", "abcd", "--on-conflict", "merge"), "'merge'"),
        (("run", HELLO, "--promote"), "declares nothing to promote"),
        (("discard",), "give a RUN to discard, or --expired"),
        (("rollback", "zz"), "at least 4 characters"),
        (("promotions", "show", "ffff0000"), "no promotion matches"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    hello = run_cli("run", HELLO)
    hello_id = hello.stdout.split()[1]
    result = run_cli("promote", hello_id)
    assert result.returncode == 2 and "has nothing to promote" in result.stderr


def test_a_runs_name_is_shown_by_every_promotion_command(production: Production) -> None:
    run_id = _run("--name", "named-run")
    label = f'run {run_id[:8]} "named-run" (PromoteDemo)'
    plan = run_cli("promote", run_id[:8], "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert " ".join(plan.stdout.split()).startswith(f"plan for {label}"), plan.stdout
    planned = json.loads(run_cli("promote", run_id[:8], "--dry-run", "--json").stdout)
    assert planned["run_name"] == "named-run"
    done = run_cli("promote", run_id[:8])
    assert done.returncode == 0, done.stderr
    assert label in done.stdout.splitlines()[0]
    listing = run_cli("promotions", "ls", "--run", run_id[:8])
    assert listing.returncode == 0, listing.stderr
    assert label in listing.stdout.splitlines()[0]
    shown = run_cli(
        "promotions",
        "show",
        json.loads(run_cli("promotions", "ls", "--run", run_id[:8], "--json").stdout)[0]["id"][:8],
    )
    assert f'{run_id} "named-run" (PromoteDemo)' in shown.stdout
    promotion = json.loads(run_cli("promotions", "ls", "--run", run_id[:8], "--json").stdout)[0]
    back = run_cli("rollback", promotion["id"][:8])
    assert back.returncode == 0, back.stderr
    assert f"({label}): " in " ".join(back.stdout.split()), back.stdout

    other = _run("--name", "given up")
    gone = run_cli("discard", other[:8])
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith(f'run {other[:8]} "given up" (PromoteDemo): stack data discarded')


def test_discard_and_prune(production: Production, workdir: Path) -> None:
    run_id = _run()
    gone = run_cli("discard", run_id[:8])
    assert gone.returncode == 0 and "discarded" in gone.stdout
    assert len((gone.stdout + gone.stderr).strip().splitlines()) == 1  # its result, once
    assert not list((workdir / "data" / "experiments").glob(f"{run_id}*"))
    later = run_cli("promote", run_id)
    assert later.returncode == 2 and "was discarded" in later.stderr
    assert run_cli("discard", "--expired").returncode == 0

    seed_production(production)
    other = _run("-p", "seed=2")
    assert run_cli("promote", other, "--on-conflict", "replace").returncode == 0
    [record] = json.loads(run_cli("promotions", "ls", "--json").stdout)
    pruned = run_cli("promotions", "prune", record["id"][:8])
    assert pruned.returncode == 0, pruned.stderr
    snap = production.snapshot()
    assert not [k for k in snap["redis"] if k.startswith(b"omnilab:replaced:")]
    assert not [s for s in snap["pg"]["schemas"] if s.startswith("omnilab_replaced")]
    refused = run_cli("rollback", record["id"][:8])
    assert refused.returncode == 2 and "pruned" in refused.stderr

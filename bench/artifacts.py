"""Artifact upload and download through an S3-compatible store: omnilab's
(:mod:`omnilab.artifacts`, boto3's s3transfer underneath) against ``aws s3 cp
--recursive``, to the same Garage server, in the same run, alternating.

    python bench/artifacts.py [--files 1000] [--file-kb 100] [--big-mb 1024]
        [--repeat 3] [--aws PATH]

Two sets: ``--files`` files of ``--file-kb`` KB (a run's many small artifacts), and one
file of ``--big-mb`` MB (a checkpoint). Each is uploaded and downloaded by both sides,
``--repeat`` times, alternating which goes first, each transfer by a fresh process as a
user runs it: ``python bench/_artifacts_side.py`` (what a run does with its files when it
ends, and what ``omnilab runs get`` does) and ``aws s3 cp --recursive``.

Two figures per transfer. The transfer's own time, the goal's: omnilab's measured inside
its process once it has started (imports done, client made: then every file sent or
fetched and checked), aws's its wall time less its start (``aws s3 ls`` of an empty
prefix: the interpreter, imports, client and one request). And the wall time of each
command, which adds both starts (omnilab's imports its whole package, seconds on a loaded
machine; a run's upload and the API pay that once, not per transfer). omnilab does more:
it computes each file's sha256 while uploading (a run records it) and checks each
download against it; ``aws`` checks nothing beyond the protocol's own checksums.

The server is ``garage`` from PATH (../shared/bin), one node on 127.0.0.1 with its data
in a temporary folder, started and removed here. ``aws`` is ``--aws``, else
bench/.awscli-venv's (made on first use: ``python -m venv``, ``pip install awscli``), with
its default settings (10 requests at once, 8 MB parts); omnilab with its own (16, 16 MB).

Goal: omnilab's transfers >= 0.9x as fast as aws's, for each set and direction (ratio =
aws's time / omnilab's time, medians of the repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import tool_venv, write

BENCH = Path(__file__).resolve().parent
SIDE = BENCH / "_artifacts_side.py"
DEFAULT_VENV = BENCH / ".awscli-venv"
BUCKET = "bench"
REGION = "garage"
GOAL = 0.9


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server --------------------------------------------------------------------------


class Garage:
    """One Garage node with a bucket and a key, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("garage")
        if binary is None:
            sys.exit("garage is not on PATH (../shared/bin has it: PATH=../shared/bin:$PATH)")
        self.binary = binary
        self.folder = folder
        self.config = folder / "garage.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.env: dict[str, str] = {}

    def start(self) -> None:
        s3, rpc, admin = free_port(), free_port(), free_port()
        self.config.write_text(
            f'metadata_dir = "{self.folder / "meta"}"\ndata_dir = "{self.folder / "data"}"\n'
            'db_engine = "sqlite"\nreplication_factor = 1\n'
            f'rpc_bind_addr = "127.0.0.1:{rpc}"\nrpc_public_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_secret = "{secrets.token_hex(32)}"\n'
            f'[s3_api]\ns3_region = "{REGION}"\napi_bind_addr = "127.0.0.1:{s3}"\n'
            'root_domain = ".s3.garage.localhost"\n'
            f'[admin]\napi_bind_addr = "127.0.0.1:{admin}"\n'
            f'admin_token = "{secrets.token_hex(24)}"\n'
        )
        self.config.chmod(0o600)
        log = open(self.folder / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config), "server"], stdout=log, stderr=log
        )
        self.endpoint = f"http://127.0.0.1:{s3}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", s3), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit(f"garage did not start; see {self.folder / 'server.log'}")
                time.sleep(0.1)
        node = self.cli("node", "id", "-q").strip().split("@")[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "100G", node)
        self.cli("layout", "apply", "--version", "1")
        created = self.cli("key", "create", "bench")
        key_id = re.search(r"^Key ID:\s*(\S+)", created, re.M)
        secret = re.search(r"^Secret key:\s*(\S+)", created, re.M)
        assert key_id and secret, created
        self.cli("bucket", "create", BUCKET)
        self.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", key_id[1])
        self.env = {
            "AWS_ACCESS_KEY_ID": key_id[1],
            "AWS_SECRET_ACCESS_KEY": secret[1],
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # Neither side reads a profile or a config file of this machine's.
            "AWS_CONFIG_FILE": str(self.folder / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.folder / "no-aws-credentials"),
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, "-c", str(self.config), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"garage {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the AWS CLI -------------------------------------------------------------------------


def aws_command(given: str | None) -> Path:
    """``aws``: ``given``, or bench/.awscli-venv's (made here if missing)."""
    return tool_venv(DEFAULT_VENV, ["awscli"], "aws", given, "--aws")


def aws_version(aws: Path) -> str:
    done = subprocess.run([str(aws), "--version"], capture_output=True, text=True)
    return (done.stdout or done.stderr).strip()


# -- the data ----------------------------------------------------------------------------


def make_set(root: Path, name: str, count: int, size: int) -> tuple[str, Path]:
    """A run's folder holding ``count`` artifacts of ``size`` bytes (random: no store
    or transport compresses them away); its run id and folder."""
    run_id = uuid.uuid4().hex
    folder = root / name / run_id
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True)
    chunk = 64 << 20
    for i in range(count):
        with open(artifacts / f"f{i:05d}.bin", "wb") as fh:
            left = size
            while left:
                n = min(left, chunk)
                fh.write(os.urandom(n))
                left -= n
    return run_id, folder


def timed(args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode not in ok:
        sys.exit(f"{' '.join(args[:3])}... failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds, done.stdout


def same_files(a: Path, b: Path) -> bool:
    left = sorted((p.relative_to(a), p.stat().st_size) for p in a.rglob("*") if p.is_file())
    right = sorted((p.relative_to(b), p.stat().st_size) for p in b.rglob("*") if p.is_file())
    return left == right


def aws_start(aws: Path, env: dict[str, str], times: int = 3) -> float:
    """What ``aws`` takes before it transfers anything: the median wall time of ``aws s3
    ls`` on an empty prefix (the interpreter, its imports, its client, one request)."""
    samples = [
        timed([str(aws), "s3", "ls", f"s3://{BUCKET}/nothing-here/"], env, ok=(0, 1))[0]
        for _ in range(times)
    ]
    return statistics.median(samples)


def measure(
    name: str,
    run_id: str,
    folder: Path,
    work: Path,
    server: Garage,
    aws: Path,
    repeat: int,
) -> dict[str, Any]:
    """Each side's upload then download of the set, ``repeat`` times, alternating which
    goes first; a fresh prefix each time (nothing is overwritten).

    Two figures per transfer: the wall time of the side's command, and the transfer's
    own time: omnilab's measured inside its process after its imports (client made,
    files sent or fetched and checked); aws's wall time less its start (:func:`aws_start`,
    measured before each set)."""
    env = {**os.environ, **server.env}
    start = aws_start(aws, env)
    wall: dict[str, list[float]] = {
        f"{side}_{direction}": []
        for side in ("omnilab", "aws")
        for direction in ("upload", "download")
    }
    transfer: dict[str, list[float]] = {key: [] for key in wall}
    imports: list[float] = []  # omnilab's start: imports, client
    source = folder / "artifacts"
    for i in range(repeat):
        prefix = f"{name}-{i}"
        manifest = work / f"{prefix}.json"
        omnilab_env = {**env, "OMNILAB_ARTIFACTS_URL": f"s3://{BUCKET}/omnilab/{prefix}"}
        aws_url = f"s3://{BUCKET}/aws/{prefix}/"
        sides = ["omnilab", "aws"] if i % 2 == 0 else ["aws", "omnilab"]
        for direction in ("upload", "download"):
            for side in sides:
                dest = work / f"{prefix}-{side}"
                if side == "omnilab":
                    args = (
                        ["upload", run_id, str(folder), str(manifest)]
                        if direction == "upload"
                        else ["download", str(manifest), str(dest)]
                    )
                    seconds, out = timed([sys.executable, str(SIDE), *args], omnilab_env)
                    report = json.loads(out)
                    imports.append(report["start_s"])
                    transfer[f"omnilab_{direction}"].append(report["s"])
                else:
                    ends = [str(source), aws_url] if direction == "upload" else [aws_url, str(dest)]
                    command = [str(aws), "s3", "cp", "--recursive", "--only-show-errors", *ends]
                    seconds, _ = timed(command, env)
                    transfer[f"aws_{direction}"].append(max(seconds - start, 1e-3))
                wall[f"{side}_{direction}"].append(seconds)
                if direction == "download":
                    if not same_files(source, dest):
                        sys.exit(f"{side}'s download of {name} differs from what was uploaded")
                    shutil.rmtree(dest)
        say(
            f"  {name} #{i + 1}: "
            + "; ".join(
                f"{direction} omnilab {transfer[f'omnilab_{direction}'][-1]:.2f}s "
                f"aws {transfer[f'aws_{direction}'][-1]:.2f}s"
                for direction in ("upload", "download")
            )
            + " (transfers)"
        )
    result: dict[str, Any] = {
        "aws_start_s": start,
        "omnilab_start_median_s": statistics.median(imports),
        "wall_s": wall,
        "transfer_s": transfer,
        "median_wall_s": {k: statistics.median(v) for k, v in wall.items()},
        "median_transfer_s": {k: statistics.median(v) for k, v in transfer.items()},
    }
    for direction in ("upload", "download"):
        t = result["median_transfer_s"]
        w = result["median_wall_s"]
        ratio = t[f"aws_{direction}"] / t[f"omnilab_{direction}"]
        result[f"{direction}_ratio"] = round(ratio, 3)
        result[f"{direction}_wall_ratio"] = round(
            w[f"aws_{direction}"] / w[f"omnilab_{direction}"], 3
        )
        result[f"{direction}_goal_met"] = ratio >= GOAL
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="small files in the first set")
    parser.add_argument("--file-kb", type=int, default=100, help="size of each small file (KB)")
    parser.add_argument(
        "--big-mb", type=int, default=1024, help="the big file's size (MB); 0: none"
    )
    parser.add_argument("--repeat", type=int, default=3, help="times each is measured")
    parser.add_argument("--aws", help="the aws command (default: bench/.awscli-venv's)")
    parser.add_argument(
        "--work", help="folder for the data and the server (default: a temporary one)"
    )
    args = parser.parse_args()
    aws = aws_command(args.aws)
    work = Path(tempfile.mkdtemp(prefix="bench-artifacts-", dir=args.work))
    server = Garage(work / "garage")
    (work / "garage").mkdir()
    results: dict[str, Any] = {
        "config": {
            "files": args.files,
            "file_kb": args.file_kb,
            "big_mb": args.big_mb,
            "repeat": args.repeat,
            "aws": aws_version(aws),
            "aws_settings": "defaults (max_concurrent_requests 10, multipart_chunksize 8 MB)",
            "omnilab_settings": "defaults (16 requests at once, 16 MB parts)",
            "server": "garage (single node, sqlite metadata) on 127.0.0.1",
            "timing": "median of the repeats; transfer: omnilab's inside its process after "
            "its imports, aws's wall time less its start (aws s3 ls of an empty prefix); "
            "wall: a fresh process per transfer, as a user runs each",
            "note": "a machine shared with other work; figures vary with its load",
        }
    }
    try:
        server.start()
        say(f"garage at {server.endpoint}; {aws_version(aws)}")
        sets = [("small", args.files, args.file_kb * 1000)]
        if args.big_mb:
            sets.append(("big", 1, args.big_mb * 1000 * 1000))
        for name, count, size in sets:
            say(f"{name}: {count} file(s) of {size / 1e6:.1f} MB")
            run_id, folder = make_set(work, name, count, size)
            results[name] = measure(name, run_id, folder, work, server, aws, args.repeat)
            shutil.rmtree(folder.parent)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    path = write("artifacts", results)
    report(results)
    say(f"results in {path}")


def report(results: dict[str, Any]) -> None:
    for name in ("small", "big"):
        if name not in results:
            continue
        r = results[name]
        t, w = r["median_transfer_s"], r["median_wall_s"]
        for direction in ("upload", "download"):
            say(
                f"{name} {direction}: transfer omnilab {t[f'omnilab_{direction}']:.2f}s, "
                f"aws {t[f'aws_{direction}']:.2f}s: {r[f'{direction}_ratio']:.2f}x "
                f"(goal >= {GOAL}x: {'met' if r[f'{direction}_goal_met'] else 'NOT met'}); "
                f"wall omnilab {w[f'omnilab_{direction}']:.2f}s, aws "
                f"{w[f'aws_{direction}']:.2f}s: {r[f'{direction}_wall_ratio']:.2f}x"
            )
        say(
            f"  (starts: aws {r['aws_start_s']:.2f}s, omnilab "
            f"{r['omnilab_start_median_s']:.2f}s: in the wall times only)"
        )


if __name__ == "__main__":
    main()

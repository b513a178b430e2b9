"""Streaming a table's rows from one PostgreSQL server into another with ``COPY``.

Binary ``COPY ... TO STDOUT`` on the source piped into ``COPY ... FROM STDIN`` on the
target. Two ``psql`` processes joined by a pipe do it in C, with the source's and the
target's work overlapping; relaying the same bytes through psycopg costs a Python call
per row (about a third more time for a million rows), and is the fallback when no
``psql`` is installed.

The target's side is one transaction that empties the (new, empty) table first: a table
truncated in the loading transaction can be loaded ``FREEZE``, its rows written already
frozen and its pages all-visible, so the scans that follow (checksum, index builds,
``ANALYZE``) and production's later vacuums have no hint bits to set or rows to freeze.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.services.promotable import CopyStopped, Progress, PromotionFailed

if TYPE_CHECKING:
    import psycopg
    from psycopg.sql import Composed


def psql_binary() -> str | None:
    from omnilab.errors import ServiceUnavailable
    from omnilab.services.postgres.service import find_postgres

    try:
        path = find_postgres().tool("psql")
    except ServiceUnavailable:
        return None
    return path if os.access(path, os.X_OK) else None


def tee_program() -> str | None:
    """``tee``, which writes a stream into a file as it passes (coreutils: everywhere
    ``psql`` is, in practice); None where it is missing."""
    return shutil.which("tee")


def _psql_args(dsn: str) -> tuple[str, dict[str, str]]:
    """A conninfo without its password (for the command line) and the password for the
    environment: a secret never appears in ``ps``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(dsn)
    password = parts.pop("password", None)
    env = {"PGPASSWORD": str(password)} if password else {}
    return make_conninfo(**parts), env  # type: ignore[arg-type]


def run_psql(
    psql: str,
    dsn: str,
    commands: Sequence[str],
    *,
    stdin: Any = subprocess.DEVNULL,
    stdout: Any = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``psql -c ...`` for each of ``commands`` on ``dsn``, stopping at the first error;
    the password goes by the environment (never an inherited ``PGPASSWORD``, which belongs
    to some other server), ``env`` adds to it."""
    conninfo, secret = _psql_args(dsn)
    inherited = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(
        args,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**inherited, **secret, **(env or {})},
        check=False,
    )


def copy_with_psql(
    psql: str,
    source_dsn: str,
    copy_out: str | Sequence[str],
    target_dsn: str,
    truncate: str,
    copy_in: str,
    progress: Progress,
    target: psycopg.Connection,
    relid: int,
    tee: Path | None = None,
) -> bool:
    """Pipe ``copy_out`` on the source into ``copy_in`` on the target, in a transaction
    that runs ``truncate`` first; raise :class:`PromotionFailed` with the server's
    message if either side fails (psql stops at the error, the transaction is undone).

    With ``tee``, the stream is also written into that file as it passes (by ``tee``,
    where it is installed: a fork's cache entry, without reading the rows again); returns
    whether the file holds the whole stream (False: no ``tee``, or it could not write).

    ``copy_out`` may be several commands for the source's session, the ``COPY`` among
    them (a fork reads inside a transaction that imports production's snapshot); ``-q``
    keeps their command tags out of the stream."""
    src_conninfo, src_env = _psql_args(source_dsn)
    dst_conninfo, dst_env = _psql_args(target_dsn)
    base = ["-X", "-q", "-v", "ON_ERROR_STOP=1"]
    load = ["-c", "BEGIN", "-c", truncate, "-c", copy_in, "-c", "COMMIT"]
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    commands = [copy_out] if isinstance(copy_out, str) else list(copy_out)
    reader = subprocess.Popen(
        [psql, *base, "-d", src_conninfo, *(a for c in commands for a in ("-c", c))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**env, **src_env},
    )
    teeing: subprocess.Popen[bytes] | None = None
    tee_binary = tee_program() if tee is not None else None
    try:
        if tee is not None and tee_binary is not None:
            teeing = subprocess.Popen(
                [tee_binary, str(tee)],
                stdin=reader.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert reader.stdout is not None
            reader.stdout.close()  # tee holds the pipe now
        writer = subprocess.Popen(
            [psql, *base, "-d", dst_conninfo, *load],
            stdin=teeing.stdout if teeing is not None else reader.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**env, **dst_env},
        )
    except BaseException:
        for proc in (reader, teeing):
            if proc is not None:
                proc.kill()
                proc.wait()
        raise
    upstream = teeing if teeing is not None else reader
    assert upstream.stdout is not None
    upstream.stdout.close()  # the writer holds the pipe now; the reader sees it close
    procs = (reader, writer) if teeing is None else (reader, teeing, writer)
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(target, relid, progress, done, procs), daemon=True
    )
    watcher.start()
    try:
        _, write_err = writer.communicate()
        _, read_err = reader.communicate()
        if teeing is not None:
            teeing.communicate()
    except BaseException:  # Ctrl-C, SIGTERM: no copy goes on without us
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    finally:
        done.set()
        watcher.join()
    if reader.returncode or writer.returncode:
        lines = [
            line.strip()
            for err in (write_err, read_err)
            for line in (err or b"").decode(errors="replace").splitlines()
            if line.strip()
        ]
        errors = [line for line in lines if "ERROR:" in line or "FATAL:" in line]
        reason = (errors or lines or ["psql failed"])[0]
        reason = reason.split("ERROR:", 1)[-1].split("FATAL:", 1)[-1].strip()
        raise PromotionFailed(f"copying the rows failed: {reason}")
    return teeing is not None and teeing.returncode == 0


def _watch(
    conn: psycopg.Connection,
    relid: int,
    progress: Progress,
    done: threading.Event,
    procs: tuple[subprocess.Popen[bytes], ...],
) -> None:
    """Report rows copied so far from ``pg_stat_progress_copy`` (on a connection of its
    own: the promoter's is not shared between threads). When the progress says to stop
    (a copy beside this one failed: :class:`CopyStopped`), the ``psql`` pair is killed,
    so the copy ends now rather than when its rows are through."""
    import psycopg

    seen = 0
    try:
        with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as own:
            while not done.wait(0.25):
                row = own.execute(
                    "SELECT tuples_processed FROM pg_stat_progress_copy WHERE relid = %s",
                    (relid,),
                ).fetchone()
                if row and row[0] > seen:
                    progress.advance(int(row[0]) - seen)
                    seen = int(row[0])
    except CopyStopped:
        for proc in procs:
            proc.kill()
    except psycopg.Error:
        return  # progress is a nicety; the copy's own errors are reported by psql


def copy_with_psycopg(
    source: psycopg.Connection,
    copy_out: Composed,
    target: psycopg.Connection,
    truncate: Composed,
    copy_in: Composed,
    progress: Progress,
) -> None:
    """The same stream relayed through this process, a row at a time."""
    blocks = 0  # one per row, for COPY TO
    with (
        target.transaction(),
        source.cursor() as out_cur,
        target.cursor() as in_cur,
        out_cur.copy(copy_out) as reader,
    ):
        in_cur.execute(truncate)
        with in_cur.copy(copy_in) as writer:
            for block in reader:
                writer.write(block)
                blocks += 1
                if not blocks & 0xFFFF:
                    progress.advance(0x10000)
    progress.advance(max(blocks - 1, 0) & 0xFFFF)


def dump_to_file(psql: str | None, dsn: str, copy_out: str, path: Path) -> None:
    """Write ``copy_out`` (a ``COPY ... TO STDOUT``) into ``path``: ``psql`` writes the
    stream in C; psycopg, a block at a time, where no ``psql`` is installed."""
    if psql is not None:
        with path.open("wb") as out:
            done = run_psql(psql, dsn, [copy_out], stdout=out)
        if done.returncode:
            raise PromotionFailed(f"writing the rows failed: {_psql_error(done.stderr)}")
        return
    import psycopg

    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        path.open("wb") as out,
        conn.cursor() as cur,
        cur.copy(copy_out) as reader,
    ):
        for block in reader:
            out.write(block)


def load_from_file(psql: str | None, dsn: str, truncate: str, copy_in: str, path: Path) -> None:
    """Load ``path`` with ``copy_in`` (a ``COPY ... FROM STDIN``) in one transaction that
    runs ``truncate`` first (so ``FREEZE`` applies)."""
    if psql is not None:
        with path.open("rb") as data:
            done = run_psql(
                psql,
                dsn,
                ["BEGIN", truncate, copy_in, "COMMIT"],
                stdin=data,
                stdout=subprocess.DEVNULL,
            )
        if done.returncode:
            raise PromotionFailed(f"loading the rows failed: {_psql_error(done.stderr)}")
        return
    import psycopg

    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        path.open("rb") as data,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        cur.execute(truncate)
        with cur.copy(copy_in) as writer:
            while block := data.read(1 << 20):
                writer.write(block)


def _psql_error(stderr: bytes | None) -> str:
    lines = [line.strip() for line in (stderr or b"").decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "ERROR:" in line or "FATAL:" in line]
    reason = (errors or lines or ["psql failed"])[0]
    return reason.split("ERROR:", 1)[-1].split("FATAL:", 1)[-1].strip()

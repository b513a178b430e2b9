"""The embedded PostgreSQL that holds the tracking store when no tracking URL is set.

It lives under ``.omnilab/pgdata`` at the project root (``Settings.home``), listens on a
Unix socket only (no TCP port to collide with anything), and is shared by every omnilab
process working in that project: the first one starts it, the last one to leave stops it.
Users are counted with ``flock`` shared locks, which the kernel drops when a process
dies, so even a SIGKILLed user never keeps the server alive in the counting.

A user that leaves normally stops the server when it is the last. One that is killed
(SIGKILL, a crashed kernel) cannot, so each server has a watcher
(:mod:`omnilab.tracking.embedded_watch`, a small process in a session of its own), which
waits for the count of users to reach zero, however they left, and then stops it.

Locks, all files under ``.omnilab/``: ``pg.start.lock`` (exclusive: one process starts,
counts itself in or stops the server at a time), ``pg.users.lock`` (shared by each user)
and ``pg.watch.lock`` (held by the live watcher: a user finding it free starts one).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from omnilab.errors import ServiceUnavailable, TrackingStoreError
from omnilab.services.postgres.service import find_postgres
from omnilab.unprivileged import grant_traverse, service_ids

DB_USER = "omnilab"
START_TIMEOUT = 60.0


class EmbeddedPostgres:
    """A per-directory PostgreSQL, started on first use and stopped by its last user."""

    def __init__(self, home: Path, service_user: str = "nobody") -> None:
        self.home = Path(home).resolve()
        self.pgdata = self.home / "pgdata"
        digest = hashlib.sha1(str(self.pgdata).encode()).hexdigest()[:12]
        # Socket paths are limited to 107 bytes: keep the socket out of deep folders.
        base = Path(tempfile.gettempdir())
        self.socket_dir = (base if len(str(base)) < 60 else Path("/tmp")) / f"omnilab-pg-{digest}"
        self.service_user = service_user
        self._users_fd: int | None = None

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} dbname=postgres user={DB_USER}"

    def _lock_file(self, name: str) -> int:
        return os.open(self.home / name, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> str:
        """Make sure the server runs and count this process as a user; returns a DSN."""
        if self._users_fd is not None:
            return self.dsn
        self.home.mkdir(parents=True, exist_ok=True)
        start_fd = self._lock_file("pg.start.lock")
        try:
            fcntl.flock(start_fd, fcntl.LOCK_EX)
            if not self.running():
                self._start()
            users_fd = self._lock_file("pg.users.lock")
            fcntl.flock(users_fd, fcntl.LOCK_SH)
            self._users_fd = users_fd
            self._ensure_watcher()
        finally:
            os.close(start_fd)  # closing drops the lock
        atexit.register(self.release)
        return self.dsn

    def release(self) -> None:
        """Stop counting this process; stop the server if it was the last user."""
        users_fd = self._users_fd
        if users_fd is None:
            return
        self._users_fd = None
        start_fd = self._lock_file("pg.start.lock")
        try:
            fcntl.flock(start_fd, fcntl.LOCK_EX)
            try:
                # Converting to exclusive succeeds only if no other process holds it shared.
                fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            self.stop()
        finally:
            os.close(users_fd)
            os.close(start_fd)

    # -- the watcher: stops the server after its last user, even a killed one --------

    def _ensure_watcher(self) -> None:
        """Start the server's watcher unless one is alive (it holds ``pg.watch.lock``).
        Called with the start lock held, so that two users do not both start one."""
        watch_fd = self._lock_file("pg.watch.lock")
        try:
            try:
                fcntl.flock(watch_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a watcher is alive
        finally:
            os.close(watch_fd)  # drops the probe's lock at once
        subprocess.Popen(
            [sys.executable, "-m", "omnilab.tracking.embedded_watch", str(self.home)],
            cwd="/",  # hold no directory of the user's busy
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    def watch(self) -> str:
        """The watcher's loop (see :mod:`omnilab.tracking.embedded_watch`): wait until no
        process counts itself a user, then stop the server; returns what it did."""
        watch_fd = self._lock_file("pg.watch.lock")
        try:
            fcntl.flock(watch_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(watch_fd)
            return "another watcher is alive"
        users_fd = self._lock_file("pg.users.lock")
        try:
            while True:
                # Blocks while any user holds its shared lock; a dead user's goes with it.
                fcntl.flock(users_fd, fcntl.LOCK_EX)
                # Let go at once: a user counting itself in takes the start lock, then
                # its shared lock, and must not wait on this one while we wait on that.
                fcntl.flock(users_fd, fcntl.LOCK_UN)
                start_fd = self._lock_file("pg.start.lock")
                try:
                    fcntl.flock(start_fd, fcntl.LOCK_EX)
                    if not self.running():
                        return "the server was stopped by its last user"
                    try:
                        fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a user came in meanwhile: wait for it too
                    fcntl.flock(users_fd, fcntl.LOCK_UN)
                    self.stop()
                    return "stopped the server: its users are gone"
                finally:
                    # The watch lock goes before the start lock: a user starting the
                    # server again next must find no watcher, and start its own.
                    if not self.running():
                        os.close(watch_fd)
                        watch_fd = -1
                    os.close(start_fd)
        finally:
            os.close(users_fd)
            if watch_fd != -1:
                os.close(watch_fd)

    # -- server ---------------------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # A stale pid file may name a pid since reused, even by another PostgreSQL.
        return pid if str(self.pgdata).encode() in cmdline else None

    def running(self) -> bool:
        return self._postmaster_pid() is not None

    def _start(self) -> None:
        existing = self.pgdata / "PG_VERSION"
        major = int(existing.read_text().strip()) if existing.exists() else None
        try:
            install = find_postgres(major)
            ids = service_ids(self.service_user)
        except ServiceUnavailable as exc:
            raise TrackingStoreError(f"tracking store: {exc}") from None
        if ids:
            for path in (self.pgdata, Path(install.tool("postgres"))):
                grant_traverse(path, ids[0], self.service_user)
        kwargs: dict[str, Any] = (
            {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        )
        log_path = self.home / "pg.log"

        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        # In a shared /tmp someone else could have made this path first: refuse links
        # and foreign directories rather than hand them to the server.
        st = os.lstat(self.socket_dir)
        allowed = {os.getuid(), *(ids[:1] if ids else ())}
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid not in allowed:
            raise TrackingStoreError(f"{self.socket_dir} belongs to another user; remove it")
        if ids:
            os.chown(self.socket_dir, *ids)

        with open(log_path, "ab") as log:
            if major is None:
                self.pgdata.mkdir(mode=0o700, exist_ok=True)
                if ids:
                    os.chown(self.pgdata, *ids)
                result = subprocess.run(
                    [
                        install.tool("initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        DB_USER,
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=300,
                    **kwargs,
                )
                if result.returncode != 0:
                    raise TrackingStoreError(
                        f"tracking store: initdb failed (exit status {result.returncode}); "
                        f"see {log_path}"
                    )
            subprocess.Popen(
                [
                    install.tool("postgres"),
                    "-D",
                    str(self.pgdata),
                    "-c",
                    "listen_addresses=",
                    "-k",
                    str(self.socket_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        self._wait_ready(log_path)

    def _wait_ready(self, log_path: Path) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-10:]
                    raise TrackingStoreError(
                        f"embedded tracking store did not start ({exc}); "
                        f"last lines of {log_path}:\n" + "\n".join(tail)
                    ) from None
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while self._postmaster_pid() == pid and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            self.socket_dir.rmdir()  # empty once the server has removed its socket

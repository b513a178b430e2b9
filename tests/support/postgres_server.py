"""A PostgreSQL of a test's own, that the test can SIGKILL and start again.

The session's PostgreSQL (tests/conftest.py) is shared by every test and must never go
down; a test of a tracking-store outage starts this one instead: the same binaries
omnilab's local runtime uses, run as the unprivileged service user when the tests run as
root, on a fixed port and data folder so that a restart finds what was committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.support import free_port, wait_until

USER = "omnilab"


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        from omnilab.services.postgres.service import find_postgres
        from omnilab.unprivileged import chown_tree, grant_traverse, service_ids

        self.install = find_postgres()
        self.folder = folder
        self.pgdata = folder / "pgdata"
        self.port = free_port()
        self.password = uuid.uuid4().hex
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(mode=0o700, parents=True)
        pwfile = folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        user = os.environ.get("OMNILAB_SERVICE_USER", "nobody")
        ids = service_ids(user)
        self._user: dict[str, Any] = {}
        if ids:
            chown_tree(folder, *ids)
            grant_traverse(folder, ids[0], user)
            self._user = {"user": ids[0], "group": ids[1], "extra_groups": []}
        subprocess.run(
            [
                self.install.tool("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=folder,
            check=True,
            capture_output=True,
            **self._user,
        )
        pwfile.unlink()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.install.tool("postgres"),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
            ],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._user,
        )

        def up() -> bool:
            try:
                with psycopg.connect(self.url, connect_timeout=1):
                    return True
            except psycopg.Error:
                return False

        assert wait_until(up, timeout=30), "PostgreSQL did not start"

    def kill(self) -> None:
        """SIGKILL the server; returns once its backends are gone too (they end when
        they see their postmaster gone), so that it can start again at once."""
        if self.proc is None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        psutil.wait_procs(children, timeout=15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            self.proc.wait(timeout=30)
        self.proc = None

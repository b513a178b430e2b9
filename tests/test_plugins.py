"""A service omnilab does not ship, added from the test folder alone.

``tests/support/plugin_site/`` holds a third party's distribution as ``pip install``
would leave it: the package ``omnilab_memcached`` and its ``.dist-info`` declaring an
``omnilab.services`` entry point. Putting that folder on the path is the whole
registration: the memcached server (Debian's, a real process) starts in a local stack
with a readiness check and a connected client, and shows up in ``omnilab doctor``,
``omnilab stack up`` and
``omnilab compose export``, with no edit inside ``omnilab/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import omnilab
from omnilab import plugins
from omnilab.promote import RedisKeys
from omnilab.runtimes.local import LocalRuntime
from omnilab.services import service_class
from tests.support import run_cli

SITE = Path(__file__).resolve().parent / "support" / "plugin_site"
PACKAGE = Path(omnilab.__file__).resolve().parent

EXPERIMENT = """
from omnilab import Experiment
from omnilab_memcached import Memcached


class Cached(Experiment):
    services = [Memcached()]

    def run(self, ctx):
        ctx.memcached.set("greeting", "hello")
        read_back = ctx.memcached.get("greeting").decode()
        return {"read_back": read_back, "url": ctx.env["MEMCACHED_URL"]}
"""


@pytest.fixture
def memcached_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plug-in's folder on this process's path and on its children's."""
    monkeypatch.syspath_prepend(str(SITE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SITE), os.environ.get("PYTHONPATH", "")]))
    plugins.refresh()
    yield SITE
    plugins.refresh()


def test_omnilab_itself_knows_nothing_of_memcached() -> None:
    assert "memcached" not in plugins.names("service")
    mentions = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".lua", ".sql", ".j2", ".toml"}
        and "memcached" in path.read_text().lower()
    ]
    assert mentions == []


def test_the_entry_point_registers_it_and_a_local_stack_runs_it(memcached_plugin: Path) -> None:
    descriptor = plugins.descriptors("service")["memcached"]
    assert descriptor.provider == "omnilab-memcached"
    memcached = service_class("memcached")
    with omnilab.stack(memcached(), runtime="local") as stack:
        assert stack.memcached.set("k", "v") is True
        assert stack.memcached.get("k") == b"v"
        url = stack.env["MEMCACHED_URL"]
        assert url.startswith("memcached://127.0.0.1:")
        described = stack.describe()
    assert "memcached 1.6" in json.dumps(described)


def test_an_experiment_uses_it_as_ctx_memcached(memcached_plugin: Path, workdir: Path) -> None:
    (workdir / "cached.py").write_text(EXPERIMENT)
    result = run_cli("run", "cached.py", "--json", "--runtime", "local")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded", run
    assert run["summary"]["read_back"] == "hello"
    assert run["summary"]["url"].startswith("memcached://127.0.0.1:")


def test_doctor_stack_up_and_compose_export_list_it(memcached_plugin: Path, workdir: Path) -> None:
    doctor = run_cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["local memcached"]["status"] == "ok", checks["local memcached"]
    assert checks["local memcached"]["detail"].startswith("memcached 1.6")

    up = run_cli("stack", "up", "memcached", "--runtime", "local")
    assert up.returncode == 0, up.stderr
    assert "memcached: ready at memcached://127.0.0.1:" in up.stderr
    (listed,) = json.loads(run_cli("stack", "ls", "--json").stdout)
    exports = run_cli("stack", "env", listed["id"][:8]).stdout
    assert "MEMCACHED_URL='memcached://127.0.0.1:" in exports
    down = run_cli("stack", "down", listed["id"][:8])
    assert down.returncode == 0, down.stderr

    output = workdir / "compose" / "stack.yml"
    export = run_cli("compose", "export", "--output", output)
    assert export.returncode == 0, export.stderr
    service = yaml.safe_load(output.read_text())["services"]["memcached-exp"]
    assert service["image"] == "${OMNILAB_IMAGE_MEMCACHED:-memcached:1.6.38}"
    assert service["ports"] == ["127.0.0.1:${OMNILAB_PORT_MEMCACHED:-11212}:11211"]


# -- the registry itself -------------------------------------------------------------------


def test_names_list_without_importing_and_unknown_names_are_usage_errors() -> None:
    assert plugins.names("runtime") == ["local", "docker"]
    assert plugins.names("promotable") == ["qdrant_collection", "redis_keys", "postgres_table"]
    with pytest.raises(plugins.UnknownPlugin, match="unknown runtime 'k8s': choose one of"):
        plugins.load("runtime", "k8s")
    assert issubclass(plugins.UnknownPlugin, omnilab.UsageError)


def test_a_plugin_whose_library_is_missing_says_which() -> None:
    plugins.register("service", "ghost", "omnilab_no_such_library.ghost:Ghost")
    try:
        with pytest.raises(plugins.PluginUnavailable, match="needs 'omnilab_no_such_library'"):
            plugins.load("service", "ghost")
        assert "ghost" not in plugins.available("service")  # skipped, not fatal
        with pytest.raises(plugins.PluginUnavailable):
            service_class("ghost")
    finally:
        plugins.unregister("service", "ghost")
    assert "ghost" not in plugins.names("service")


def test_register_takes_an_object_and_a_plugin_of_the_wrong_type_is_refused() -> None:
    from omnilab.errors import OmnilabError
    from omnilab.services.redis import Redis

    class Keydb(Redis):
        name = "keydb"

    plugins.register("service", "keydb", Keydb)
    plugins.register("service", "notaservice", dict)
    try:
        assert service_class("keydb") is Keydb
        with pytest.raises(OmnilabError, match="not a Service subclass"):
            service_class("notaservice")
    finally:
        plugins.unregister("service", "keydb")
        plugins.unregister("service", "notaservice")


def test_an_unknown_runtime_setting_is_one_line(workdir: Path) -> None:
    result = run_cli("runs", "ls", env={"OMNILAB_RUNTIME": "k8s"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: OMNILAB_RUNTIME: unknown runtime 'k8s': choose one of auto, local, docker"
    )


class EtcdKeys(RedisKeys):
    """A third party's promotable kind that cannot seed a run (no forker)."""

    kind = "etcd_keys"
    forker_class = None


def test_messages_name_the_registered_promotable_kinds() -> None:
    from omnilab.fork import check_seeds
    from omnilab.services.promotable import check_promotes

    plugins.register("promotable", "etcd_keys", EtcdKeys)
    try:
        with pytest.raises(omnilab.UsageError) as promoted:
            check_promotes(["emb:*"], ["redis"], "Exp")
        assert str(promoted.value) == (
            "Exp.promotes: 'emb:*' is not promotable; use QdrantCollection(...), "
            "RedisKeys(...) or PostgresTable(...) from omnilab.promote; "
            f"EtcdKeys(...) from {__name__}"
        )
        with pytest.raises(omnilab.UsageError) as seeded:
            check_seeds(["emb:*"], ["redis"], "Exp")
        assert "EtcdKeys" not in str(seeded.value)  # it cannot seed a run
        assert str(seeded.value).endswith(
            "use QdrantCollection(...), RedisKeys(...) or PostgresTable(...) from omnilab.promote"
        )
    finally:
        plugins.unregister("promotable", "etcd_keys")


class ClusterRuntime(LocalRuntime):
    """A third party's runtime, tried by ``auto`` between docker and local."""

    name = "cluster"
    auto_preference = 50
    available_when = "a cluster answers"

    @classmethod
    def unavailable_reason(cls, settings: Any, services: Any) -> str | None:
        return "no cluster here"


def test_runtime_help_and_auto_come_from_the_registered_runtimes() -> None:
    from omnilab.cli import render

    before = render.runtime_help()
    assert before.startswith("Where the stack runs: local, docker, or auto (docker when ")
    plugins.register("runtime", "cluster", ClusterRuntime)
    try:
        assert render.runtime_help() == (
            "Where the stack runs: local, docker, cluster, or auto (docker when an engine "
            "answers and images are there, else cluster when a cluster answers, else local). "
            "Default: OMNILAB_RUNTIME or auto."
        )
    finally:
        plugins.unregister("runtime", "cluster")


def test_a_runtime_whose_library_is_missing_says_which() -> None:
    from omnilab.config import get_settings
    from omnilab.errors import RuntimeUnavailable
    from omnilab.progress import QuietReporter
    from omnilab.runtimes import select_runtime

    plugins.register("runtime", "ghost", "omnilab_no_such_library.runtime:Ghost")
    try:
        with pytest.raises(RuntimeUnavailable) as refused:
            select_runtime("ghost", get_settings(), QuietReporter(), [])
        assert str(refused.value) == (
            "--runtime ghost: runtime 'ghost' needs 'omnilab_no_such_library', "
            "which is not installed"
        )
    finally:
        plugins.unregister("runtime", "ghost")

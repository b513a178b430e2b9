"""The settings' sources and their precedence, the config file, and `omnilab config`.

Precedence, highest first: init arguments, environment, ``.env.system``, ``omnilab.toml``,
``pyproject.toml [tool.omnilab]``, defaults. Each test builds a project in its own
working directory and asks the real ``omnilab`` command (or ``get_settings``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import run_cli


def _project(root: Path, *, pyproject: str = "", omnilab_toml: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "demo"\n\n[tool.omnilab]\n{pyproject}')
    if omnilab_toml is not None:
        (root / "omnilab.toml").write_text(omnilab_toml)
    return root


def _config(cwd: Path, env: dict[str, str] | None = None) -> dict:
    result = run_cli("config", "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_source_wins_over_the_ones_below(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNILAB_READY_TIMEOUT")  # the conftest's
    # Five settings, each set in every source from the bottom up to one level:
    # the highest source that sets it must win, and be named.
    _project(
        workdir,
        pyproject=(
            "retention_days = 1\nready_timeout = 1\npromote_lock_timeout = 1\n"
            'service_user = "from-pyproject"\n'
        ),
        omnilab_toml="retention_days = 2\nready_timeout = 2\npromote_lock_timeout = 2\n",
    )
    (workdir / ".env.system").write_text("OMNILAB_RETENTION_DAYS=3\nOMNILAB_READY_TIMEOUT=3\n")
    settings = _config(workdir, env={"OMNILAB_RETENTION_DAYS": "4"})["settings"]

    def seen(name: str) -> tuple[object, str]:
        return settings[name]["value"], settings[name]["from"]

    assert seen("retention_days") == (4.0, "environment")
    assert seen("ready_timeout") == (3.0, ".env.system")
    assert seen("promote_lock_timeout") == (2.0, "omnilab.toml")
    assert seen("service_user") == ("from-pyproject", "pyproject.toml")
    assert seen("api_port") == (8765, "default")
    assert settings["retention_days"]["variable"] == "OMNILAB_RETENTION_DAYS"


def test_init_arguments_win_over_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnilab.config import Settings, setting_origins

    _project(workdir, pyproject="retention_days = 1\n")
    monkeypatch.setenv("OMNILAB_RETENTION_DAYS", "4")
    assert Settings().retention_days == 4
    assert Settings(OMNILAB_RETENTION_DAYS=5).retention_days == 5  # type: ignore[call-arg]
    init = {"OMNILAB_RETENTION_DAYS": 5}
    assert setting_origins(init=init)["retention_days"] == "argument"


def test_the_file_is_the_project_roots_and_its_paths_are_read_from_there(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OMNILAB_RUNTIME", "OMNILAB_TRACKING_URL"):  # the conftest's
        monkeypatch.delenv(var)
    _project(workdir, pyproject='home = "state/store"\nruns_dir = "out/runs"\nruntime = "local"\n')
    notebooks = workdir / "work" / "nb"
    notebooks.mkdir(parents=True)
    data = _config(notebooks)
    root = workdir.resolve()
    assert data["project_root"] == str(root)
    assert data["config_files"] == [f"{root / 'pyproject.toml'} [tool.omnilab]"]
    assert data["settings"]["home"]["value"] == str(root / "state" / "store")
    assert data["settings"]["runs_dir"]["value"] == str(root / "out" / "runs")
    assert data["settings"]["runtime"]["from"] == "pyproject.toml"
    assert data["tracking_store"] == {
        "kind": "embedded",
        "location": f"embedded PostgreSQL at {root / 'state' / 'store'}",
        "from": "pyproject.toml",
    }


def test_without_a_file_the_store_is_under_the_project_root(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNILAB_TRACKING_URL")  # the conftest's
    (workdir / ".git").mkdir()
    sub = workdir / "a" / "b"
    sub.mkdir(parents=True)
    data = _config(sub)
    assert data["config_files"] == []
    assert data["settings"]["home"] == {
        "variable": "OMNILAB_HOME",
        "value": str(workdir.resolve() / ".omnilab"),
        "from": "default",
    }
    # Set explicitly, OMNILAB_HOME still wins (read from the working directory).
    data = _config(sub, env={"OMNILAB_HOME": "mine"})
    assert data["settings"]["home"]["value"] == "mine"
    assert data["tracking_store"]["location"] == f"embedded PostgreSQL at {sub.resolve() / 'mine'}"


def test_the_project_roots_env_file_is_read_from_a_subfolder_and_named(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OMNILAB_TRACKING_URL", "OMNILAB_READY_TIMEOUT"):  # the conftest's
        monkeypatch.delenv(var)
    _project(workdir, pyproject="retention_days = 1\n")
    (workdir / ".env.system").write_text(
        "OMNILAB_TRACKING_URL=postgresql://lab:root-pass-9876@db.example:5432/tracking\n"
        "OMNILAB_RETENTION_DAYS=2\nOMNILAB_READY_TIMEOUT=2\nOMNILAB_RUNS_DIR=out/runs\n"
    )
    notebooks = workdir / "nb"
    notebooks.mkdir()
    root = workdir.resolve()
    # The same store from the root and from a subfolder: one history.
    for cwd, label in ((workdir, ".env.system"), (notebooks, "../.env.system")):
        data = _config(cwd)
        assert data["tracking_store"] == {
            "kind": "url",
            "location": "postgresql://lab:****@db.example:5432/tracking",
            "from": label,
        }
        assert data["settings"]["retention_days"]["from"] == label
        # Relative paths in the root's file are read from its folder.
        assert data["settings"]["runs_dir"]["value"] in ("out/runs", str(root / "out" / "runs"))
        assert str(root / ".env.system") in data["config_files"]
    shown = run_cli("config", cwd=notebooks)
    assert shown.returncode == 0, shown.stderr
    assert "(../.env.system)" in shown.stdout.splitlines()[0]
    assert "root-pass" not in shown.stdout
    assert _config(notebooks)["settings"]["runs_dir"]["value"] == str(root / "out" / "runs")

    # The working directory's own file overrides the root's, value by value.
    (notebooks / ".env.system").write_text("OMNILAB_RETENTION_DAYS=3\n")
    settings = _config(notebooks)["settings"]
    assert settings["retention_days"] == {
        "variable": "OMNILAB_RETENTION_DAYS",
        "value": 3.0,
        "from": ".env.system",
    }
    assert settings["ready_timeout"]["value"] == 2.0
    assert settings["ready_timeout"]["from"] == "../.env.system"


@pytest.mark.parametrize("where", ["omnilab.toml", "pyproject.toml"])
def test_an_unknown_key_is_an_error_naming_it_and_its_file(workdir: Path, where: str) -> None:
    if where == "omnilab.toml":
        _project(workdir, omnilab_toml="retension_days = 3\n")
    else:
        _project(workdir, pyproject="retension_days = 3\n")
    for command in (["config"], ["runs", "ls"]):
        result = run_cli(*command)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "unknown setting 'retension_days'" in lines[0]
        assert str(workdir.resolve() / where) in lines[0]
        assert "did you mean 'retention_days'?" in lines[0]


def test_a_variables_name_in_the_file_is_pointed_at_its_settings_name(workdir: Path) -> None:
    _project(workdir, omnilab_toml='OMNILAB_RUNTIME = "local"\n')
    result = run_cli("config")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: unknown setting 'OMNILAB_RUNTIME' in {workdir.resolve() / 'omnilab.toml'}: "
        "the file uses the setting's name: 'runtime'"
    )


def test_keys_of_the_queue_and_workloads_are_not_unknown(workdir: Path) -> None:
    from omnilab.config import get_settings
    from omnilab.queue.settings import get_queue_settings

    _project(workdir, pyproject='worker_ttl = 7\ngenerated_dir = "gen"\n')
    get_settings()  # the queue's and the workloads' keys: not this class's, not unknown
    assert get_queue_settings().worker_ttl == 7
    data = _config(workdir)["settings"]
    assert data["generated_dir"] == {
        "variable": "OMNILAB_GENERATED_DIR",
        "value": str(workdir.resolve() / "gen"),
        "from": "pyproject.toml",
    }


def test_a_bad_value_in_the_file_names_the_key_and_file(workdir: Path) -> None:
    _project(workdir, omnilab_toml="retention_days = -1\n")
    result = run_cli("config")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: retention_days in {workdir.resolve() / 'omnilab.toml'}: "
        "Input should be greater than or equal to 0"
    )
    (workdir / "omnilab.toml").write_text("retention_days = [\n")
    result = run_cli("config")
    assert result.returncode == 2
    assert "omnilab.toml is not valid TOML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_shows_the_store_in_use_with_secrets_masked(
    workdir: Path, tracking_url: str
) -> None:
    from omnilab.redact import secrets_of

    (password,) = secrets_of(tracking_url)
    env = {
        "QDRANT_API_KEY": "qdrant-key-0123456789",
        "POSTGRES_URL": "postgresql://app:prod-pass-4321@db.example:5432/omnimind",
    }
    shown = run_cli("config", env=env)
    assert shown.returncode == 0, shown.stderr
    data = _config(workdir, env=env)
    for text in (shown.stdout, json.dumps(data)):
        for secret in (password, "qdrant-key-0123456789", "prod-pass-4321"):
            assert secret not in text
    assert data["settings"]["qdrant_api_key"]["value"] == "****"
    assert data["settings"]["postgres_url"]["value"] == (
        "postgresql://app:****@db.example:5432/omnimind"
    )
    # The conftest points the tracking store at the session's PostgreSQL.
    assert data["tracking_store"]["kind"] == "url"
    assert data["tracking_store"]["from"] == "environment"
    assert "****" in data["tracking_store"]["location"]
    first = shown.stdout.splitlines()[0]
    assert first.startswith("tracking store  postgresql://") and "****" in first
    assert "(environment)" in first
    assert "postgres_url" in shown.stdout and "prod-pass" not in shown.stdout


def test_config_help_has_an_example() -> None:
    result = run_cli("config", "--help")
    assert result.returncode == 0
    assert "omnilab config --json" in result.stdout

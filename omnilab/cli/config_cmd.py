"""``omnilab config``: the settings in effect, where each came from, secrets masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from omnilab.cli import render


def _shown(name: str, value: Any) -> Any:
    """A value as it may be printed: secrets masked (keys wholly, URLs' passwords)."""
    from omnilab.redact import redact, redact_url

    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        if any(word in name for word in ("key", "password", "secret", "token")):
            return redact(value)
        return redact_url(value)
    return value


def _has_omnilab_table(path: Path) -> bool:
    """Whether ``pyproject.toml`` has a ``[tool.omnilab]`` (read already: it is valid)."""
    import tomllib

    if not path.is_file():
        return False
    with path.open("rb") as file:
        return "omnilab" in tomllib.load(file).get("tool", {})


def _rows() -> list[dict[str, Any]]:
    """Every setting of omnilab's, the queue's and the workloads', in that order."""
    from omnilab.config import ProjectSettings, setting_origins, variable_name
    from omnilab.queue.settings import QueueSettings, get_queue_settings
    from omnilab.workloads.settings import WorkloadSettings, get_workload_settings

    rows: dict[str, dict[str, Any]] = {}
    readings: list[tuple[type[ProjectSettings], ProjectSettings]] = [
        (QueueSettings, get_queue_settings()),
        (WorkloadSettings, get_workload_settings()),
    ]
    for cls, settings in readings:
        origins = setting_origins(cls)
        for name, field in cls.model_fields.items():
            if name in rows:
                continue
            rows[name] = {
                "name": name,
                "variable": variable_name(name, field),
                "value": _shown(name, getattr(settings, name)),
                "from": origins[name],
            }
    return list(rows.values())


def config(
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Show the settings in effect, where each came from, and which tracking store is used.

    A setting comes from, highest first: the environment, .env.system of the working
    directory, then of the project root (the nearest folder upwards holding omnilab.toml,
    pyproject.toml or .git), omnilab.toml, [tool.omnilab] of pyproject.toml (both at the
    project root), then its default; the "from" column names the file. Files use the
    names of the first column (runtime = "docker"); relative paths in them are read from
    the file's folder. Secrets are masked. Each setting's environment variable is shown
    in a wide terminal and by --json.

    Examples:

      omnilab config

      OMNILAB_RUNTIME=local omnilab config --json
    """
    from omnilab.config import (
        CONFIG_FILE,
        PYPROJECT_FILE,
        dotenv_files,
        get_settings,
        project_root,
    )

    settings = get_settings()
    rows = _rows()
    root = project_root()
    files = [str(path) for path in dotenv_files()]
    if (root / CONFIG_FILE).is_file():
        files.append(str(root / CONFIG_FILE))
    if _has_omnilab_table(root / PYPROJECT_FILE):
        files.append(f"{root / PYPROJECT_FILE} [tool.omnilab]")
    origin = {row["name"]: row["from"] for row in rows}
    store = {
        "kind": "url" if settings.tracking_url else "embedded",
        "location": settings.tracking_location,
        "from": origin["tracking_url" if settings.tracking_url else "home"],
    }
    if json_output:
        render.print_json(
            {
                "project_root": str(root),
                "config_files": files,
                "tracking_store": store,
                "settings": {row.pop("name"): row for row in rows},
            }
        )
        return
    render.out.print(
        f"[bold]tracking store[/]  {escape(store['location'])}  [dim]({escape(store['from'])})[/]"
    )
    render.out.print(f"[bold]project root[/]    {escape(str(root))}")
    render.out.print(
        f"[bold]config files[/]    {escape(', '.join(files)) if files else '[dim]none[/]'}"
    )
    render.out.print()
    from rich.table import Table

    # The variables' column only where it leaves the values room (--json always has it).
    wide = render.out.width >= 120
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold", pad_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("from", no_wrap=True)
    if wide:
        table.add_column("variable", no_wrap=True)
    table.add_column("value", overflow="fold")
    for row in rows:
        value = "[dim]unset[/]" if row["value"] is None else escape(str(row["value"]))
        source = escape(row["from"]) if row["from"] != "default" else "[dim]default[/]"
        cells = [row["name"], source, *([row["variable"]] if wide else []), value]
        table.add_row(*cells)
    render.out.print(table)

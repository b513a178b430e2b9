"""``omnilab cache``: the fork cache (docs/fork.md, "The fork cache"): list, prune."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import typer
from rich.markup import escape

from omnilab.cli import render
from omnilab.errors import UsageError

app = typer.Typer(
    help="The fork cache: production items a fork copied, kept by their checksum so that "
    "a second fork of unchanged data is restored locally (docs/fork.md).\n\n"
    "Where: OMNILAB_FORK_CACHE_DIR (default .omnilab/fork-cache at the project root). "
    "Bound: OMNILAB_FORK_CACHE_SIZE (default 10GiB; 0 turns the cache off).",
    no_args_is_help=True,
)

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _age(value: str) -> float:
    match = _AGE.match(value)
    if match is None:
        raise UsageError(
            f"--older-than {value!r} is not an age: write a number and a unit, "
            "s, m, h, d or w (30m, 12h, 7d)"
        )
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _size(value: str) -> int:
    from omnilab.resources import parse_size

    if value.strip() == "0":
        return 0
    try:
        size = parse_size(value, "--to")
    except UsageError:
        raise UsageError(
            f"--to {value!r} is not a size: write '500m', '2GiB' (k, m, g, t: powers of 1024)"
        ) from None
    if size == "unlimited":
        raise UsageError("--to unlimited removes nothing; give a size such as 2GiB")
    return size


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _checksum(checksum: object) -> str:
    if isinstance(checksum, dict):
        return str(checksum.get("sum") or checksum.get("xor128") or "")[:16]
    return str(checksum)[:16]


@app.command("ls")
def ls(json_output: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """List the cache's entries, most recently used first: service, item, production
    (URL masked), production's checksum (short), size, last used.

    Examples:

      omnilab cache ls

      omnilab cache ls --json
    """
    from omnilab.config import get_settings
    from omnilab.services.fork_cache import ForkCache

    settings = get_settings()
    cache = ForkCache(settings.fork_cache_folder, settings.fork_cache_bytes)
    entries = cache.entries()
    if json_output:
        render.print_json(
            {
                "folder": str(cache.folder),
                "bound": settings.fork_cache_bytes,
                "entries": [e.to_dict() for e in entries],
            }
        )
        return
    total = sum(e.size for e in entries)
    bound = "off" if settings.fork_cache_bytes <= 0 else _human(settings.fork_cache_bytes)
    render.err.print(
        escape(f"{cache.folder}: {len(entries)} entries, {_human(total)} of {bound}"),
        highlight=False,
    )
    if not entries:
        return
    header = ("service", "item", "production", "checksum", "size", "last used")
    rows = [
        (
            e.service,
            e.label.removeprefix(f"{e.service} "),
            str(e.meta.get("url", "")),
            _checksum(e.meta.get("checksum")),
            _human(e.size),
            _when(e.last_used),
        )
        for e in entries
    ]
    # Plain columns, one line per entry whatever the terminal's width (grep, cut, awk).
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [
            cell.rjust(w) if i == 4 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        render.out.print(escape("  ".join(cells).rstrip()), soft_wrap=True, highlight=False)


@app.command("prune")
def prune(
    everything: bool = typer.Option(False, "--all", help="Remove every entry."),
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        metavar="AGE",
        help="Remove entries not used for AGE: 30m, 12h, 7d, 2w.",
        show_default=False,
    ),
    to: str | None = typer.Option(
        None,
        "--to",
        metavar="SIZE",
        help="Remove the least recently used entries until the rest fit SIZE: 500m, 2GiB.",
        show_default=False,
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would go."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Remove fork cache entries (at least one of --all, --older-than, --to).

    Nothing else needs pruning by hand: each new entry keeps the cache within
    OMNILAB_FORK_CACHE_SIZE by removing the least recently used ones, and a changed
    production item is never served from an old entry (its checksum names the entry), so
    pruning only frees disk. A fork under way is not disturbed: an entry being restored
    is removed once the restore is done.

    Examples:

      omnilab cache prune --older-than 7d

      omnilab cache prune --to 2GiB --dry-run

      omnilab cache prune --all
    """
    from omnilab.config import get_settings
    from omnilab.services.fork_cache import ForkCache

    if not everything and older_than is None and to is None:
        raise UsageError("say what to remove: --all, --older-than AGE or --to SIZE")
    age = _age(older_than) if older_than is not None else None
    size = _size(to) if to is not None else None
    settings = get_settings()
    cache = ForkCache(settings.fork_cache_folder, settings.fork_cache_bytes)
    removed = cache.prune(everything=everything, older_than=age, to_size=size, dry_run=dry_run)
    if json_output:
        render.print_json({"dry_run": dry_run, "removed": [e.to_dict() for e in removed]})
        return
    verb = "would remove" if dry_run else "removed"
    for e in removed:
        render.out.print(
            escape(
                f"{verb} {e.service} {e.label} ({_checksum(e.meta.get('checksum'))}, "
                f"{_human(e.size)}, last used {_when(e.last_used)})"
            ),
            highlight=False,
            soft_wrap=True,
        )
    freed = sum(e.size for e in removed)
    left = cache.entries()
    render.err.print(
        f"{verb} {len(removed)} entries ({_human(freed)}); "
        f"{len(left)} left ({_human(sum(e.size for e in left))})",
        highlight=False,
    )

"""The runs table's query: filters, sort and page read from the URL (so a view can be
shared), checked one by one, each problem one line the page shows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import get_args

from omnilab.tracking.queries import RUN_SORTS, RunFilter
from omnilab.tracking.records import TAG_PATTERN, RunStatus

EXPERIMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
KEY = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
STATUSES: tuple[str, ...] = get_args(RunStatus)
MAX_PAGE = 1_000_000
MAX_PER_PAGE = 500
PER_PAGE = 50


@dataclass
class RunsQuery:
    wanted: RunFilter = field(default_factory=RunFilter)
    sort: str = "created"
    order: str = "desc"
    page: int = 1
    per_page: int = PER_PAGE
    problems: list[str] = field(default_factory=list)
    #: The query as given, minus what was refused: what links keep.
    pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _date(name: str, text: str) -> datetime:
    """An ISO date or date-time; naive ones are UTC. ``until`` of a bare date includes
    that day."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if name == "until" and len(text) == 10:
        value += timedelta(days=1)
    return value


def _whole(name: str, text: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise ValueError(f"{name}={text[:40]!r}: give a whole number from {low} to {high:,}")
    return int(text)


def parse(pairs: list[tuple[str, str]]) -> RunsQuery:
    """The runs table's query from the URL's (name, value) pairs; a value that cannot be
    used is left out and named in ``problems``."""
    query = RunsQuery()
    wanted = query.wanted
    for name, value in pairs:
        kept = True
        try:
            if value == "" and name != "page":
                continue  # an empty field of the filter form: no filter
            if name == "experiment":
                if not EXPERIMENT.match(value):
                    raise ValueError(f"experiment={value[:40]!r} is not an experiment name")
                wanted.experiment = value
            elif name == "status":
                if value not in STATUSES:
                    raise ValueError(f"status={value[:40]!r}: choose one of {', '.join(STATUSES)}")
                wanted.status = value
            elif name == "tag":
                if not re.match(TAG_PATTERN, value):
                    raise ValueError(f"tag={value[:40]!r} is not a tag")
                wanted.tag = value
            elif name in ("since", "until"):
                try:
                    moment = _date(name, value)
                except ValueError:
                    raise ValueError(
                        f"{name}={value[:40]!r} is not a date: use YYYY-MM-DD or "
                        "YYYY-MM-DDTHH:MM[:SS]"
                    ) from None
                setattr(wanted, name, moment)
            elif name.startswith(("param.", "summary.")):
                group, _, key = name.partition(".")
                if not KEY.match(key) or len(value) > 1000 or "\x00" in value:
                    raise ValueError(f"{name[:60]!r}: a {group} name and a value, on one line")
                (wanted.params if group == "param" else wanted.summary)[key] = value
            elif name == "sort":
                group, _, key = value.partition(".")
                if value not in RUN_SORTS and not (
                    group in ("param", "summary", "metric") and KEY.match(key)
                ):
                    known = ", ".join([*RUN_SORTS, "param.NAME", "summary.NAME", "metric.NAME"])
                    raise ValueError(f"sort={value[:40]!r}: sort by one of {known}")
                query.sort = value
            elif name == "order":
                if value not in ("asc", "desc"):
                    raise ValueError(f"order={value[:40]!r}: asc or desc")
                query.order = value
            elif name == "page":
                query.page = _whole("page", value, 1, MAX_PAGE)
            elif name == "per_page":
                query.per_page = _whole("per_page", value, 1, MAX_PER_PAGE)
            else:
                kept = False  # unknown names are ignored (and not carried in links)
        except ValueError as exc:
            query.problems.append(str(exc))
            kept = False
        if kept:
            query.pairs.append((name, value))
    return query

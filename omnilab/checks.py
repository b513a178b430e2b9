"""One line of ``omnilab doctor``: what each plug-in (runtime, service) reports about
this machine. Kept at the bottom of the layers so runtimes and services can return
checks without reaching up to the command that prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: ``ok``; ``warn``: works, degraded, or needed only by some commands; ``problem``:
#: something a run needs is broken (the command then exits non-zero).
Status = Literal["ok", "warn", "problem"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

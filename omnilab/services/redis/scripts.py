"""The Lua scripts Redis promotion runs inside the servers, kept as ``.lua`` files in
``scripts/`` (package data) so they can be read, linted and diffed as Lua.

A script may start with ``--! include NAME`` lines: NAME's text is put before it (its
own includes first, each once). Each file's comment says what it does; in short:

- ``unordered``: the order-free digest of a set's or a hash's elements (shared);
- ``key_digest``: one key's digest from its DUMP (shared by the next two);
- ``fast_digest``: the digest of a batch of keys;
- ``dump``: a batch's payloads and TTLs for RESTORE, with their digest from the same reads;
- ``restore``: RESTORE a batch under the staged names;
- ``restore_digest``: a fork's RESTORE of a batch in the run's Redis, and its fast digest;
- ``elements_digest``: the digest that ignores the encoding (element by element);
- ``switch``: the atomic switch (renames, undone if production is not as planned);
- ``rename``: renames of (from, to) pairs, for switching back.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r"--! include (\w+)\n")


def _read(name: str) -> str:
    return (resources.files(__package__) / "scripts" / f"{name}.lua").read_text()


@cache
def text(name: str) -> str:
    """The full text of script ``name``, its includes first."""
    body = _read(name)
    parts: list[str] = []
    seen: set[str] = set()

    def add(script: str, content: str) -> None:
        for match in _INCLUDE.finditer(content):
            included = match.group(1)
            if included not in seen:
                seen.add(included)
                add(included, _read(included))
        parts.append(_INCLUDE.sub("", content))

    add(name, body)
    return "".join(parts)


FAST_DIGEST = text("fast_digest")
DUMP = text("dump")
RESTORE = text("restore")
RESTORE_DIGEST = text("restore_digest")
ELEMENTS_DIGEST = text("elements_digest")
SWITCH = text("switch")
RENAME = text("rename")

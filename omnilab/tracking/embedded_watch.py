"""Stops the embedded tracking store once its last user is gone, however it went.

``python -m omnilab.tracking.embedded_watch HOME``: started by the first user of a
server (:meth:`EmbeddedPostgres.acquire`), in a session of its own, it blocks on the
users' lock until no process holds it, then stops the server and exits. A user that
exits normally stops the server itself; this one matters when the last user was
SIGKILLed, or its kernel crashed, and nothing else would ever stop it (the next omnilab
command would only reuse it). Its outcome goes to ``HOME/pg.log``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omnilab.tracking.embedded import EmbeddedPostgres


def main(argv: list[str]) -> int:
    home = Path(argv[0])
    outcome = EmbeddedPostgres(home).watch()
    try:
        with open(home / "pg.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} omnilab watcher: {outcome}\n")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""omnilab's side of bench/artifacts.py, in a process of its own as ``aws`` runs in its
own: what a run does with its files when it ends, and what ``omnilab runs get`` does to
read them back, through :mod:`omnilab.artifacts` and the store ``OMNILAB_ARTIFACTS_URL``
names (credentials and endpoint from the AWS variables).

    python bench/_artifacts_side.py upload RUN_ID RUN_DIR MANIFEST
    python bench/_artifacts_side.py download MANIFEST DEST

``upload`` sends the run's artifacts (computing each one's sha256, as a run records it)
and writes the manifest (key, path, size, sha256); ``download`` fetches the manifest's
files under DEST, each checked against its sha256. Prints one JSON line: files, bytes,
seconds inside the process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    began = time.perf_counter()
    from omnilab import artifacts

    # What `aws` does before it transfers anything too: imports, its client made.
    store = artifacts.store_at(os.environ["OMNILAB_ARTIFACTS_URL"])
    store.connect()
    imported = time.perf_counter()
    action = sys.argv[1]
    if action == "upload":
        run_id, run_dir, manifest = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        files = artifacts.run_files(run_id, run_dir)
        sent = store.put(files)
        prefix = f"{run_id}/artifacts/"
        rows = [
            {"key": f.key, "path": f.key[len(prefix) :], "size": f.size, "sha256": f.sha256}
            for f in sent
        ]
        manifest.write_text(json.dumps(rows))
    elif action == "download":
        rows = json.loads(Path(sys.argv[2]).read_text())
        dest = Path(sys.argv[3])
        store.get(
            [artifacts.Wanted(r["key"], dest / r["path"], r["sha256"], r["size"]) for r in rows]
        )
    else:
        sys.exit(f"unknown action {action!r}: upload or download")
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "files": len(rows),
                "bytes": sum(r["size"] for r in rows),
                "start_s": imported - began,
                "s": done - imported,
            }
        )
    )


if __name__ == "__main__":
    main()

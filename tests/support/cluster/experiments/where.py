"""Says which host ran it: in its log, in an artifact and in its summary."""

import time

from omnilab import Experiment, Params
from omnilab.host import host_name


class Where(Experiment):
    """Print `lines` lines, `pause` seconds apart, then write `host.txt`."""

    gpu = False

    class Params(Params):
        lines: int = 3
        pause: float = 0.0

    def run(self, ctx):
        host = host_name()
        for i in range(ctx.params.lines):
            print(f"line {i} on {host}", flush=True)
            time.sleep(ctx.params.pause)
        (ctx.artifacts_dir / "host.txt").write_text(host)
        return {"host": host}

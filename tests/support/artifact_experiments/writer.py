"""Writes artifacts (a nested text file, a binary one, `files` more) and prints `lines`
lines; with `fail`, raises after writing them, so a failed run has files to keep too."""

import time

from omnilab import Experiment, Params


def blob(size: int) -> bytes:
    """The same bytes every time: a test knows what the store must hold."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


class Writer(Experiment):
    gpu = False

    class Params(Params):
        lines: int = 3
        size: int = 1000
        files: int = 0
        pause: float = 0.0
        fail: bool = False

    def run(self, ctx):
        for i in range(ctx.params.lines):
            print(f"line {i}", flush=True)
        (ctx.artifacts_dir / "plots").mkdir()
        (ctx.artifacts_dir / "plots" / "curve.csv").write_text("a,b\n1,2\n")
        (ctx.artifacts_dir / "blob.bin").write_bytes(blob(ctx.params.size))
        for i in range(ctx.params.files):
            many = ctx.artifacts_dir / "many"
            many.mkdir(exist_ok=True)
            (many / f"{i:04d}.txt").write_text(f"file {i}\n")
        time.sleep(ctx.params.pause)
        if ctx.params.fail:
            raise RuntimeError("failed on purpose, after writing its artifacts")
        return {"lines": ctx.params.lines}

"""Two experiments in one file: the CLI needs FILE:Class. The second one talks: on its
own stdout and through a child process's."""

import subprocess
import sys

from omnilab import Experiment, Params


class First(Experiment):
    gpu = False

    def run(self, ctx):
        return {"which": "first"}


class Second(Experiment):
    gpu = False

    class Params(Params):
        label: str = "x"
        sizes: list[int] = [1, 2]
        ratio: float = 0.5
        flag: bool = False

    def run(self, ctx):
        print(f"second: label {ctx.params.label}")
        sys.stdout.flush()
        subprocess.run(["echo", "second: a child's line"], check=True)
        return {"which": "second", **ctx.params.model_dump()}

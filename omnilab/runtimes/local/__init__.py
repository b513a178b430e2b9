"""The local runtime: services as child processes of the stack's owner (or embedded)."""

from omnilab.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]

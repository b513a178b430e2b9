"""Exceptions omnilab raises on purpose.

Every error a user can cause or fix derives from :class:`OmnilabError` and carries a
one-line message that names the problem; the CLI prints that line and exits with the
error's ``exit_code`` instead of showing a traceback.
"""

from __future__ import annotations


class OmnilabError(Exception):
    """Base class: a problem omnilab can explain in one line."""

    exit_code = 1


class UsageError(OmnilabError):
    """Bad input from the user: a file, a name, a parameter, an option (exit status 2)."""

    exit_code = 2


class ExperimentLoadError(UsageError):
    """The experiment file is missing, does not import, or holds no usable Experiment."""


class ParamsError(UsageError):
    """``-p`` values (or ``params=``) that the experiment's Params model rejects."""


class ServiceUnavailable(UsageError):
    """A service the experiment declares cannot be provided by the chosen runtime.

    Raised before anything starts, so nothing is left half-running.
    """


class RuntimeUnavailable(UsageError):
    """The requested runtime (a runtime plug-in: local, docker...) cannot run on this machine."""


class StackStartError(OmnilabError):
    """A service was started but never became ready; the stack has been removed."""


class RunNotFound(UsageError):
    """A run id (or prefix) that matches no run, or more than one."""


class TrackingStoreError(OmnilabError):
    """The tracking store (PostgreSQL) cannot be reached or migrated."""


class TrackingUrlError(TrackingStoreError, UsageError):
    """The tracking store's URL cannot be parsed: bad input (exit status 2)."""

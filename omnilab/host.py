"""This host's name, as every other host of a deployment knows it.

One function rather than ``host_name()`` everywhere: kept stack data, stacks,
workers and promotions are owned by a host, and on several hosts the names must agree.
``OMNILAB_HOST`` overrides the system's name where it is not unique or not stable (two
containers from one image with the same hostname, a laptop whose name follows the network).
"""

from __future__ import annotations

import os
import socket


def host_name() -> str:
    """``OMNILAB_HOST`` if set, else the system's host name."""
    return os.environ.get("OMNILAB_HOST", "").strip() or socket.gethostname()

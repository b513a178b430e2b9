"""Whether code runs inside a Jupyter kernel (where HTML output is shown)."""

from __future__ import annotations

import sys


def in_jupyter_kernel() -> bool:
    """True in an ipykernel (JupyterLab, Notebook, VS Code...); False in a plain
    Python process or a terminal IPython, where HTML would print as text."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)

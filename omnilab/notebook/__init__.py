"""omnilab in Jupyter: live progress, run cards, run tables, comparisons.

- :func:`runs` lists past runs as a table (a list of :class:`~omnilab.Run`);
- :func:`compare` puts runs side by side with their metrics overlaid;
- a :class:`~omnilab.Run` shows as a card with its metrics charted over steps
  (``Run._repr_html_``), and ``run.metrics`` is a pandas DataFrame;
- inside a kernel, progress is a live panel (:class:`NotebookReporter`).

Charts are inline SVG built without a plotting library; pandas is only needed for
DataFrames (``pip install 'omnilab[notebook]'``).
"""

from omnilab.notebook.charts import Figure
from omnilab.notebook.compare import Comparison, compare
from omnilab.notebook.detect import in_jupyter_kernel
from omnilab.notebook.frames import MissingDependency
from omnilab.notebook.reporter import NotebookReporter
from omnilab.notebook.runs import RunTable, runs

__all__ = [
    "Comparison",
    "Figure",
    "MissingDependency",
    "NotebookReporter",
    "RunTable",
    "compare",
    "in_jupyter_kernel",
    "runs",
]

"""Imports Experiment but defines none."""

from omnilab import Experiment  # noqa: F401

VALUE = 1

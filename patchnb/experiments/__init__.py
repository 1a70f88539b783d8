"""Every experiment recipe of the book, one module per chapter or artifact family.

Each module has a validated ``Config`` (``Config.preset(scale, **overrides)`` reads its ``PRESETS``
table) and ``run(cfg) -> Result`` (tables, figures, text and numbers for the page). See
:mod:`patchnb.experiments.base` for the shape they share and :mod:`patchnb.experiments.result` for
:class:`~patchnb.experiments.result.Result`. This package file imports neither page code nor runs: it is in
the import closure of every cached run.
"""

from .base import SCALES, ExperimentConfig

__all__ = ["SCALES", "ExperimentConfig"]

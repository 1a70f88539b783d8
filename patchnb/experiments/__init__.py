"""Every experiment recipe of the book, one module per chapter or artifact family.

Each module has a validated ``Config`` (``Config.preset(scale, **overrides)`` reads its ``PRESETS``
table) and ``run(cfg) -> Result`` (tables, figures, text and numbers for the page). See
:mod:`patchnb.experiments.base` for the shape they share.
"""

from .base import SCALES, ExperimentConfig, Result, sweep_budget

__all__ = ["SCALES", "ExperimentConfig", "Result", "sweep_budget"]

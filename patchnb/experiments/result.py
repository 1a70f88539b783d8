"""What a recipe returns for its page (:class:`Result`) and budget sweeps over any recipe.

Page code: the cached runs never import it (``tests/test_cache_boundary.py``), so a change to how a page
is glued re-trains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .base import ExperimentConfig


@dataclass
class Result:
    """What a recipe returns for its page: ``tables`` (DataFrames), ``figures`` (matplotlib), ``text``
    (pre-formatted strings and verdict words the prose cites) and ``numbers`` (raw floats, for tests,
    the claims ledger and page-specific plots), plus ``runs``: the cached raw records."""

    config: ExperimentConfig
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    runs: Any = None

    def glue(self, prefix: str = "") -> Result:
        """Glue every table, figure and text under its name (``prefix`` + name) for the page; outside
        batch mode the tables and figures are also displayed. Returns ``self``."""
        from .. import book

        for name, frame in self.tables.items():
            book.glue_table(prefix + name, frame)
        for name, fig in self.figures.items():
            book.glue_figure(prefix + name, fig)
        for name, text in self.text.items():
            book.glue_text(prefix + name, text)
        return self

    def _repr_html_(self) -> str:  # a bare `result` at the end of a cell in JupyterLab shows its tables
        return "".join(f"<h4>{name}</h4>{frame.to_html()}" for name, frame in self.tables.items())


def sweep_budget(run, cfg: ExperimentConfig, fractions=(0.25, 0.5, 1.0)) -> list[tuple[float, Result]]:
    """``run`` at several fractions of ``cfg``'s budget (``cfg.BUDGET``): ``[(fraction, result), ...]``.
    Every point is a full run of the recipe (cached), so the curve costs what its points cost."""
    fr = sorted(set(float(f) for f in fractions))
    if not fr or any(not (0 < f <= 1) or math.isnan(f) for f in fr):
        raise ValueError(f"fractions must be numbers in (0, 1], got {fractions!r}")
    return [(f, run(cfg.at_budget(f))) for f in fr]

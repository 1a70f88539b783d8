"""Verdicts on a paper's claim that admit when the budget cannot decide.

A claim compares two things (variant ``a`` against variant ``b``, or ``a`` against a fixed threshold)
and is checked on runs at several budgets (training images or epochs) and seeds. The rule, the same
everywhere in the book:

* **holds** when the difference ``a - b`` has the claimed sign at the two largest budgets *and* exceeds
  twice its standard error over seeds at the largest budget;
* **does not hold** when the opposite sign passes the same test;
* **not settled at this budget** otherwise: the curves disagree between the two largest budgets, or the
  gap is within two standard errors (one seed gives no standard error, so it never settles a claim).

The standard error is that of the mean difference: over paired seeds (the same seeds for ``a`` and
``b``) the standard deviation of the per-seed differences over sqrt(n); otherwise
sqrt(s_a^2 / n_a + s_b^2 / n_b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HOLDS = "holds"
FAILS = "does not hold"
UNSETTLED = "not settled at this budget"
VERDICTS = (HOLDS, FAILS, UNSETTLED)
MIN_BUDGETS = 3


def check_budget_fractions(fractions, of: str) -> None:
    """A page's ``budget_fractions``: a tuple of at least :data:`MIN_BUDGETS` distinct numbers in (0, 1], one of
    them 1 (the page's own budget); ``of`` names what they are fractions of, for the error."""
    fr = fractions
    if (not isinstance(fr, tuple) or len(fr) < MIN_BUDGETS or len(set(fr)) != len(fr)
            or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 for f in fr)
            or max(fr) != 1):
        raise ValueError(f"budget_fractions={fr!r} must be at least {MIN_BUDGETS} distinct fractions of {of} in "
                         f"(0, 1], one of them 1 (the page's budget), e.g. (0.25, 0.5, 1.0)")


@dataclass(frozen=True)
class Verdict:
    """The verdict word and what it was decided from (differences and standard errors per budget)."""

    word: str
    budgets: tuple[float, ...]
    diffs: tuple[float, ...]
    stderrs: tuple[float, ...]
    claimed: str

    def __str__(self) -> str:
        return self.word

    def gap(self, scale: float = 100.0, digits: int = 1, unit: str = " points") -> str:
        """The difference at the largest budget, ``"+1.2 ± 0.4 points"`` (± two standard errors), or
        ``"+1.2 points (one seed: no error bar)"``."""
        d, se = self.diffs[-1] * scale, self.stderrs[-1] * scale
        if math.isfinite(se):
            return f"{d:+.{digits}f} ± {2 * se:.{digits}f}{unit}"
        return f"{d:+.{digits}f}{unit} (one seed: no error bar)"

    def crossing(self) -> float | None:
        """Where the curve suggests the claimed sign would be reached: the budget at which the straight line
        through the differences at the two largest budgets, on a log-budget axis, crosses 0. ``None`` when
        the claimed sign is already there, or the line does not move toward it (flat or moving away). An
        extrapolation of two points, not a measurement."""
        (b1, b2), (d1, d2) = self.budgets[-2:], self.diffs[-2:]
        want = 1.0 if self.claimed == "greater" else -1.0
        slope = (d2 - d1) / (math.log(b2) - math.log(b1))
        if want * d2 > 0 or want * slope <= 0:
            return None
        return b2 * math.exp(-d2 / slope)

    def crossing_text(self, unit: str = "training images") -> str:
        """:meth:`crossing` in words, for the pages' "how far would it have to go"."""
        at = self.crossing()
        if at is None:
            if (1.0 if self.claimed == "greater" else -1.0) * self.diffs[-1] > 0:
                return "the largest budget already has the claimed sign"
            return "the curve does not move toward the claim between the two largest budgets: no extrapolation"
        return (f"the straight line through the two largest budgets (on a log axis) reaches it at about "
                f"{at:,.0f} {unit}, {at / self.budgets[-1]:.1f}x the largest budget here (an extrapolation, "
                f"not a measurement)")


def _values(v, where: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{where} must be a non-empty list of finite numbers, got {v!r}")
    return a


def difference(a, b, paired: bool) -> tuple[float, float]:
    """Mean of ``a - b`` and its standard error (``inf`` when it cannot be estimated: one seed).
    ``b`` may be a number (a threshold)."""
    a = _values(a, "a")
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        diff = a - float(b)
        se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
        return float(diff.mean()), float(se)
    b = _values(b, "b")
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired comparison needs as many values of a as of b, got {len(a)} and {len(b)}")
        diff = a - b
        se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
        return float(diff.mean()), float(se)
    if len(a) < 2 or len(b) < 2:
        return float(a.mean() - b.mean()), math.inf
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(a.mean() - b.mean()), float(se)


def budget_verdict(budgets: Sequence[float], a: Sequence[Sequence[float]], b, claimed: str = "greater",
                   paired: bool = True) -> Verdict:
    """Decide a claim from runs at several budgets.

    ``budgets``: the budget of each point (increasing after sorting; at least three points).
    ``a``: per budget, the metric of variant ``a`` over seeds. ``b``: the same for variant ``b``, or one
    number (a threshold), or one number per budget. ``claimed``: ``"greater"`` (a > b) or ``"less"``.
    ``paired``: the seeds of ``a`` and ``b`` at a budget are the same seeds in the same order.
    """
    if claimed not in ("greater", "less"):
        raise ValueError(f"claimed={claimed!r} is not supported; allowed values: 'greater', 'less'")
    budgets = [float(x) for x in budgets]
    if len(budgets) < MIN_BUDGETS:
        raise ValueError(f"a verdict needs runs at >= {MIN_BUDGETS} budgets, got {len(budgets)}: {budgets}")
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"budgets must be distinct, got {budgets}")
    if len(a) != len(budgets):
        raise ValueError(f"a has {len(a)} budget points but budgets has {len(budgets)}")
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        b = [b] * len(budgets)
    if len(b) != len(budgets):
        raise ValueError(f"b has {len(b)} budget points but budgets has {len(budgets)}")
    order = np.argsort(budgets)
    stats = [difference(a[i], b[i], paired) for i in order]
    diffs = tuple(d for d, _ in stats)
    ses = tuple(s for _, s in stats)
    sign = 1.0 if claimed == "greater" else -1.0
    word = UNSETTLED
    for direction, verdict in ((sign, HOLDS), (-sign, FAILS)):
        if all(direction * d > 0 for d in diffs[-2:]) and direction * diffs[-1] > 2 * ses[-1]:
            word = verdict
    return Verdict(word, tuple(budgets[i] for i in order), diffs, ses, claimed)


def budget_figure(budgets: Sequence[float], curves: dict[str, Sequence[Sequence[float]]], xlabel: str,
                  ylabel: str = "test accuracy (%)", scale: float = 100.0, title: str | None = None, ax=None):
    """The book's one style of budget curve: the metric (mean over seeds, error bars: one standard
    deviation) of each variant against the budget, on a log x axis."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, per_budget in curves.items():
        means = [float(np.mean(v)) * scale for v in per_budget]
        stds = [float(np.std(v, ddof=1)) * scale if len(v) > 1 else 0.0 for v in per_budget]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(list(budgets))
    ax.set_xticklabels([f"{b:,.0f}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure

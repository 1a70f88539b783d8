"""The book's claims: budget curves over seeds, one rule with a stated error rate, one figure.

A claim compares two things (variant ``a`` against variant ``b``, paired by seed, or ``a`` against a
fixed threshold) on runs at several budgets (training images or epochs) and seeds. The rule, the same
for every claim of the book, is a test at level :data:`ALPHA`:

* At the **largest budget**, the mean difference ``d`` of ``a - b`` over seeds is divided by its standard
  error ``s``: over paired seeds the standard deviation of the per-seed differences over sqrt(n) with
  n - 1 degrees of freedom (Student's paired t-test); against a threshold the same for ``a - threshold``;
  unpaired, Welch's t-test (Welch-Satterthwaite degrees of freedom).
* With ``n_eval`` (the number of test images an accuracy was measured on) ``s`` also carries the test
  split's own sampling error, which every seed shares and no number of seeds averages away:
  ``s^2 = s_seeds^2 + e^2`` with ``e^2 = min(err_a + err_b, 1) / n_eval`` for two accuracies on the same
  images (the variance of a paired difference of accuracies is at most the rate at which the two disagree,
  and that is at most the sum of their error rates) and ``e^2 = p (1 - p) / n_eval`` against a threshold.
  A difference of one test image equal on every seed therefore never decides.
* **holds** when ``d / s`` exceeds the one-sided ``1 - ALPHA / 2`` quantile of Student's t in the claimed
  direction *and* the mean difference at the second-largest budget has the same sign (the curve agrees);
  **does not hold** when the same test passes in the other direction; **not settled at this budget**
  otherwise. Each direction is tested at ``ALPHA / 2``, so when there is no true difference the chance of
  *any* decisive word is at most ``ALPHA`` whatever the number of seeds; the agreement condition only
  removes decisions. One seed, or seeds whose differences are all equal with no ``n_eval``, give no
  estimate of the noise and never decide.

Families of claims are corrected: :func:`holm` (Holm's step-down over a page's list of claims) and
:func:`all_of` ("every method beats random": it holds when every member holds, an intersection-union test
at level ``ALPHA``, and does not hold when at least one member does not hold after Holm's correction).
:func:`decide` adds seeds only to the claims still undecided (a group-sequential design whose looks share
``ALPHA`` equally, Bonferroni, so the error rate stays at most ``ALPHA``). :func:`null_decisive_rate` and
:func:`power` simulate the rule; the test suite asserts the first against ``ALPHA`` and the book's
"How a verdict is decided" page states both.

Meaning of ±, one for the whole book: a *value* is written ``mean ± sd`` (one standard deviation over
seeds, :func:`mean_sd`); a *gap* (a difference a claim is decided on) is written with its confidence
interval at the level of the test, "``+1.2 points (95 % CI +0.3 to +2.1)``" (:meth:`Verdict.gap`).

This module is page code: no cached run imports it, so changing the rule, a figure or a sentence
re-decides and re-draws without re-training (``tests/test_cache_boundary.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from .base import MIN_BUDGETS

HOLDS = "holds"
FAILS = "does not hold"
UNSETTLED = "not settled at this budget"
VERDICTS = (HOLDS, FAILS, UNSETTLED)
ALPHA = 0.05  # the chance of any decisive word ("holds" or "does not hold") when there is no true difference
POWER = 0.8  # the power at which a page states the smallest difference its seeds could detect


@dataclass(frozen=True)
class Verdict:
    """The verdict word and what it was decided from.

    ``diffs`` / ``stderrs``: per budget (increasing), the mean difference and its standard error over seeds
    (``inf`` for one seed). ``se``, ``df``: the standard error used by the test at the largest budget (with
    the test split's sampling error when ``n_eval`` was given) and its degrees of freedom. ``p``: the
    two-sided p-value of the largest budget's difference (1 when the curve disagrees or no noise estimate
    exists). ``level``: the two-sided level the word was decided at (``ALPHA``, or less after a correction
    or at a sequential look). ``family``: how many claims a correction was over (1: none). ``seeds``: the
    seeds at the largest budget. ``reason``: why it is not settled, in words ("" when decided)."""

    word: str
    budgets: tuple[float, ...]
    diffs: tuple[float, ...]
    stderrs: tuple[float, ...]
    claimed: str
    se: float = math.inf
    df: float = math.nan
    p: float = 1.0
    level: float = ALPHA
    family: int = 1
    seeds: int = 0
    reason: str = ""
    agrees: bool = False

    def __str__(self) -> str:
        return self.word

    @property
    def sign(self) -> float:
        """+1 when the claim is ``a > b``, -1 when ``a < b``."""
        return 1.0 if self.claimed == "greater" else -1.0

    def critical(self, level: float | None = None) -> float:
        """The t quantile a decisive difference must exceed (in standard errors), at two-sided ``level``."""
        if not math.isfinite(self.se) or not self.df > 0:
            return math.inf
        return float(stats.t.ppf(1 - (self.level if level is None else level) / 2, self.df))

    def interval(self) -> tuple[float, float]:
        """The confidence interval of the difference at the largest budget, at the verdict's level."""
        h = self.critical() * self.se
        return self.diffs[-1] - h, self.diffs[-1] + h

    def detectable(self) -> float:
        """The smallest true difference the rule would call decisive with probability :data:`POWER`, at this
        noise (the standard error measured) and these seeds: ``(t_{1-level/2} + t_{POWER}) * se``."""
        if not math.isfinite(self.se) or not self.df > 0:
            return math.inf
        return (self.critical() + float(stats.t.ppf(POWER, self.df))) * self.se

    def gap(self, scale: float = 100.0, digits: int = 1, unit: str = " points") -> str:
        """The difference at the largest budget with its confidence interval at the verdict's level:
        ``"+1.2 points (95 % CI +0.3 to +2.1)"``; without a noise estimate ``"+1.2 points (one seed: no
        interval)"``."""
        d = self.diffs[-1] * scale
        if not math.isfinite(self.se):
            why = "one seed" if self.seeds < 2 else "no spread over seeds"
            return f"{d:+.{digits}f}{unit} ({why}: no interval)"
        lo, hi = (x * scale for x in self.interval())
        return f"{d:+.{digits}f}{unit} ({_percent(1 - self.level)} CI {lo:+.{digits}f} to {hi:+.{digits}f})"

    def detectable_text(self, scale: float = 100.0, digits: int = 1, unit: str = " points") -> str:
        """:meth:`detectable` in words, for the pages' "what these seeds could have seen"."""
        m = self.detectable()
        if not math.isfinite(m):
            return "no difference (these runs give no estimate of the noise)"
        return (f"{m * scale:.{digits}f}{unit} (a true difference this large is called decisive "
                f"{POWER:.0%} of the time with {self.seeds} seeds at this noise)")

    def curve_text(self, scale: float = 100.0, digits: int = 1, unit: str = " points",
                   budget_unit: str = "training images") -> str:
        """The difference at every budget, ``"+0.5, +1.0, +1.2 points at 250, 500, 1,000 training images"``."""
        ds = ", ".join(f"{d * scale:+.{digits}f}" for d in self.diffs)
        return f"{ds}{unit} at {', '.join(f'{b:,.0f}' for b in self.budgets)} {budget_unit}"

    def crossing(self) -> float | None:
        """Where the curve suggests the claimed sign would be reached: the budget at which the straight line
        through the mean differences at the two largest budgets, on a log-budget axis, crosses 0. ``None``
        when the claimed sign is already there, or the line does not move toward it. An extrapolation of two
        points (:meth:`crossing_range` carries their error)."""
        return _crossing(self.budgets[-2:], self.diffs[-2:], self.sign)

    def crossing_range(self) -> tuple[float, float] | None:
        """The crossings of the lines through the two largest budgets' confidence intervals (each end
        moved by its own interval at the verdict's level): ``(earliest, latest)``, ``latest = inf`` when
        some line within the error does not move toward the claim; ``None`` with no crossing."""
        if self.crossing() is None or not all(math.isfinite(s) for s in self.stderrs[-2:]):
            return None
        t = self.critical()
        if not math.isfinite(t):
            return None
        (d1, d2), (s1, s2) = self.diffs[-2:], self.stderrs[-2:]
        found = [_crossing(self.budgets[-2:], (d1 + e1 * t * s1, d2 + e2 * t * s2), self.sign)
                 for e1 in (-1, 1) for e2 in (-1, 1)]
        finite = [x for x in found if x is not None]
        return (min(finite) if finite else math.inf), (max(finite) if len(finite) == 4 else math.inf)

    def crossing_text(self, unit: str = "training images", available: float | None = None) -> str:
        """:meth:`crossing` in words with its range, and, with ``available`` (the most this data has of the
        budget, e.g. the training split's size), whether it lies beyond the data."""
        at = self.crossing()
        if at is None:
            if self.sign * self.diffs[-1] > 0:
                return "the largest budget already has the claimed sign"
            return "the curve does not move toward the claim between the two largest budgets: no extrapolation"
        text = (f"the straight line through the two largest budgets (on a log axis) reaches it at about "
                f"{at:,.0f} {unit}, {at / self.budgets[-1]:.1f}x the largest budget here")
        rng = self.crossing_range()
        if rng is not None:
            hi = "no bound" if not math.isfinite(rng[1]) else f"{rng[1]:,.0f}"
            text += f" (anywhere from {rng[0]:,.0f} to {hi} within the two points' {_percent(1 - self.level)} CIs)"
        if available is not None and at > available:
            text += f", beyond the {available:,.0f} {unit} this data has"
        return text + "; an extrapolation, not a measurement"

    def glue(self, name: str, scale: float = 100.0, digits: int = 1, unit: str = " points",
             budget_unit: str = "training images", available: float | None = None) -> dict[str, str]:
        """What every page cites of claim ``name``, under the same names everywhere: ``name`` (the word),
        ``name_gap`` (:meth:`gap`), ``name_reach`` (:meth:`crossing_text`), ``name_curve``
        (:meth:`curve_text`), ``name_detectable`` (:meth:`detectable_text`) and ``name_test`` (how it was
        decided: seeds, level, correction)."""
        fam = f", Holm-corrected over {self.family} claims" if self.family > 1 else ""
        test = (f"{self.seeds} seeds, paired t-test at the largest budget at level {self.level:.3g} "
                f"(two-sided){fam}") if self.seeds else "no runs"
        return {name: self.word, f"{name}_gap": self.gap(scale, digits, unit),
                f"{name}_reach": self.crossing_text(budget_unit, available),
                f"{name}_curve": self.curve_text(scale, digits, unit, budget_unit),
                f"{name}_detectable": self.detectable_text(scale, digits, unit), f"{name}_test": test}


def _percent(x: float) -> str:
    return f"{100 * x:.4g} %"


def _crossing(budgets, diffs, want: float) -> float | None:
    (b1, b2), (d1, d2) = budgets, diffs
    slope = (d2 - d1) / (math.log(b2) - math.log(b1))
    if want * d2 > 0 or want * slope <= 0:
        return None
    return b2 * math.exp(-d2 / slope)


def _values(v, where: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{where} must be a non-empty list of finite numbers, got {v!r}")
    return a


def _threshold(b) -> bool:
    return isinstance(b, (int, float, np.floating)) and not isinstance(b, bool)


def difference(a, b, paired: bool) -> tuple[float, float]:
    """Mean of ``a - b`` over seeds and its standard error (``inf`` when it cannot be estimated: one seed).
    ``b`` may be a number (a threshold)."""
    d, se, _ = _difference(a, b, paired)
    return d, se


def _difference(a, b, paired: bool) -> tuple[float, float, float]:
    """Mean difference, its standard error over seeds and the degrees of freedom."""
    a = _values(a, "a")
    if _threshold(b) or paired:
        if not _threshold(b):
            b = _values(b, "b")
            if len(a) != len(b):
                raise ValueError(f"paired comparison needs as many values of a as of b, got {len(a)} and {len(b)}")
        diff = a - (float(b) if _threshold(b) else b)
        if len(diff) < 2:
            return float(diff.mean()), math.inf, math.nan
        return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))), len(diff) - 1.0
    b = _values(b, "b")
    if len(a) < 2 or len(b) < 2:
        return float(a.mean() - b.mean()), math.inf, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2.0
    return float(a.mean() - b.mean()), float(se), float(df)


def sampling_error(a, b, n_eval: int) -> float:
    """The standard error a test split of ``n_eval`` images adds to a difference of accuracies (or to an
    accuracy against a threshold ``b``), shared by every seed: see the module docstring."""
    pa = float(np.mean(a))
    if not 0 <= pa <= 1:
        raise ValueError(f"n_eval is for accuracies in [0, 1], but a averages {pa:g}")
    if _threshold(b):
        return math.sqrt(pa * (1 - pa) / n_eval)
    pb = float(np.mean(b))
    if not 0 <= pb <= 1:
        raise ValueError(f"n_eval is for accuracies in [0, 1], but b averages {pb:g}")
    return math.sqrt(min((1 - pa) + (1 - pb), 1.0) / n_eval)


def budget_verdict(budgets: Sequence[float], a: Sequence[Sequence[float]], b, claimed: str = "greater",
                   paired: bool = True, *, n_eval: int | None = None, alpha: float = ALPHA) -> Verdict:
    """Decide a claim from runs at several budgets, by the rule of the module docstring at two-sided
    level ``alpha``.

    ``budgets``: the budget of each point (any order; at least three distinct points). ``a``: per budget,
    the metric of variant ``a`` over seeds. ``b``: the same for variant ``b``, or one number (a threshold),
    or one number per budget. ``claimed``: ``"greater"`` (a > b) or ``"less"``. ``paired``: the seeds of
    ``a`` and ``b`` at a budget are the same seeds in the same order. ``n_eval``: the number of test
    images the metric (an accuracy in [0, 1]) was measured on, so that the test split's sampling error
    counts; ``None`` for metrics that are not accuracies.
    """
    if claimed not in ("greater", "less"):
        raise ValueError(f"claimed={claimed!r} is not supported; allowed values: 'greater', 'less'")
    if not (isinstance(alpha, float) and 0 < alpha < 1):
        raise ValueError(f"alpha={alpha!r} must be a float in (0, 1), e.g. {ALPHA}")
    if n_eval is not None and (isinstance(n_eval, bool) or not isinstance(n_eval, (int, np.integer)) or n_eval < 1):
        raise ValueError(f"n_eval={n_eval!r} must be the number of test images (a positive int) or None")
    budgets = [float(x) for x in budgets]
    if len(budgets) < MIN_BUDGETS:
        raise ValueError(f"a verdict needs runs at >= {MIN_BUDGETS} budgets, got {len(budgets)}: {budgets}")
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"budgets must be distinct, got {budgets}")
    if len(a) != len(budgets):
        raise ValueError(f"a has {len(a)} budget points but budgets has {len(budgets)}")
    if _threshold(b):
        b = [b] * len(budgets)
    if len(b) != len(budgets):
        raise ValueError(f"b has {len(b)} budget points but budgets has {len(budgets)}")
    order = [int(i) for i in np.argsort(budgets)]
    found = [_difference(a[i], b[i], paired) for i in order]
    diffs = tuple(d for d, _, _ in found)
    ses = tuple(s for _, s, _ in found)
    top = order[-1]
    d, se_seeds, df = found[-1]
    n = len(_values(a[top], "a"))
    se = se_seeds
    if n_eval is not None and math.isfinite(se):
        se = math.sqrt(se ** 2 + sampling_error(a[top], b[top], int(n_eval)) ** 2)
    agrees = d != 0 and np.sign(diffs[-2]) == np.sign(d)
    reason, p = "", 1.0
    if not math.isfinite(se):
        reason = "one seed gives no estimate of the noise"
    elif se == 0:
        se, reason = math.inf, "the seeds' differences are all equal: no estimate of the noise (give n_eval)"
    else:
        p = float(2 * stats.t.sf(abs(d) / se, df))
        if not agrees:
            reason, p = "the curve changes sign between the two largest budgets", 1.0
    verdict = Verdict(UNSETTLED, tuple(budgets[i] for i in order), diffs, ses, claimed, se=se, df=df, p=p,
                      level=alpha, seeds=n, reason=reason, agrees=bool(agrees))
    return _at_level(verdict, alpha)


def _at_level(v: Verdict, level: float, family: int | None = None) -> Verdict:
    """``v`` decided at two-sided ``level``: decisive when its p-value is at most ``level``."""
    word, reason = UNSETTLED, v.reason
    if v.p <= level:
        word, reason = (HOLDS if v.sign * v.diffs[-1] > 0 else FAILS), ""
    elif not reason:
        reason = f"the difference is within the noise (p = {v.p:.2g} > {level:.3g})"
    return replace(v, word=word, level=level, reason=reason, family=v.family if family is None else family)


def holm(verdicts: Mapping[str, Verdict], alpha: float = ALPHA) -> dict[str, Verdict]:
    """Holm's step-down correction over a family of claims (Holm 1979): sorted by p-value, the j-th
    (from 0) is decisive at level ``alpha / (m - j)`` while every smaller one was; the family-wise chance
    of any wrong decisive word stays at most ``alpha``. Each returned verdict records ``family = m`` and
    the level it was decided at."""
    m = len(verdicts)
    if m < 2:
        return dict(verdicts)
    out, going = {}, True
    for j, (name, v) in enumerate(sorted(verdicts.items(), key=lambda kv: kv[1].p)):
        level = alpha / (m - j)
        going = going and v.p <= level
        out[name] = _at_level(v, level, family=m)
        if not going and out[name].word != UNSETTLED:  # a smaller p-value was not decisive: neither is this
            out[name] = replace(out[name], word=UNSETTLED, reason="not decisive after Holm's correction")
    return {name: out[name] for name in verdicts}


def all_of(verdicts: Mapping[str, Verdict], alpha: float = ALPHA) -> str:
    """The word of "every one of these claims holds": **holds** when every member holds at ``alpha``
    (an intersection-union test: its level is the members' level, no correction needed); **does not hold**
    when at least one member does not hold after :func:`holm`; otherwise not settled."""
    if verdicts and all(v.word == HOLDS and v.level >= alpha for v in verdicts.values()):
        return HOLDS
    if any(v.word == FAILS for v in holm(verdicts, alpha).values()):
        return FAILS
    return UNSETTLED


def decide(budgets: Sequence[float], get: Callable[[int], tuple], looks: Sequence[int] = (3, 5),
           claimed: str = "greater", paired: bool = True, *, n_eval: int | None = None,
           alpha: float = ALPHA) -> Verdict:
    """A group-sequential verdict: ``get(n)`` returns ``(a, b)`` for the first ``n`` seeds (running only
    what is not cached yet); the claim is tested at each look of ``looks`` (increasing seed counts) at
    level ``alpha / len(looks)`` and stops at the first decisive look, so seeds are added only while it is
    undecided. By the union bound the chance of a decisive word with no true difference stays at most
    ``alpha`` (tested by simulation)."""
    looks = tuple(looks)
    if not looks or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in looks) \
            or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks={looks!r} must be increasing seed counts >= 2, e.g. (3, 5)")
    level = alpha / len(looks)
    for n in looks:
        a, b = get(n)
        v = budget_verdict(budgets, a, b, claimed, paired, n_eval=n_eval, alpha=level)
        if v.word != UNSETTLED:
            break
    return v


def mean_sd(values, scale: float = 100.0, digits: int = 1, unit: str = "") -> str:
    """A value over seeds the book's one way: ``"88.1 ± 0.3"`` (mean ± one standard deviation over seeds),
    ``"88.1 (one seed)"``."""
    v = _values(values, "values") * scale
    if len(v) < 2:
        return f"{v.mean():.{digits}f}{unit} (one seed)"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}{unit}"


# --- calibration: the rule simulated on curves like the book's ---------------------------------------------

def _simulated(effect: float, n_seeds: int, rho: float, n_sims: int, n_budgets: int, rng) -> np.ndarray:
    """Per-seed paired differences (n_sims, n_budgets, n_seeds) in units of one seed-SD: the true
    difference ``effect`` at every budget, noise correlated ``rho`` between budgets (nested data and the
    same seeds make the book's budgets correlated)."""
    shared = rng.standard_normal((n_sims, 1, n_seeds))
    own = rng.standard_normal((n_sims, n_budgets, n_seeds))
    return effect + math.sqrt(rho) * shared + math.sqrt(1 - rho) * own


def _decisive(diffs: np.ndarray, level: float) -> np.ndarray:
    """The rule on simulated paired differences, vectorised: True where decisive (either word)."""
    n = diffs.shape[-1]
    d = diffs.mean(-1)
    se = diffs.std(-1, ddof=1) / math.sqrt(n)
    t = np.abs(d[:, -1]) / se[:, -1]
    return (t > stats.t.ppf(1 - level / 2, n - 1)) & (np.sign(d[:, -2]) == np.sign(d[:, -1]))


def null_decisive_rate(n_seeds: int, rho: float = 0.8, n_sims: int = 20000, n_budgets: int = 3,
                       looks: Sequence[int] | None = None, alpha: float = ALPHA, seed: int = 0) -> float:
    """The fraction of simulated claims with **no true difference** that :func:`budget_verdict` (or, with
    ``looks``, :func:`decide`) calls decisive: the rule's false-decisive rate, to compare with ``alpha``."""
    return _rate(0.0, n_seeds, rho, n_sims, n_budgets, looks, alpha, seed)


def power(effect: float, n_seeds: int, rho: float = 0.8, n_sims: int = 20000, n_budgets: int = 3,
          looks: Sequence[int] | None = None, alpha: float = ALPHA, seed: int = 0) -> float:
    """The fraction of simulated claims with a true difference of ``effect`` seed-SDs that the rule calls
    decisive (its power)."""
    return _rate(effect, n_seeds, rho, n_sims, n_budgets, looks, alpha, seed)


def _rate(effect, n_seeds, rho, n_sims, n_budgets, looks, alpha, seed) -> float:
    rng = np.random.default_rng(seed)
    looks = (n_seeds,) if looks is None else tuple(looks)
    sims = _simulated(effect, max(looks), rho, n_sims, n_budgets, rng)
    hit = np.zeros(n_sims, dtype=bool)
    for n in looks:
        hit |= _decisive(sims[..., :n], alpha / len(looks))
    return float(hit.mean())


# --- the one figure -----------------------------------------------------------------------------------------

def budget_figure(budgets: Sequence[float], curves: dict[str, Sequence[Sequence[float]]], xlabel: str,
                  ylabel: str = "test accuracy (%)", scale: float = 100.0, title: str | None = None, ax=None,
                  target: float | None = None):
    """The book's one style of budget curve: the metric (mean over seeds, error bars: one standard
    deviation over seeds) of each variant against the budget, on a log x axis; ``target``: a threshold,
    drawn dashed."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, per_budget in curves.items():
        means = [float(np.mean(v)) * scale for v in per_budget]
        stds = [float(np.std(v, ddof=1)) * scale if len(v) > 1 else 0.0 for v in per_budget]
        ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=label)
    if target is not None:
        ax.axhline(scale * target, color="0.4", linestyle="--", linewidth=1,
                   label=f"target {scale * target:g}{'%' if scale == 100 else ''}")
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
        plt.close(fig)
    return fig if fig is not None else ax.figure

"""The patch chapter's claims decided from budget curves (issue "Budget-honest science", §1).

Every "holds" / "does not hold" of the chapter (Brutzkus et al., "Efficient Learning of CNNs using
Patch Based Features", ICML 2022) comes from :func:`patchnb.experiments.verdict.budget_verdict`, the
book's one rule: the variants a claim compares are run at each budget of the page's curve
(:meth:`~.network.ChapterConfig.budget_configs`: ``budget_fractions`` of the page's training images,
at cpu scale 1/16, 1/4 and all of them) and over the page's seeds, paired by seed. The runs at the full
budget are the page's table runs (same cached runs); each smaller budget is its own run with the page's
schedule (the same epochs, learning rate and milestones on fewer images, so fewer steps).

This module holds no training code of its own (the runs are :func:`~.network.run_variants`), so an edit
here does not invalidate the cached runs, whose key is :mod:`.network`'s import closure.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..verdict import Verdict, budget_figure, budget_verdict
from .network import ChapterConfig, run_variants

XLABEL = "training images"


@dataclass
class BudgetRuns:
    """A page's runs along its budget curve: ``budgets`` (training images, increasing; the last is the
    page's budget) and, per budget, ``{variant: [run record per seed]}``."""

    budgets: list[int]
    runs: list[dict[str, list[dict]]]

    def accs(self, variant: str, depth: int = 1) -> list[list[float]]:
        """Per budget, the test accuracy of ``variant`` (layer ``depth`` of a layerwise run) per seed."""
        return [[float(o["results"][depth - 1]["test_acc"]) for o in at[variant]] for at in self.runs]

    def plain(self) -> dict:
        """The raw records keyed by budget, for ``Result.runs``."""
        return {n: at for n, at in zip(self.budgets, self.runs)}


def run_budgets(cfg: ChapterConfig, variants: dict[str, dict], splits, full: dict[str, list[dict]] | None = None,
                seeds: tuple[int, ...] | None = None, desc: str = "patch runs") -> BudgetRuns:
    """``variants`` (:class:`~.network.RunConfig` overrides) at every budget of ``cfg`` over ``seeds``
    (default ``cfg.seeds``). ``full``: the page's runs at its own budget, already made (reused as they
    are); ``splits``: the page's splits (the smaller budgets load their own, nested subsets of it)."""
    budgets, runs = [], []
    for n, at in cfg.budget_configs(splits):
        budgets.append(n)
        if at is cfg and full is not None:
            runs.append({name: full[name] for name in variants})
        else:
            runs.append(run_variants(at, variants, splits if at is cfg else at.load_data(), seeds,
                                     desc=f"{desc}, {n:,} images"))
    return BudgetRuns(budgets, runs)


def decide(budgets: list[int], a: list[list[float]], b, claimed: str = "greater") -> Verdict:
    """The book's verdict on "``a`` > ``b``" (or ``<`` with ``claimed="less"``): ``a`` and ``b`` per
    budget per seed (the same seeds in the same order: paired), or ``b`` a threshold (a number)."""
    return budget_verdict(budgets, a, b, claimed=claimed, paired=True)


def claim_text(name: str, verdict: Verdict) -> dict[str, str]:
    """What the prose cites of a claim: ``name`` (the verdict word), ``name_gap`` (the difference at the
    largest budget ± two standard errors, in accuracy points) and ``name_reach`` (where the curve suggests
    the claimed sign would be reached, :meth:`~patchnb.experiments.verdict.Verdict.crossing_text`)."""
    return {name: verdict.word, f"{name}_gap": verdict.gap(), f"{name}_reach": verdict.crossing_text()}


def claim_numbers(name: str, verdict: Verdict) -> dict[str, float]:
    """``name_diff``: the difference of the claim at the largest budget (accuracy, not percent)."""
    return {f"{name}_diff": float(verdict.diffs[-1])}


def budget_text(cfg: ChapterConfig, budgets: list[int]) -> dict[str, str]:
    """``budget_images`` (the curve's training-set sizes) and ``budget_schedule`` (what trains at each,
    for the budget figures' captions)."""
    drops = ", ".join(str(m) for m in cfg.milestones if m < cfg.epochs)
    if cfg.schedule == "cosine":
        lr = f"SGD lr {cfg.lr:g} with a cosine decay to 0 over each run"
    else:
        lr = f"SGD lr {cfg.lr:g}" + (f", 10x drops after epochs {drops}" if drops else ", constant (no drop within "
                                                                                       "the run)")
    return {"budget_images": ", ".join(f"{n:,}" for n in budgets),
            "budget_schedule": f"{cfg.epochs} epoch(s) at every budget, batch {cfg.batch_size}, {lr}"}


def figure(budgets: list[int], curves: dict[str, list[list[float]]], title: str, target: float | None = None):
    """The book's budget figure (:func:`~patchnb.experiments.verdict.budget_figure`, x = training
    images) of the curves a page's claims compare; ``target``: a threshold drawn as a dashed line."""
    return budget_figure(budgets, curves, XLABEL, title=title, target=target)

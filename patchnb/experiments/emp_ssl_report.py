"""The EMP-SSL page's report (:mod:`patchnb.experiments.emp_ssl`): the claims decided from the budget curve by
the book's rule, the words the prose cites, and the page's figures and table. No training here: the runs are
:mod:`.emp_ssl`'s, so an edit of this module re-draws the page without re-training."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics import circle_projection
from .verdict import Verdict, budget_figure, budget_verdict

CLAIMS = {"claim_random": "random", "claim_simclr": "simclr"}
BUDGET_XLABEL = "training images (one EMP-SSL epoch over them)"


@dataclass
class BudgetCurve:
    """The claims' runs: ``budgets`` (training images, increasing) and per budget the one-epoch run of
    each seed (:func:`run_one_epoch`, seeds in ``cfg.seeds`` order: paired)."""

    budgets: list[int]
    runs: list[list[dict]]

    def accs(self, variant: str, metric: str = "linear") -> list[list[float]]:
        """Per budget, ``metric`` of ``variant`` (``emp``, ``random``, ``simclr``) per seed."""
        return [[float(r[variant][metric]) for r in at] for at in self.runs]


def decide(curve: BudgetCurve) -> dict[str, Verdict]:
    """The claims (:data:`CLAIMS`): EMP-SSL's one-epoch linear-probe accuracy > the other variant's, by
    :func:`~patchnb.experiments.verdict.budget_verdict`, paired by seed."""
    emp = curve.accs("emp")
    return {claim: budget_verdict(curve.budgets, emp, curve.accs(other), claimed="greater", paired=True)
            for claim, other in CLAIMS.items()}


def budget_text(cfg, curve: BudgetCurve, verdicts: dict[str, Verdict]) -> dict[str, str]:
    """The words the prose cites of the curve: the verdicts and their gaps (``claim_<x>``,
    ``claim_<x>_gap``: at the largest budget, ± two standard errors), the difference at every budget
    (``claim_<x>_curve``), the budgets, seeds, and the means ± sd at the largest budget."""
    def mean_sd(v):
        return f"{100 * np.mean(v):.1f}%" + (f" ± {100 * np.std(v, ddof=1):.1f}" if len(v) > 1 else "")

    text = {"budget_images": ", ".join(f"{n:,}" for n in curve.budgets),
            "budget_seeds": f"{len(cfg.seeds)} seeds ({', '.join(str(s) for s in cfg.seeds)})",
            "budget_sim_epochs": ", ".join(str(r["sim_epochs"]) for r in curve.runs[-1]),
            "budget_emp_s": f"{np.mean([r['seconds'] for r in curve.runs[-1]]):.0f} s"}
    for name, key in (("emp", "emp"), ("random", "rand"), ("simclr", "sim")):
        text[f"budget_{key}_lin"] = mean_sd(curve.accs(name)[-1])
    for claim, v in verdicts.items():
        text[claim], text[f"{claim}_gap"] = v.word, v.gap()
        text[f"{claim}_curve"] = ", ".join(f"{100 * d:+.1f} points at {n:,.0f}" for n, d in zip(v.budgets, v.diffs))
    return text


def budget_plot(cfg, curve: BudgetCurve):
    """The book's budget figure of the claims: one-epoch linear-probe accuracy of EMP-SSL, SimCLR at the
    same seconds and the random encoder against the training images (mean ± sd over the seeds)."""
    fig = budget_figure(curve.budgets, {"EMP-SSL, one epoch": curve.accs("emp"),
                                        "SimCLR, same seconds": curve.accs("simclr"),
                                        "random encoder": curve.accs("random")}, BUDGET_XLABEL,
                        ylabel="linear-probe test accuracy (%)",
                        title=f"{cfg.dataset}, scale={cfg.scale}, {len(cfg.seeds)} seed(s)")
    plt.close(fig)
    return fig


def curves_figure(emp: pd.DataFrame, sim: pd.DataFrame, random: dict):
    """Test accuracy (linear, kNN) after each EMP-SSL epoch, SimCLR at the same seconds, the random floor."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    x = emp["epoch"]
    ax.plot(x, 100 * emp["linear"], "o-", color="tab:blue", label="EMP-SSL, linear (patch-averaged)")
    ax.plot(x, 100 * emp["knn"], "s--", color="tab:blue", label="EMP-SSL, kNN k=20 (patch-averaged)")
    ax.plot(x, 100 * sim["linear"], "o-", color="tab:orange", label="SimCLR, same wall-clock, linear")
    ax.plot(x, 100 * sim["knn"], "s--", color="tab:orange", label="SimCLR, same wall-clock, kNN")
    ax.axhline(100 * random["linear"], color="gray", lw=1, label="random encoder, linear")
    ax.axhline(100 * random["knn"], color="gray", lw=1, ls="--", label="random encoder, kNN")
    ax.set_xlabel("EMP-SSL epochs (SimCLR: the same training seconds)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(list(x))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy after few epochs")
    fig.tight_layout()
    return fig


def sphere_figure(random: dict, last: dict):
    """The l2-normalised test embeddings of the random encoder and the last EMP-SSL checkpoint on the circle."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, (name, r) in zip(axes, (("random encoder", random), (f"EMP-SSL, {last['epoch']} epoch(s)", last))):
        c = circle_projection(r["test_features"]).numpy()
        jitter = 1 + 0.06 * np.random.default_rng(0).standard_normal(len(c))
        sc = ax.scatter(c[:, 0] * jitter, c[:, 1] * jitter, c=r["test_labels"].numpy(), cmap="tab10", s=4, alpha=0.6)
        ax.set_aspect("equal")
        ax.set_title(f"{name}\nuniformity {r['uniformity']:.2f}, kappa {r['kappa']:.1f}, class kappa "
                     f"{r['kappa_class']:.1f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*sc.legend_elements(), fontsize=6, loc="center right", title="class")
    fig.suptitle("l2-normalised test embeddings, 2 leading principal directions, on the unit circle", fontsize=9)
    return fig


def results_table(out: dict, cfg) -> pd.DataFrame:
    def row(encoder, seconds, feats, r):
        return {"encoder": encoder, "train s": seconds, "features": feats, "linear %": 100 * r["linear"],
                "kNN %": 100 * r["knn"], "uniformity": r["uniformity"]}

    patches = f"mean of {cfg.eval_patches} patches"
    rows = [row(f"EMP-SSL, {r['epoch']} epoch(s)", round(r["seconds"]), patches, r) for r in out["emp"]]
    rows += [row(f"SimCLR, {r['epoch']} epoch(s)", round(r["seconds"]), "whole image", r) for r in out["simclr"]]
    rows += [row("EMP-SSL, last", round(out["emp"][-1]["seconds"]), "whole image", out["emp_whole"]),
             row("random", 0, patches, out["random"]), row("random", 0, "whole image", out["random_whole"])]
    return pd.DataFrame(rows).round(2)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


__all__ = ["BUDGET_XLABEL", "CLAIMS", "BudgetCurve", "budget_plot", "budget_text", "curves_figure", "decide",
           "pct", "results_table", "sphere_figure"]

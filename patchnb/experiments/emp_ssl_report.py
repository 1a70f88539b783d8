"""The EMP-SSL page's report (:mod:`patchnb.experiments.emp_ssl`): the claims decided from the budget curve by
the book's rule, the words the prose cites, and the page's figures and table. No training here: the runs are
:mod:`.emp_ssl_runs`', so an edit of this module re-draws the page without re-training.

The page's three claims are one family (Holm's correction): EMP-SSL's one-epoch linear-probe accuracy beats
the random encoder's (``claim_random``) and SimCLR's at equal wall-clock (``claim_simclr``), both accuracies
on the test split (``n_eval`` its images), and its embeddings are more uniform than the random encoder's
(``claim_spread``: the uniformity of Wang & Isola, lower is more uniform; not an accuracy, no ``n_eval``).
With ``looks`` a claim still undecided gets more seeds (:func:`~patchnb.experiments.verdict.decide`), the
looks sharing the level, so the family is corrected at ``ALPHA / len(looks)``."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics import circle_projection
from .emp_ssl_runs import BudgetCurve
from .verdict import ALPHA, Verdict, budget_figure, budget_verdict, decide, holm, mean_sd

#: the page's claims: glue name -> (EMP-SSL's metric, the variant it is compared with, the claimed direction)
CLAIMS = {"claim_random": ("linear", "random", "greater"), "claim_simclr": ("linear", "simclr", "greater"),
          "claim_spread": ("uniformity", "random", "less")}
BUDGET_XLABEL = "training images (one EMP-SSL epoch over them)"
BUDGET_UNIT = "training images (one epoch)"


def claims(cfg, curve: BudgetCurve, more: Callable[[int], BudgetCurve] | None = None,
           n_eval: int | None = None) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """The claims (:data:`CLAIMS`) by :func:`~patchnb.experiments.verdict.budget_verdict`, paired by seed,
    accuracies with the test split's ``n_eval``; at ``cfg.look_counts`` seeds (``more(n)``: the curve for the
    first ``n`` seeds; default ``curve``) sequentially by :func:`~patchnb.experiments.verdict.decide` when
    there are several looks. Returns the family corrected by Holm and the uncorrected verdicts."""
    looks = cfg.look_counts
    more = more or (lambda n: curve)
    raw = {}
    for claim, (metric, other, claimed) in CLAIMS.items():
        def get(n, metric=metric, other=other):
            c = more(n)
            return c.accs("emp", metric), c.accs(other, metric)

        ne = n_eval if metric == "linear" else None
        raw[claim] = (budget_verdict(curve.budgets, *get(looks[0]), claimed, n_eval=ne) if len(looks) == 1 else
                      decide(curve.budgets, get, looks, claimed, n_eval=ne))
    return holm(raw, alpha=ALPHA / len(looks)), raw


def budget_text(cfg, curve: BudgetCurve, verdicts: dict[str, Verdict], available: int | None = None
                ) -> dict[str, str]:
    """The words the prose cites of the curve: every claim's :meth:`~patchnb.experiments.verdict.Verdict.glue`
    names (word, gap with its confidence interval, curve, reach, detectable difference, test), the budgets,
    seeds, and the values at the largest budget (mean ± one standard deviation over seeds, ``mean_sd``)."""
    looks = cfg.look_counts
    text = {"budget_images": ", ".join(f"{n:,}" for n in curve.budgets),
            "budget_seeds": f"{len(cfg.seeds)} seeds ({', '.join(str(s) for s in cfg.seeds)})",
            "budget_sim_epochs": ", ".join(str(r["sim_epochs"]) for r in curve.runs[-1]),
            "budget_emp_s": f"{np.mean([r['seconds'] for r in curve.runs[-1]]):.0f} s",
            "looks_desc": (f"one look at {looks[0]} seed(s)" if len(looks) == 1 else
                           f"looks at {', '.join(map(str, looks))} seeds (a claim still undecided gets the next "
                           f"seeds, each look at level {ALPHA / len(looks):.3g})"),
            "n_claims": str(len(verdicts))}
    for name, key in (("emp", "emp"), ("random", "rand"), ("simclr", "sim")):
        text[f"budget_{key}_lin"] = mean_sd(curve.accs(name)[-1], unit="%")
    for name, key in (("emp", "emp"), ("random", "rand")):
        text[f"budget_{key}_unif"] = mean_sd(curve.accs(name, "uniformity")[-1], scale=1.0, digits=3)
    for claim, v in verdicts.items():
        if CLAIMS[claim][0] == "uniformity":
            text.update(v.glue(claim, scale=1.0, digits=3, unit="", budget_unit=BUDGET_UNIT))
        else:
            text.update(v.glue(claim, budget_unit=BUDGET_UNIT, available=available))
        text[f"{claim}_reason"] = v.reason or "decided"
    return text


def budget_plot(cfg, curve: BudgetCurve):
    """The book's budget figure of the claims: one-epoch linear-probe accuracy of EMP-SSL, SimCLR at the
    same seconds and the random encoder against the training images (mean ± one standard deviation over the
    seeds)."""
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


__all__ = ["BUDGET_XLABEL", "CLAIMS", "BudgetCurve", "budget_plot", "budget_text", "claims", "curves_figure",
           "pct", "results_table", "sphere_figure"]

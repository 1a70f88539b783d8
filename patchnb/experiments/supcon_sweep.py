"""Supervised contrastive pre-training and the choice of a checkpoint (the chapter "SupCon and the
checkpoint sweep").

What it reproduces: the SupCon thesis repository's protocol (ResNet-50 / SE-ResNeXt-50 backbones trained
with ``main_supcon.py``, then ``main_linear_loop.sh``): a backbone trained with supervised contrastive
learning (Khosla et al., NeurIPS 2020, arXiv:2004.11362, loss L_out, temperature 0.07) saving a checkpoint
every few epochs, a linear head trained on every checkpoint, the checkpoint with the best
**validation** accuracy chosen, and one **test** table (accuracy, macro precision / recall / F1) with a
confusion matrix for it.

What the recipe does: SupCon with its settings from ``patchnb/ssl/configs/supcon.yaml`` through the
shared loop, the backbone written every ``every`` epochs (:func:`patchnb.ssl.pretrain_with_checkpoints`);
then :func:`patchnb.eval.sweep_checkpoints`: a logistic-regression head per checkpoint (L2 strength
chosen on validation), only the best checkpoint scored on test. The baseline is the same backbone + a
linear layer trained end to end with cross-entropy under the same :class:`~patchnb.train.TrainConfig`
(its epoch chosen on validation). Any ImageFolder tree with its own normalisation works through
``dataset="imagefolder"``, ``data_root``, ``image_size``, ``mean``, ``std`` (the thesis' ``--mean/--std``).

Deviations from the original, named: a narrow CIFAR-style ResNet-18 (``width``) instead of ResNet-50 /
SE-ResNeXt-50 (``width=64`` is the standard ResNet-18); the head is an L2-regularised logistic
regression fitted by L-BFGS on frozen features (the original trains a linear layer with SGD for up to
100 epochs per checkpoint and reports the best head epoch); the checkpoints cover the whole run, not a
hand-picked plateau (epochs 700-1000 of 1000); the sweep table, figures and test table are the first
seed's run. ``batch_size`` and ``lr`` replace the
YAML's (batch 256, lr 0.125 = 0.5 x 256 / 1024) at the small scales; the YAML's one-epoch warm-up is
capped at a tenth of the epochs (none for runs under ten epochs).

Budget: ``BUDGET = "epochs"`` (pre-training and cross-entropy epochs; the data stay fixed). The page's
claim ``claim_supcon`` (Khosla et al.: SupCon + a linear head beats cross-entropy training of the same
backbone in test accuracy) is decided by the book's rule
(:func:`patchnb.experiments.verdict.budget_verdict`: a paired t-test at the largest budget with the test
split's sampling error, ``n_eval`` its images) from the runs at ``budget_fractions`` of ``epochs``
(1/4, 1/2 and all of them by default; each its own run with the page's schedule over its own epochs: the
cosine schedule, the warm-up cap and the checkpoints, ``every`` lowered to divide the run's epochs) over every seed
of ``seeds``, SupCon and cross-entropy with the same seeds (paired); with ``looks``, an undecided claim gets
more seeds (:func:`~patchnb.experiments.verdict.decide`). The runs at all the epochs are the page's runs (the
same cached runs). Every choice (checkpoint, head L2 strength, cross-entropy epoch) is made on validation.

The cached runs, ``Config`` and ``PRESETS`` are :mod:`.supcon_sweep_runs` (re-exported here); this module is
the page, out of the runs' cache key.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import pandas as pd

from ..eval import confusion_figure
from .result import Result
from .supcon_sweep_runs import METHOD, METRICS, PRESETS, Config, budget_runs, load_data, run_sweep
from .verdict import ALPHA, Verdict, budget_figure, budget_verdict, decide, mean_sd


def sweep_figure(out: dict, rows: pd.DataFrame):
    """Left: the SupCon loss per epoch; right: validation accuracy of the head on each checkpoint."""
    hist = pd.DataFrame(out["history"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.3))
    a1.plot(hist["epoch"] + 1, hist["loss"], "o-", ms=3)
    a1.set_xlabel("epoch")
    a1.set_ylabel("SupCon loss")
    a1.set_title("pre-training loss")
    a1.grid(alpha=0.3)
    a2.plot(rows["epoch"], 100 * rows["val_accuracy"], "o-", label="linear head, validation")
    a2.plot([out["best_epoch"]], [100 * out["val"]["accuracy"]], "*", ms=16, color="tab:red",
            label=f"chosen: epoch {out['best_epoch']}")
    a2.set_xlabel("checkpoint epoch")
    a2.set_ylabel("validation accuracy (%)")
    a2.set_title("linear head on each checkpoint")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracies(runs: list[list[dict]]) -> tuple[list[list[float]], list[list[float]]]:
    """Per budget per seed, the test accuracy of SupCon (chosen checkpoint + linear head) and of cross-entropy."""
    return ([[float(r["test"]["accuracy"]) for r in at] for at in runs],
            [[float(r["ce_test"]["accuracy"]) for r in at] for at in runs])


def claim(cfg: Config, budgets: list[int], runs: list[list[dict]], more: Callable | None = None,
          n_eval: int | None = None) -> Verdict:
    """``claim_supcon``: SupCon's test accuracy > cross-entropy's, by
    :func:`~patchnb.experiments.verdict.budget_verdict` (paired by seed, the test split's ``n_eval``) at
    ``cfg.look_counts`` seeds, sequentially (:func:`~patchnb.experiments.verdict.decide`) when there are
    several looks; ``more(n)``: the runs per budget for the first ``n`` seeds (default ``runs``). The page's
    only claim: a family of one."""
    looks = cfg.look_counts
    more = more or (lambda n: runs)
    get = lambda n: accuracies(more(n))  # noqa: E731
    if len(looks) == 1:
        return budget_verdict(budgets, *get(looks[0]), claimed="greater", n_eval=n_eval)
    return decide(budgets, get, looks, claimed="greater", n_eval=n_eval)


def budget_plot(cfg: Config, budgets: list[int], runs: list[list[dict]]):
    """The book's budget figure of the claim: test accuracy of SupCon + linear head and of cross-entropy
    against the epochs (mean ± one standard deviation over the seeds)."""
    curves = {"SupCon + linear head": [[r["test"]["accuracy"] for r in at] for at in runs],
              "cross-entropy": [[r["ce_test"]["accuracy"] for r in at] for at in runs]}
    fig = budget_figure(budgets, curves, "training epochs (SupCon and cross-entropy)",
                        title=f"{cfg.dataset}, scale={cfg.scale}, {len(cfg.seeds)} seed(s)")
    plt.close(fig)
    return fig


def run(cfg: Config) -> Result:
    """The runs (cached) at every budget and seed, then the first seed's sweep table and figure, test table
    and confusion matrix, the budget figure ``fig_budget``, the verdict ``claim_supcon`` with
    ``claim_supcon_gap`` / ``claim_supcon_curve``, and the words and numbers of the page."""
    cfg.budget_configs()  # the budget curve's points are distinct, before any data are loaded
    splits = load_data(cfg)
    budgets, runs = budget_runs(cfg, splits)
    extra: dict[int, list[list[dict]]] = {len(cfg.seeds): runs}

    def more(n: int) -> list[list[dict]]:  # the sequential design's further seeds, run only when asked for
        if n not in extra:
            extra[n] = budget_runs(cfg, splits, n)[1]
        return extra[n]

    verdict = claim(cfg, budgets, runs, more, n_eval=len(splits.test))
    looks = cfg.look_counts
    out = runs[-1][0]
    train = cfg.train_config(cfg.seeds[0])
    rows = pd.DataFrame([r for r in out["rows"] if r["status"] == "done"])
    t, c = out["test"], out["ce_test"]
    diff = t["accuracy"] - c["accuracy"]
    spread = rows["val_accuracy"].max() - rows["val_accuracy"].min()
    last_val = float(rows.iloc[-1]["val_accuracy"])
    result = Result(cfg, runs={**out, "budgets": dict(zip(budgets, runs))})
    result.tables = {
        "tab_sweep": rows[["checkpoint", "epoch", "val_accuracy", "weight_decay"]].assign(
            val_accuracy=lambda d: (100 * d["val_accuracy"]).round(2)),
        "tab_test": pd.DataFrame([
            {"model": f"SupCon + linear head ({out['best']})", **{k: round(100 * t[k], 2) for k in METRICS}},
            {"model": f"cross-entropy (epoch {out['ce_best_epoch']}, chosen on val)",
             **{k: round(100 * c[k], 2) for k in METRICS}}]),
    }
    result.figures = {
        "fig_sweep": sweep_figure(out, rows),
        "fig_confusion": confusion_figure(t["confusion"], splits.classes,
                                          title=f"SupCon, {out['best']}: test confusion (row-normalised)"),
        "fig_budget": budget_plot(cfg, budgets, runs),
    }
    for fig in result.figures.values():
        plt.close(fig)
    result.text = {
        "data_desc": f"{splits.describe()}; scale={cfg.scale}",
        "setup": f"ResNet-18 of width {cfg.width} ({8 * cfg.width}-d features), {cfg.epochs} epochs of batch "
                 f"{train.batch_size}, SGD lr {train.lr:g} with a cosine schedule, a checkpoint every {cfg.every} "
                 f"epochs",
        "supcon_seconds": f"{out['supcon_seconds']:.1f} s", "ce_seconds": f"{out['ce_seconds']:.1f} s",
        "n_ckpts": str(len(rows)), "best_ckpt": f"{out['best']} (epoch {out['best_epoch']})",
        "best_val": f"{100 * out['val']['accuracy']:.1f}%", "last_val": f"{100 * last_val:.1f}%",
        "spread": f"{100 * spread:.1f}", "sup_acc": f"{100 * t['accuracy']:.1f}%", "sup_f1": f"{100 * t['f1']:.1f}%",
        "ce_acc": f"{100 * c['accuracy']:.1f}%", "diff": f"{100 * diff:+.1f}",
        **verdict.glue("claim_supcon", budget_unit="training epochs"),
        "claim_supcon_reason": verdict.reason or "decided", "n_eval": f"{len(splits.test):,}",
        "looks_desc": (f"one look at {looks[0]} seed(s)" if len(looks) == 1 else
                       f"looks at {', '.join(map(str, looks))} seeds (more seeds only while undecided, each look "
                       f"at level {ALPHA / len(looks):.3g}); {verdict.seeds} seeds were needed"),
        "budget_epochs": ", ".join(str(n) for n in budgets),
        "budget_seeds": f"{len(cfg.seeds)} seeds ({', '.join(str(s) for s in cfg.seeds)})",
        "budget_sup_acc": mean_sd([r["test"]["accuracy"] for r in runs[-1]], unit="%"),
        "budget_ce_acc": mean_sd([r["ce_test"]["accuracy"] for r in runs[-1]], unit="%"),
    }
    result.numbers = {"best_val": out["val"]["accuracy"], "last_val": last_val, "spread": float(spread),
                      "best_epoch": float(out["best_epoch"]), "n_ckpts": float(len(rows)),
                      "ce_best_epoch": float(out["ce_best_epoch"]), "diff": float(diff),
                      **{f"sup_{k}": float(t[k]) for k in METRICS}, **{f"ce_{k}": float(c[k]) for k in METRICS},
                      "claim_supcon_diff": float(verdict.diffs[-1]), "claim_supcon_p": float(verdict.p)}
    return result


__all__ = ["METHOD", "METRICS", "PRESETS", "Config", "accuracies", "budget_plot", "budget_runs", "claim", "load_data",
           "run", "run_sweep", "sweep_figure"]

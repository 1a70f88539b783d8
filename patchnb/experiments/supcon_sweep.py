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
(:func:`patchnb.experiments.verdict.budget_verdict`) from the runs at ``budget_fractions`` of ``epochs``
(1/4, 1/2 and all of them by default; each its own run with the page's schedule over its own epochs: the
cosine schedule, the warm-up cap and the checkpoints, ``every`` lowered to divide the run's epochs) over every seed
of ``seeds``, SupCon and cross-entropy with the same seeds (paired). The runs at all the epochs are the
page's runs (the same cached runs).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from ..cache import cached
from ..checks import check_float, check_int
from ..data import Splits, load_splits
from ..eval import classification_metrics, confusion_figure, sweep_checkpoints
from ..models import ResNet18
from ..ssl import pretrain_with_checkpoints, read_method_config
from ..ssl.config import build_method
from ..train import Classification, TrainConfig, features, fit
from .base import ExperimentConfig, check_budget_fractions
from .data_source import check_data_source
from .result import Result
from .verdict import Verdict, budget_figure, budget_verdict

METHOD = "supcon"  # the YAML config of the pre-training (patchnb/ssl/configs/supcon.yaml)
METRICS = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The chapter's parameters (see the module docstring); ``Config.preset(scale)`` reads :data:`PRESETS`."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None                 # the ImageFolder root, for dataset "imagefolder"
    image_size: int | None = None                # resize ImageFolder images to this square size
    mean: tuple[float, ...] | None = None        # per-channel normalisation; None: computed on train
    std: tuple[float, ...] | None = None
    n_train: int | None = 2000
    n_val: int | None = 500
    n_test: int | None = 1000
    width: int = 16                              # ResNet-18 width: features are 8 * width
    epochs: int = 10                             # pre-training epochs (and the cross-entropy baseline's)
    every: int = 2                               # a checkpoint every this many epochs
    batch_size: int | None = None                # None: the YAML's train.batch_size
    lr: float | None = None                      # None: the YAML's train.lr
    eval_batch_size: int = 512                   # batch of the feature extraction in the sweep
    #: the claim's budget curve: fractions of epochs, each its own run per seed (1: the page's runs)
    budget_fractions: tuple = (0.25, 0.5, 1.0)

    BUDGET: ClassVar[str] = "epochs"

    def validate(self) -> None:
        check_data_source(self)
        check_int("image_size", self.image_size, 1, allow_none=True)
        for name in ("width", "epochs", "every", "eval_batch_size"):
            check_int(name, getattr(self, name), 1)
        if self.every > self.epochs:
            raise ValueError(f"every={self.every} must be <= epochs={self.epochs}, or no checkpoint is written")
        check_int("batch_size", self.batch_size, 2, allow_none=True)
        if self.lr is not None:
            check_float("lr", self.lr, 0.0, strict_min=True)
        check_budget_fractions(self.budget_fractions, "epochs")

    def budget_configs(self) -> list[tuple[int, Config]]:
        """The points of the claim's budget curve, increasing: ``(epochs, configuration)`` per fraction of
        ``budget_fractions``; the fraction 1 is this configuration itself (its runs are the page's), the
        others scale ``epochs``, with ``every`` lowered to the largest divisor of their epochs not above it (so
        every run's last epoch is a checkpoint of its sweep). Raises ``ValueError`` if two fractions give the
        same number of epochs."""
        epochs = [max(1, int(round(self.epochs * f))) for f in sorted(self.budget_fractions)]
        if len(set(epochs)) != len(epochs):
            raise ValueError(f"budget_fractions={self.budget_fractions} give epochs {epochs} of "
                             f"epochs={self.epochs}: not distinct; use more epochs or other fractions")
        points = []
        for f in sorted(self.budget_fractions):
            e = max(1, int(round(self.epochs * f)))
            every = max(d for d in range(1, min(self.every, e) + 1) if e % d == 0)
            at = self if f == 1 else self.replace(epochs=e, every=every)
            points.append((at.epochs, at))
        return points

    def train_config(self, seed: int) -> TrainConfig:
        """THE TrainConfig of the page (SupCon and the cross-entropy baseline): the YAML ``train`` section,
        ``batch_size`` and ``lr`` replaced where given, the warm-up capped at ``epochs // 10``."""
        base = dict(read_method_config(METHOD)["train"])
        base.update({k: v for k, v in (("batch_size", self.batch_size), ("lr", self.lr)) if v is not None})
        base["warmup_epochs"] = min(base.get("warmup_epochs", 0), self.epochs // 10)
        return TrainConfig(**base, epochs=self.epochs, seed=seed, device=self.device)


PRESETS = {
    # smoke: 3 epochs (budgets 1, 2, 3), 2 seeds; cpu: budgets 2, 5, 10 epochs, 2 seeds
    "smoke": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=256, n_val=128, n_test=256, width=4, epochs=3,
                  every=1, batch_size=64, lr=0.05, eval_batch_size=512),
    "cpu": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=2000, n_val=500, n_test=1000, width=16, epochs=10,
                every=2, batch_size=128, lr=0.05, eval_batch_size=512),
    # batch 256 and lr 0.125 are the YAML's
    "paper": dict(seeds=(0, 1, 2), dataset="cifar10", n_train=None, n_val=None, n_test=None, width=64, epochs=1000,
                  every=50, batch_size=None, lr=None, eval_batch_size=1024),
}
for _values in PRESETS.values():
    _values.update(budget_fractions=(0.25, 0.5, 1.0))
Config.PRESETS = PRESETS


def load_data(cfg: Config) -> Splits:
    return load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.n_train, val_size=cfg.n_val,
                       test_size=cfg.n_test, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std)


def run_sweep(cfg: Config, seed: int, splits: Splits) -> dict:
    """SupCon pre-training with checkpoints, the sweep over them and the cross-entropy baseline (cached)."""
    file_cfg = read_method_config(METHOD)
    key = dict(cfg.key("device", "budget_fractions"), file=file_cfg, seed=seed)

    def compute(run_dir):
        train = cfg.train_config(seed)
        torch.manual_seed(seed)
        method = build_method(file_cfg)
        model = method.make_model(splits.shape[0], cfg.width)
        res, _ = pretrain_with_checkpoints(model, splits, train, method, run_dir / "supcon", every=cfg.every,
                                           name="supcon", progress=True)
        sweep = sweep_checkpoints(run_dir / "supcon" / "checkpoints",
                                  functools.partial(ResNet18, splits.shape[0], cfg.width), splits,
                                  batch_size=cfg.eval_batch_size)
        torch.manual_seed(seed)  # the same backbone + a linear layer, trained end to end with cross-entropy
        backbone = ResNet18(splits.shape[0], cfg.width)
        ce = nn.Sequential(backbone, nn.Linear(backbone.out_dim, len(splits.classes)))
        ce_res = fit(ce, splits, train, Classification(), run_dir=run_dir / "ce", name="cross-entropy", progress=True)
        ce_test = classification_metrics(splits.test.labels, features(ce, splits.test, splits, 1000)[0].argmax(1),
                                         len(splits.classes))
        return {"history": res.history, "supcon_seconds": res.seconds, "rows": sweep.rows, "best": sweep.best,
                "best_epoch": sweep.best_epoch, "val": sweep.val, "test": sweep.test, "ce_test": ce_test,
                "ce_best_epoch": ce_res.best_epoch + 1, "ce_seconds": ce_res.seconds, "ce_history": ce_res.history}

    return cached("supcon_sweep", key, compute)


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


def budget_runs(cfg: Config, splits: Splits) -> tuple[list[int], list[list[dict]]]:
    """:func:`run_sweep` at every point of ``cfg.budget_configs()`` for every seed (``cfg.seeds`` order):
    ``(epochs per budget, per budget the runs per seed)``."""
    budgets, runs = [], []
    for epochs, at in cfg.budget_configs():
        budgets.append(epochs)
        runs.append([run_sweep(at, seed, splits) for seed in cfg.seeds])
    return budgets, runs


def decide(budgets: list[int], runs: list[list[dict]]) -> Verdict:
    """``claim_supcon``: SupCon's test accuracy (chosen checkpoint + linear head) > cross-entropy's, by
    :func:`~patchnb.experiments.verdict.budget_verdict`, paired by seed."""
    sup = [[float(r["test"]["accuracy"]) for r in at] for at in runs]
    ce = [[float(r["ce_test"]["accuracy"]) for r in at] for at in runs]
    return budget_verdict(budgets, sup, ce, claimed="greater", paired=True)


def budget_plot(cfg: Config, budgets: list[int], runs: list[list[dict]]):
    """The book's budget figure of the claim: test accuracy of SupCon + linear head and of cross-entropy
    against the epochs (mean ± sd over the seeds)."""
    curves = {"SupCon + linear head": [[r["test"]["accuracy"] for r in at] for at in runs],
              "cross-entropy": [[r["ce_test"]["accuracy"] for r in at] for at in runs]}
    return budget_figure(budgets, curves, "training epochs (SupCon and cross-entropy)",
                         title=f"{cfg.dataset}, scale={cfg.scale}, {len(cfg.seeds)} seed(s)")


def run(cfg: Config) -> Result:
    """The runs (cached) at every budget and seed, then the first seed's sweep table and figure, test table
    and confusion matrix, the budget figure ``fig_budget``, the verdict ``claim_supcon`` with
    ``claim_supcon_gap`` / ``claim_supcon_curve``, and the words and numbers of the page."""
    cfg.budget_configs()  # the budget curve's points are distinct, before any data are loaded
    splits = load_data(cfg)
    budgets, runs = budget_runs(cfg, splits)
    verdict = decide(budgets, runs)
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
        "claim_supcon": verdict.word, "claim_supcon_gap": verdict.gap(),
        "claim_supcon_curve": ", ".join(f"{100 * d:+.1f} points at {n:,.0f} epoch{'' if n == 1 else 's'}"
                                        for n, d in zip(verdict.budgets, verdict.diffs)),
        "budget_epochs": ", ".join(str(n) for n in budgets),
        "budget_seeds": f"{len(cfg.seeds)} seeds ({', '.join(str(s) for s in cfg.seeds)})",
        "budget_sup_acc": _mean_sd([r["test"]["accuracy"] for r in runs[-1]]),
        "budget_ce_acc": _mean_sd([r["ce_test"]["accuracy"] for r in runs[-1]]),
    }
    result.numbers = {"best_val": out["val"]["accuracy"], "last_val": last_val, "spread": float(spread),
                      "best_epoch": float(out["best_epoch"]), "n_ckpts": float(len(rows)),
                      "ce_best_epoch": float(out["ce_best_epoch"]), "diff": float(diff),
                      **{f"sup_{k}": float(t[k]) for k in METRICS}, **{f"ce_{k}": float(c[k]) for k in METRICS},
                      "claim_supcon_diff": float(verdict.diffs[-1])}
    return result


def _mean_sd(v) -> str:
    v = [100 * float(x) for x in v]
    return f"{sum(v) / len(v):.1f}%" + (f" ± {pd.Series(v).std(ddof=1):.1f}" if len(v) > 1 else "")

"""Self-supervised learning in one epoch: EMP-SSL against SimCLR at equal wall-clock and a random encoder
(the chapter "Learning in one epoch: EMP-SSL").

What it reproduces: Tong, Chen, LeCun, Ma, "EMP-SSL: Towards Self-Supervised Learning in One Training
Epoch" (arXiv:2304.03977; the authors' code tsb0601/EMP-SSL, also ported by kachayev/ssl-in-one-epoch):
many fixed-size random crops (patches, a quarter of the image each) per image, the loss ``-200 x invariance
- mean total coding rate`` (eps 0.2), the code's LARS; the claim that the encoder is useful after a single
epoch, measured by a linear probe and a kNN classifier on *patch-averaged* embeddings (the mean over
``eval_patches`` crops per image of the layer the code evaluates: the output of the ``pre_feature`` block
``Linear-BN-ReLU`` after the ResNet, :class:`patchnb.ssl.emp.EMPEncoder`, not the ResNet's features).

What the recipe does: EMP-SSL with its settings from ``patchnb/ssl/configs/emp_ssl.yaml`` through the
shared loop, the encoder (ResNet + ``pre_feature``) saved after every epoch
(:func:`patchnb.ssl.pretrain_with_checkpoints`); the checkpoints of ``epochs`` are scored by the one
protocol :func:`patchnb.eval.protocol.evaluate_encoder` (L2 strength of the probe chosen on validation,
each probe scored once on test; weighted kNN k = 20, t = 0.07) with EMP-SSL's patch-averaged features
(:func:`patchnb.ssl.patch_averaged_features`, seeded: ``seed`` + 0 / 1 / 2 for train / val / test), plus
the uniformity (Wang & Isola 2020) and the von Mises-Fisher concentration of the l2-normalised test
embeddings. The last checkpoint is also scored on whole images. The settings (checked against the code,
see the YAML's header) are: crops of area 0.25, ratio 1; flip, jitter (0.4, 0.4, 0.4, 0.2) p 0.8,
grayscale 0.2, blur 0.1, solarize 0.1; ``pre_feature`` 4096-d and projection 4096-4096-1024 at the paper
scale; SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.3 with a cosine schedule, inside
solo-learn's LARS wrapper (eta 0.005, clipping, biases and norm parameters excluded; ``optimizer:
lars_solo``). SimCLR (``patchnb/ssl/configs/simclr.yaml``) trains the same ResNet on the same images for
the same *training wall-clock* (its number of epochs is calibrated from the time of its own steps unless
``simclr_epochs`` is given; the checkpoint nearest in seconds to each EMP-SSL epoch is scored on whole
images, its standard protocol); a randomly initialised encoder is the floor (both ways).
The test embeddings of the random encoder and of the last EMP-SSL checkpoint are saved as CSV files in
the run's folder (patchwork's and the port's ``--save_proj``) and, with ``projections`` (default), as a
TensorBoard projector folder with a sprite of the test images, ``book/generated/projections/emp_ssl/``
and its zip (:func:`patchnb.eval.projections.save_book_projector`; relative to the working directory,
the repository root under ``patchnb book``).

Deviations from the original, named: a narrow CIFAR-style ResNet-18 (``width``; 64 is the standard one)
on Fashion-MNIST at the small scales, and at those scales a narrower ``pre_feature`` / projection
(``hidden_dim`` / ``out_dim`` 8x and 2x the ResNet's features, as 4096 and 1024 are for its 512: 256 / 64 at
smoke, 1024 / 256 at cpu); the probe is an L2-regularised logistic regression fitted by
L-BFGS (the port trains a linear layer for 100 epochs); the per-epoch numbers are snapshots of one run
with a cosine schedule over its last epoch count, not separate runs of 1, 2, ... epochs; ``n_patches``
and ``batch_size`` replace the YAML's (200 patches, batch 100) at the small scales. SimCLR's optimisation
is the recipe's (SGD lr ``simclr_lr``, momentum, weight decay, EMP-SSL's batch size and schedule), not
the YAML's Adam at batch 256; it is scored on its ResNet features (its standard protocol). The random
encoder is EMP-SSL's untrained network (ResNet + ``pre_feature``), scored on the same layer. The code's
augmentation details that :class:`patchnb.ssl.Augment` does differently: a narrower blur kernel, a fixed
jitter order, normalisation with the dataset's mean / std (the code's 0.5 / 0.5); the code evaluates with 128
patches per image (the recipe: ``eval_patches``).

Budget: ``BUDGET = "n_train"`` (the images of an epoch; the claim is about one pass over the data). The
page's claims are decided by the book's rule (:func:`patchnb.experiments.verdict.budget_verdict`: a paired
t-test at the largest budget, the test split's sampling error with ``n_eval`` for accuracies) from
*one-epoch* runs (:func:`run_one_epoch`) at ``budget_fractions`` of the training images (1/4, 1/2 and all of
them by default) over every seed of ``seeds``, paired by seed: each budget point is EMP-SSL trained for
exactly one epoch over that many images (its own cosine schedule over that one epoch, so fewer steps at
the smaller budgets), the random encoder, and SimCLR for the same training seconds, all probed on that
budget's images. ``claim_random``: EMP-SSL's linear-probe accuracy after that one epoch beats the random
encoder's; ``claim_simclr``: it beats SimCLR's at equal wall-clock; ``claim_spread``: its embeddings are
more uniform (lower uniformity) than the random encoder's. The three are one family (Holm); with ``looks``
an undecided claim gets more seeds (:func:`~patchnb.experiments.verdict.decide`). Nothing is selected on
the test split: each probe's L2 strength is chosen on validation, SimCLR's checkpoint by seconds. The
page's table, curves and sphere view are one longer run (``epochs``, the first seed), whose epoch-1 row is
a snapshot of a cosine schedule over ``max(epochs)`` epochs, not a one-epoch run (a deviation named above).

The cached runs, ``Config`` and ``PRESETS`` are :mod:`.emp_ssl_runs` (re-exported here); this module is the
page, out of the runs' cache key.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..data import load_splits
from ..eval import save_book_projector
from .emp_ssl_report import CLAIMS, budget_plot, budget_text, claims, curves_figure, pct, results_table, sphere_figure
from .emp_ssl_runs import (
    BASELINE,
    METHOD,
    PRESETS,
    BudgetCurve,
    Config,
    budget_curve,
    load_data,
    run_one_epoch,
    run_pretraining,
    score,
    simclr_epochs_for,
    train_simclr,
)
from .result import Result


def available_train(cfg: Config) -> int:
    """The whole training split of the page's data set (the most images one epoch could pass over)."""
    return len(load_splits(cfg.dataset, root=cfg.data_root, val_size=cfg.n_val, test_size=1, mean=cfg.mean,
                           std=cfg.std).train)


def run(cfg: Config) -> Result:
    """The page's run (cached; the first seed), the claims' one-epoch runs along the budget curve (cached;
    every seed), then the curves, the table, the sphere view, the budget figure and the words and numbers of
    the page. Text: every claim's glue names (``claim_random`` / ``claim_simclr`` / ``claim_spread`` and their
    ``_gap``, ``_curve``, ``_reach``, ``_detectable``, ``_test``), ``budget_images``, ``budget_seeds``; figure
    ``fig_budget``; numbers ``<claim>_diff``. Further seeds (``looks``) run only for undecided claims."""
    splits = load_data(cfg)
    seed = cfg.seeds[0]
    out = run_pretraining(cfg, seed, splits)
    curves: dict[int, BudgetCurve] = {len(cfg.seeds): budget_curve(cfg, len(splits.train))}

    def more(n: int) -> BudgetCurve:  # the sequential design's further seeds, run only when asked for
        if n not in curves:
            curves[n] = budget_curve(cfg, len(splits.train), n)
        return curves[n]

    curve = curves[len(cfg.seeds)]
    verdicts, _ = claims(cfg, curve, more, n_eval=len(splits.test))
    train = cfg.train_config(seed)
    emp, sim = pd.DataFrame(out["emp"]), pd.DataFrame(out["simclr"])
    e1, s1, el, ew, rnd = out["emp"][0], out["simclr"][0], out["emp"][-1], out["emp_whole"], out["random"]
    emp_method = cfg.methods()[0]
    n_patches = emp_method.n_patches
    result = Result(cfg, runs={**out, "budgets": dict(zip(curve.budgets, curve.runs))})
    result.tables = {"tab_results": results_table(out, cfg)}
    result.figures = {"fig_curves": curves_figure(emp, sim, rnd), "fig_sphere": sphere_figure(rnd, el),
                      "fig_budget": budget_plot(cfg, curve)}
    for fig in result.figures.values():
        plt.close(fig)
    result.text = {
        "data_desc": f"{splits.describe()}; scale={cfg.scale}",
        "setup": f"ResNet-18 of width {cfg.width} ({8 * cfg.width}-d features), then the {emp_method.hidden_dim}-d "
                 f"pre_feature layer and a {emp_method.hidden_dim}-{emp_method.hidden_dim}-{emp_method.out_dim} "
                 f"projection; batch {train.batch_size} images x {n_patches} patches of area "
                 f"{emp_method.patch_scale[0]:g}; SGD-Nesterov in EMP-SSL's LARS wrapper, lr {train.lr:g} with a "
                 f"cosine schedule over {train.epochs} epochs; evaluation averages the {emp_method.hidden_dim}-d "
                 f"pre_feature layer over {cfg.eval_patches} patches per image",
        "emp_ips": f"{out['emp_ips']:.1f} images/s ({out['emp_ips'] * n_patches:.0f} patches/s)",
        "n_train": f"{len(splits.train):,}", "n_patches_t": str(n_patches),
        "emp_epoch_s": f"{e1['seconds']:.0f} s", "emp_full_epoch": f"{60000 / out['emp_ips'] / 60:.0f} min",
        "sim_epochs": str(out["sim_epochs"]),
        "emp1_lin": pct(e1["linear"]), "emp1_knn": pct(e1["knn"]), "sim1_lin": pct(s1["linear"]),
        "sim1_knn": pct(s1["knn"]), "rand_lin": pct(rnd["linear"]), "rand_knn": pct(rnd["knn"]),
        "gain_random": f"{100 * (e1['linear'] - rnd['linear']):+.1f}",
        **budget_text(cfg, curve, verdicts, available=available_train(cfg)),
        "last_lin_patch": pct(el["linear"]), "last_lin_whole": pct(ew["linear"]),
        "last_knn_patch": pct(el["knn"]), "last_knn_whole": pct(ew["knn"]),
        "unif_emp": f"{el['uniformity']:.2f}", "unif_rand": f"{rnd['uniformity']:.2f}",
        "kappa_emp": f"{el['kappa']:.1f}", "kappa_class_emp": f"{el['kappa_class']:.1f}",
        "kappa_rand": f"{rnd['kappa']:.1f}", "kappa_class_rand": f"{rnd['kappa_class']:.1f}",
    }
    if cfg.projections:  # the patch-averaged test embeddings of the random encoder and the last checkpoint
        result.text["projection_dir"] = str(save_book_projector(
            "emp_ssl", {"random_encoder": rnd["test_features"], f"emp_ssl_epoch{el['epoch']}": el["test_features"]},
            el["test_labels"], splits.test.classes, images=splits.test.images,
            description=f"Patch-averaged test embeddings of the random encoder and of EMP-SSL after {el['epoch']} "
                        f"epoch(s), page emp_ssl: {splits.describe()}; scale={cfg.scale}."))
    result.numbers = {
        **{f"emp{r['epoch']}_{k}": float(r[k]) for r in out["emp"] for k in ("linear", "knn", "uniformity")},
        **{f"simclr{r['emp_epoch']}_{k}": float(r[k]) for r in out["simclr"] for k in ("linear", "knn")},
        **{f"random_{k}": float(rnd[k]) for k in ("linear", "knn", "uniformity", "kappa")},
        **{f"random_whole_{k}": float(out["random_whole"][k]) for k in ("linear", "knn")},
        **{f"emp_whole_{k}": float(ew[k]) for k in ("linear", "knn")},
        "sim_epochs": float(out["sim_epochs"]), "emp_images_per_second": float(out["emp_ips"]),
        **{f"{claim}_diff": float(v.diffs[-1]) for claim, v in verdicts.items()},
        **{f"{claim}_p": float(v.p) for claim, v in verdicts.items()},
        **{f"budget_{name}_linear": float(np.mean(curve.accs(name)[-1])) for name in ("emp", "random", "simclr")},
    }
    return result


__all__ = ["BASELINE", "CLAIMS", "METHOD", "BudgetCurve", "Config", "PRESETS", "available_train", "budget_curve",
           "claims", "load_data", "run", "run_one_epoch", "run_pretraining", "score", "simclr_epochs_for",
           "train_simclr"]

"""The zoo of self-supervised representations (the chapter "A zoo of self-supervised representations").

What it reproduces: patchwork's ``patchwork.feature`` (jg10545/patchwork, TensorFlow): a zoo of
self-supervised trainers -- SimCLR (Chen et al., ICML 2020, arXiv:2002.05709), MoCo v2 with queue
(He et al., CVPR 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297) with the EqCo margin
(Zhu et al. 2021, arXiv:2010.01929) and MoCHi hard negatives (Kalantidis et al., NeurIPS 2020,
arXiv:2010.01028), HCL (Robinson et al., ICLR 2021, arXiv:2010.04592), DeepCluster (Caron et al.,
ECCV 2018, arXiv:1807.05520), Context Encoder (Pathak et al., CVPR 2016, arXiv:1604.07379) and DetCon_S
(Henaff et al., ICCV 2021, arXiv:2103.10957) -- compared as frozen encoders.

What the recipe does: every method trains the same narrow CIFAR-style ResNet-18 (``width``) with its
hyper-parameters from ``patchnb/ssl/configs/<method>.yaml`` for the same ``epochs`` at the same
``batch_size`` (so every method sees the same images); every encoder, plus three reference rows, is
then scored by the one protocol :func:`patchnb.eval.protocol.evaluate_encoder` (linear probe with its
L2 strength chosen on validation and scored once on test, weighted kNN k = 20 / t = 0.07,
alignment / uniformity of Wang & Isola 2020 on ``n_geometry`` test images). The reference rows: the
**random** encoder (same architecture, untrained), the **supervised** bound (same backbone + a linear
layer, cross-entropy, same epochs and batch) and the **Phi_full** patch network of Brutzkus et al.
(ICML 2022; ``build_dictionary`` + ``LocallyLinearNetwork``, trained supervised for ``phi_epochs``),
whose frozen bottleneck is probed.

Deviations from patchwork, named: PyTorch and one training loop (:func:`patchnb.train.fit`) instead of
one TensorFlow trainer per method; the probe is an L2-regularised logistic regression (patchwork: a
linear SVM) on a held-out validation split; uniformity uses squared distances over distinct pairs
and the EqCo margin and MoCHi mixing are applied (the defects of the original listed in the seeds'
README are not copied); one ``batch_size`` replaces every YAML ``train.batch_size`` (an equal budget);
``method_params`` override YAML ``params`` where the smoke/cpu data are too small for them (a queue or
a cluster count larger than the training set).

Output besides the page: with ``projections`` (default), the test embeddings of the best
self-supervised encoder (first seed) as a TensorBoard projector folder with a sprite of the test images,
``book/generated/projections/ssl_zoo/`` and its zip (:func:`patchnb.eval.projections.save_book_projector`;
the path is relative to the working directory, the repository root under ``patchnb book``).

Budget: ``BUDGET = "encoder_images"``, the training images the encoders learn from: the first
``encoder_images`` images of the training split (``None``: all of it) train the six methods, the
supervised bound and the Phi_full row (its dictionary too), with the same epochs and schedule (so
fewer steps); the probes and kNN always read the whole training split, so the evaluation protocol is
the same at every budget (sweeping ``n_train`` would also change what the probes learn from; sweeping
``epochs`` would need four epochs at cpu scale, twice the cost). The random encoder is untrained: one
row per seed serves every budget.

Verdicts: every claim of the page -- each method beats the random encoder, the supervised network is
above the best self-supervised encoder (an upper bound), the Phi_full features probe better than the
best self-supervised encoder, and more uniform encoders probe better (Spearman rho of uniformity and
probe accuracy across the encoders below 0) -- is decided by the book's rule
(:func:`patchnb.experiments.verdict.budget_verdict`: a paired t-test at the largest budget, the test split's
sampling error with ``n_eval`` for the accuracies) on linear-probe test accuracy at the fractions
``budget_fractions`` of the encoders' training images (1/4, 1/2, all) over ``seeds``, paired by seed; the
claims are one family, corrected by Holm; with ``looks`` an undecided claim gets more seeds (only its
rows run them, :func:`~patchnb.experiments.verdict.decide`)
(:func:`patchnb.experiments.ssl_zoo_report.claims`). The "best" self-supervised encoder is chosen on the
probes' **validation** accuracy, then judged once on test. The ranking and the kNN winner describe the
full budget's validation means, not verdicts.

The cached runs, ``Config`` and ``PRESETS`` are :mod:`.ssl_zoo_runs` (re-exported here); this module is the
page (verdicts, figures, tables, words), out of the runs' cache key.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from ..data import load_splits
from ..eval import save_book_projector
from .result import Result
from .ssl_zoo_report import best_test_features, figures, rows_of, summary_table, texts
from .ssl_zoo_runs import (
    BASELINES,
    METHODS,
    PHI_FULL_TRAIN,
    PRESETS,
    SUPERVISED_TRAIN,
    Config,
    encoder_splits,
    evaluate,
    load_data,
    run_phi_full,
    run_random,
    run_row,
    run_ssl,
    run_supervised,
)


def available_train(cfg: Config) -> int:
    """The whole training split of the page's data set (the most a budget of encoder images could be)."""
    return len(load_splits(cfg.dataset, val_size=cfg.n_val, test_size=1).train)


def run(cfg: Config) -> Result:
    """Every row at every seed and budget (cached), the further seeds of the sequential design only for the
    claims still undecided, then the table (full budget), figures, words, verdicts and numbers of the page."""
    t0 = time.perf_counter()
    splits = load_data(cfg)
    order = rows_of(cfg)
    budgets = cfg.budgets(splits)
    done: dict[tuple[int, str, int], dict] = {}

    def record(n: int, row: str, seed: int) -> dict:
        if (n, row, seed) not in done:
            done[n, row, seed] = run_row(cfg, row, seed, splits, n)
        return done[n, row, seed]

    def more(k: int, rows) -> dict:
        """The curve of ``rows`` for the first ``k`` seeds (cached runs; seeds beyond ``cfg.seeds`` run here)."""
        seeds = cfg.seeds_upto(k)
        return {n: {r: [record(n, r, s) for s in seeds] for r in rows} for n in budgets}

    points = [(n, s, r) for n in reversed(budgets) for s in cfg.seeds for r in order]
    for n, seed, row in tqdm(points, desc="ssl_zoo rows x budgets"):
        record(n, row, seed)
    curve = more(len(cfg.seeds), order)
    runs = curve[budgets[-1]]
    result = Result(cfg, runs=runs)
    result.tables["tab_zoo"] = summary_table(cfg, runs)
    result.text, result.numbers = texts(cfg, runs, splits, curve, more, available=available_train(cfg))
    best = result.text["best_ssl"]
    test_feats = best_test_features(cfg, runs, splits, best)
    result.figures = figures(cfg, runs, splits, best, test_feats, curve)
    if cfg.projections:  # the best self-supervised encoder's test embeddings, for the TensorBoard projector
        result.text["projection_dir"] = str(save_book_projector(
            "ssl_zoo", {best: test_feats}, splits.test.labels, splits.test.classes, images=splits.test.images,
            description=f"Test embeddings of {best} (seed {cfg.seeds[0]}), the best self-supervised encoder (chosen "
                        f"on validation) of the page ssl_zoo: {splits.describe()}; scale={cfg.scale}."))
    result.text["wall_clock"] = f"{time.perf_counter() - t0:.1f}"
    return result


__all__ = ["BASELINES", "METHODS", "PHI_FULL_TRAIN", "PRESETS", "SUPERVISED_TRAIN", "Config", "available_train",
           "encoder_splits", "evaluate", "load_data", "run", "run_phi_full", "run_random", "run_row", "run_ssl",
           "run_supervised"]

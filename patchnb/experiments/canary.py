"""Canaries: a recipe's preset (``cpu`` by default) through the stages whose numerics, memory or shapes
depend on its data sizes -- the data, the patch moments, the whitenings, the dictionaries, the
embeddings, the models -- at the preset's sizes, with a few training steps in place of its budget.

A canary checks that a scale runs on this host; it is not a result. Each model trains one epoch of at
most ``steps`` steps (:func:`few_steps`: ``TrainConfig.max_steps_per_epoch``) and is scored on the first
``n_eval`` images of the validation and test splits; every k-means runs ``kmeans_iters`` Lloyd
iterations; the training splits, dictionaries and patch samples keep the preset's sizes. The stages are
the recipes' own functions where a recipe has them as functions (:func:`~.patch.network.run_network`,
:func:`~.emp_ssl.score`, :func:`~.emp_ssl.simclr_epochs_for`, :func:`patchnb.bias.experiment.bias_run`,
...) and the recipe's library calls where it computes inside a cached closure. A canary reads and
writes no run cache (SSL checkpoints go to a temporary folder), and no recipe imports this module, so
neither a recipe's ``run(cfg)`` nor its cache key (the import closure of its module) depends on it.

A patch page trains the variants of :data:`PATCH_VARIANTS` (those whose dictionaries or models differ;
every variant with a clustered dictionary repeats the patch moments of its training split). The
dictionary page has no canary: its notebook runs whole at cpu scale in about a minute
(tests/notebooks/test_dictionary_cpu.py).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import cluster, data, patches
from ..bias.experiment import bias_run
from ..checks import check_choice, check_int
from ..embedding import PatchEmbedding, build_dictionary
from ..eval import load_backbone, sweep_checkpoints
from ..models import LocallyLinearNetwork, ResNet18
from ..ssl import pretrain_with_checkpoints, read_method_config
from ..ssl.config import build_method
from ..train import Classification, fit
from .patch.network import run_network

#: the recipes that have a canary (modules of :mod:`patchnb.experiments`)
RECIPES = ("intrinsic_dimension", "patch.table1", "patch.table2", "patch.table3", "patch.table4",
           "patch.figures", "ssl_zoo", "emp_ssl", "supcon_sweep", "shape_bias")
#: the variants of each patch page a canary trains: those whose dictionaries or models differ
PATCH_VARIANTS = {
    "patch.table1": ("vanilla CNN", "Phi_hard, random patches", "Phi_full, clustered patches"),
    "patch.table2": ("Simple", "Constrained"),
    "patch.table3": ("Original",),
    "patch.table4": ("Phi_full", "CNN (layerwise)", "CNN (end to end)"),
    "patch.figures": ("largest k",),
}
#: the depth of Table 4's models in its canary: layer 2 is the first whose dictionary is built from a
#: frozen layer's output; layers 3 and 4 repeat that stage on smaller maps, each after a pass of the
#: layers below over every training image
TABLE4_DEPTH = 2


@dataclass
class Report:
    """What a canary ran: ``sizes`` (images, stimuli or masks per split as the preset loads them, before
    the evaluation subsets), ``covariances`` (per patch setting, the largest ``|C - C^T|`` of its patch
    covariance: 0 when symmetric), ``whitenings`` (per setting and kind, the shape of the whitening
    matrix), ``dictionaries`` (per dictionary, its shape ``(N, D)``), ``losses`` (per model, the mean
    training loss of its few steps, one per trained stage: a layerwise model has one per layer),
    ``scores`` (per model or encoder, its score on the evaluation subsets) and ``seconds``."""

    recipe: str
    scale: str
    sizes: dict[str, int] = field(default_factory=dict)
    covariances: dict[str, float] = field(default_factory=dict)
    whitenings: dict[str, tuple[int, int]] = field(default_factory=dict)
    dictionaries: dict[str, tuple[int, int]] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def canary(recipe: str, scale: str = "cpu", steps: int = 3, n_eval: int = 64, kmeans_iters: int = 1,
           **overrides) -> Report:
    """Run the canary of ``recipe`` (one of :data:`RECIPES`) at ``Config.preset(scale, **overrides)``:
    its first seed, ``steps`` training steps per model, evaluation on ``n_eval`` images per split,
    ``kmeans_iters`` Lloyd iterations per k-means."""
    check_choice("recipe", recipe, RECIPES)
    for name, value in (("steps", steps), ("n_eval", n_eval), ("kmeans_iters", kmeans_iters)):
        check_int(name, value, 1)
    module = importlib.import_module(f"{__package__}.{recipe}")
    cfg = module.Config.preset(scale, **overrides)
    report = Report(recipe, scale)
    t0 = time.perf_counter()
    run = _patch_page if recipe.startswith("patch.") else _CANARIES[recipe]
    torch.manual_seed(cfg.seeds[0])
    run(module, cfg, report, steps, n_eval, kmeans_iters)
    report.seconds = time.perf_counter() - t0
    return report


def few_steps(cfg, steps: int):
    """A copy of ``cfg`` (a recipe's ``Config`` or a patch :class:`~.patch.network.RunConfig`) whose
    ``train_config(...)`` is the recipe's with one epoch of at most ``steps`` steps."""
    base = type(cfg)

    def train_config(self, *args, **kwargs):
        return dataclasses.replace(base.train_config(self, *args, **kwargs), epochs=1, max_steps_per_epoch=steps)

    few = type(f"{base.__name__}FewSteps", (base,), {"train_config": train_config, "__module__": __name__})
    return few(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init})


def eval_subsets(splits: data.Splits, n: int, train: bool = False) -> data.Splits:
    """``splits`` with the first ``n`` images of its validation and test splits (and of its training
    split with ``train``: what a frozen encoder's probe learns from); the normalisation unchanged."""
    first = lambda d: d.subset(torch.arange(min(n, len(d))))  # noqa: E731
    return dataclasses.replace(splits, val=first(splits.val), test=first(splits.test),
                               train=first(splits.train) if train else splits.train)


def _monitored(method, n: int):
    """``method`` with its per-epoch kNN monitor's bank cut to ``n`` training images."""
    return dataclasses.replace(method, knn_bank_size=n)


def _sizes(report: Report, splits: data.Splits) -> None:
    report.sizes.update(train=len(splits.train), val=len(splits.val), test=len(splits.test))


def _load(module, cfg, report: Report, n_eval: int) -> tuple[data.Splits, data.Splits]:
    """An SSL recipe's splits at the preset's sizes (recorded in ``report``) and their copy with validation
    and test cut to ``n_eval`` images."""
    splits = module.load_data(cfg)
    _sizes(report, splits)
    return splits, eval_subsets(splits, n_eval)


def _loss(result) -> list[float]:
    return [float(row["loss"]) for row in result.history]


# ----------------------------------------------------------------------------- the patch chapter


def _intrinsic_dimension(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """The PCA whitening of every patch of the training split, Figure 5's point sets at the preset's
    ``n_points`` (first seed) and the distortion curve of each at the smallest and largest k."""
    seed, p = cfg.seed, cfg.patch_size
    splits = data.load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.train_size)
    _sizes(report, splits)
    train = splits.norm(splits.train.images)
    mean, cov = patches.patch_moments(train, p)
    report.covariances[f"{p}x{p}"] = float((cov - cov.T).abs().max())
    w = patches.Whitening.from_covariance(mean, cov, "pca")
    report.whitenings[f"{p}x{p} pca"] = tuple(w.matrix.shape)
    pts = patches.sample_patches(train, cfg.n_points, p, seed=seed)
    report.sizes["points"] = len(pts)
    ks = (cfg.ks[0], cfg.ks[-1])
    for name, x in patches.figure5_variants(pts, w, seed=seed).items():
        x, _ = patches.unit_normalize(x)
        curve = cluster.intrinsic_dimension_curve(x, ks, n_iter=iters, seed=seed)
        report.scores[f"{name} distortion at k={ks[-1]}"] = float(curve[ks[-1]])


def _page_variants(module, cfg) -> dict[str, dict]:
    """The variants of a patch page (:class:`~.patch.network.RunConfig` overrides) as its ``run`` builds
    them; of the Figures, the point of Figure 8 with the largest k."""
    name = module.__name__.rsplit(".", 1)[-1]
    if name == "table1":
        return dict(module.VARIANTS)
    if name == "table2":
        return {"Simple": dict(embedding="simple", lr=cfg.lr_simple, **module.TABLE2_HEAD),
                "Constrained": dict(embedding="full", lr=cfg.lr, **module.TABLE2_HEAD)}
    if name == "table3":
        return {head: dict(embedding="full", **kw) for head, kw in module.HEADS.items()}
    if name == "table4":
        out = {family: dict(embedding=emb, **cfg.layerwise()) for family, emb in module.LAYERWISE.items()}
        return {**out, "CNN (end to end)": cfg.end_to_end(cfg.max_depth)}
    return {"largest k": list(cfg.k_variants().values())[-1]}


def _patch_page(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """A patch page: the page's splits, then each variant of :data:`PATCH_VARIANTS` through
    :func:`~.patch.network.run_network` (its dictionaries, embedding and model at the page's sizes, a few
    steps per layer; Table 4 to :data:`TABLE4_DEPTH`); the Figures page also builds Figure 6's ZCA
    dictionary."""
    seed = cfg.seeds[0]
    if report.recipe == "patch.table4":
        cfg = cfg.replace(max_depth=min(cfg.max_depth, TABLE4_DEPTH))
    splits = cfg.load_data()
    _sizes(report, splits)
    small = eval_subsets(splits, n_eval)
    variants = _page_variants(module, cfg)
    for name in PATCH_VARIANTS[report.recipe]:
        run = cfg.run_config(seed, **{**variants[name], "kmeans_iters": iters})
        out = run_network(few_steps(run, steps), small, progress=False)
        report.losses[name] = [row["loss"] for r in out["results"] for row in r["history"]]
        report.scores[name] = float(out["results"][-1]["test_acc"])
        if out["dictionary"] is not None:
            kernel = out["dictionary"]["kernel"]
            report.dictionaries[name] = (kernel.shape[0], kernel[0].numel())
    if report.recipe == "patch.figures":
        d = build_dictionary(splits.norm(splits.train.images), module.PATCH_SIZE, cfg.n_patches, cfg.n_centroids,
                             "zca", seed=seed, n_iter=iters)
        report.dictionaries["Figure 6 (ZCA)"] = tuple(d["centroids"].shape)


# ----------------------------------------------------------------------------- the SSL chapters


def _ssl_zoo(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """The zoo: every method of ``methods``, the supervised bound and the Phi_full row (its dictionary at
    the ``phi_*`` sizes) trained a few steps as :func:`~.ssl_zoo.run_row` trains them; the random encoder
    scored by the page's protocol."""
    seed = cfg.seeds[0]
    splits, small = _load(module, cfg, report, n_eval)
    few = few_steps(cfg, steps)
    channels = splits.shape[0]
    for method in cfg.methods:
        m = _monitored(build_method(read_method_config(method), **cfg.method_overrides(method)), n_eval)
        kw = {"image_size": tuple(splits.shape[-2:])} if method == "context_encoder" else {}
        torch.manual_seed(seed)
        model = m.make_model(channels, width=cfg.width, **kw)
        report.losses[method] = _loss(fit(model, small, few.train_config(method, seed), m, progress=False))
    torch.manual_seed(seed)
    backbone = ResNet18(channels, cfg.width)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_dim, len(splits.classes)))
    report.losses["supervised"] = _loss(fit(model, small, few.train_config("supervised", seed), Classification(),
                                            progress=False))
    torch.manual_seed(seed)
    x = splits.norm(splits.train.images, "cpu")
    d = build_dictionary(x, cfg.phi_patch_size, cfg.phi_n_patches, cfg.phi_n_centroids, seed=seed, n_iter=iters)
    report.dictionaries["phi_full"] = tuple(d["centroids"].shape)
    net = LocallyLinearNetwork(PatchEmbedding.from_dictionary(d, k=cfg.phi_k, mode="full"), splits.shape,
                               len(splits.classes))
    res = fit(net, small, few.train_config("phi_full", seed), Classification(), progress=False)
    report.losses["phi_full"] = _loss(res)
    torch.manual_seed(seed)
    probe = eval_subsets(splits, n_eval, train=True)
    report.scores["random"] = float(module.evaluate(cfg, ResNet18(channels, cfg.width), probe)["probe_accuracy"])


def _emp_ssl(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """EMP-SSL a few steps with its checkpoint, scored on patch-averaged features; SimCLR's wall-clock
    calibration (:func:`~.emp_ssl.simclr_epochs_for`) and a few of its steps (as
    :func:`~.emp_ssl.train_simclr`), scored on whole images."""
    seed = cfg.seeds[0]
    splits, small = _load(module, cfg, report, n_eval)
    few = few_steps(cfg, steps)
    channels = splits.shape[0]
    emp, simclr = (_monitored(m, n_eval) for m in cfg.methods())
    probe = eval_subsets(splits, n_eval, train=True)
    with tempfile.TemporaryDirectory(prefix="patchnb-canary-") as tmp:
        torch.manual_seed(seed)
        res, paths = pretrain_with_checkpoints(emp.make_model(channels, cfg.width), small, few.train_config(seed),
                                               emp, Path(tmp) / "emp", name="emp_ssl", progress=False)
        report.losses["emp_ssl"] = _loss(res)
        enc = load_backbone(paths[-1], cfg.encoder(channels))
        report.scores["emp_ssl"] = float(module.score(enc, probe, cfg, seed, cfg.eval_patches)["linear"])
        sim_epochs = module.simclr_epochs_for(cfg, simclr, small, res.seconds, seed)
        torch.manual_seed(seed)
        sim_res, sim_paths = pretrain_with_checkpoints(
            simclr.make_model(channels, cfg.width), small, few.train_config(seed, module.BASELINE, sim_epochs),
            simclr, Path(tmp) / "simclr", name="simclr", progress=False)
        report.losses["simclr"] = _loss(sim_res)
        sim = load_backbone(sim_paths[-1], ResNet18(channels, cfg.width))
        report.scores["simclr"] = float(module.score(sim, probe, cfg, seed, None)["linear"])


def _supcon_sweep(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """SupCon a few steps with a checkpoint, the linear-head sweep over it, and the cross-entropy baseline
    a few steps, as :func:`~.supcon_sweep.run_sweep` runs them."""
    seed = cfg.seeds[0]
    splits, small = _load(module, cfg, report, n_eval)
    train = few_steps(cfg, steps).train_config(seed)
    channels = splits.shape[0]
    with tempfile.TemporaryDirectory(prefix="patchnb-canary-") as tmp:
        torch.manual_seed(seed)
        method = _monitored(build_method(read_method_config(module.METHOD)), n_eval)
        res, _ = pretrain_with_checkpoints(method.make_model(channels, cfg.width), small, train, method,
                                           Path(tmp) / "supcon", every=1, name="supcon", progress=False)
        report.losses["supcon"] = _loss(res)
        sweep = sweep_checkpoints(Path(tmp) / "supcon" / "checkpoints",
                                  functools.partial(ResNet18, channels, cfg.width), eval_subsets(splits, n_eval, True),
                                  batch_size=cfg.eval_batch_size, progress=False)
        report.scores["supcon"] = float(sweep.test["accuracy"])
    torch.manual_seed(seed)
    backbone = ResNet18(channels, cfg.width)
    ce = nn.Sequential(backbone, nn.Linear(backbone.out_dim, len(splits.classes)))
    res = fit(ce, small, train, Classification(), progress=False)
    report.losses["cross-entropy"] = _loss(res)
    report.scores["cross-entropy"] = float(res.test["score"])


def _shape_bias(module, cfg, report: Report, steps: int, n_eval: int, iters: int) -> None:
    """Every model of ``models`` trained a few steps on cue-consistent stimuli at the strongest texture,
    and the transferred backbone on stylized ones too (:func:`patchnb.bias.experiment.bias_run`: the
    preset's silhouettes and training stimuli, the patch model's dictionary; ``n_eval`` validation, test
    and cue-conflict stimuli), then its transfer to Fashion-MNIST, frozen and fine-tuned. ``bias_run``
    records no loss (a diverged one raises); ``scores`` are the consistent test accuracies."""
    seed, strength = cfg.seeds[0], max(cfg.strengths)
    masks = module.load_masks(cfg)
    report.sizes.update(masks_train=len(masks[0][0]), masks_test=len(masks[1][0]))
    few = few_steps(cfg, steps)
    arch = cfg.transfer_arch
    records = {}
    for model, kind in [(m, "consistent") for m in cfg.models] + ([(arch, "stylized")] if arch else []):
        records[model, kind] = rec = bias_run(
            model, kind, *masks, texture_strength=strength, noise=cfg.noise, n_train=cfg.n_train,
            n_val=min(n_eval, cfg.n_val), n_test=min(n_eval, cfg.n_test), n_conflict=min(n_eval, cfg.n_conflict),
            image_size=cfg.image_size, width=cfg.widths[model], cfg=few.train_config(seed), seed=seed)
        report.scores[f"{model} ({kind})"] = float(rec["accuracy"])
    if arch is not None:
        fm = data.load_splits("fashion_mnist", train_size=cfg.fmnist, val_size=cfg.fmnist and cfg.fmnist // 5,
                              test_size=cfg.fmnist and 2 * cfg.fmnist)
        report.sizes["transfer_train"] = len(fm.train)
        for mode in ("frozen", "finetune"):
            report.scores[f"transfer {mode}"] = module._transfer_score(few, records[arch, "stylized"],
                                                                       eval_subsets(fm, n_eval), mode, seed)


_CANARIES = {"intrinsic_dimension": _intrinsic_dimension, "ssl_zoo": _ssl_zoo,
             "emp_ssl": _emp_ssl, "supcon_sweep": _supcon_sweep, "shape_bias": _shape_bias}

__all__ = ["PATCH_VARIANTS", "RECIPES", "TABLE4_DEPTH", "Report", "canary", "eval_subsets", "few_steps"]

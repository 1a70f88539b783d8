"""Table 2 of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features" (ICML 2022): the
constraint on the linear function of Phi_full.

What the recipe does: Phi_full multiplies the k-nearest-centroid mask by ONE learnable linear map of the
patch (a conv C -> N), shared by the patch's neighbours: the *constrained* embedding. The *simple*
(unconstrained) model is the original's ``--full_embedding True``
(:class:`~patchnb.models.simple.SimpleNetwork`): the full embedding, N blocks of the raw patch per
position (block q is the patch when centroid q is among its k nearest, else zeros), N*D*H'*W' features
in all, and ONE linear layer over all of them to the classes, so every centroid has its own linear
function of the patch at every position. Both are trained as the paper's Table 2 commands: no pooling,
no BatchNorm, no bottleneck, batch 32, k = N/4, learning rate 1e-3 (constrained, ``lr``) and 1e-5
(simple, ``lr_simple``: the original's, whose scale suits the single linear layer, as the full
embedding's squared norm is k times the image's patches' and the step scales with it). The page checks
that the constrained embedding is better, by the book's rule from both variants' runs at the budgets of
``budget_fractions`` (:mod:`.budget`; the table is the full budget). Figures: accuracy per variant,
training curves, the budget curves.

Size of the simple model: N*D*H'*W'*classes + classes parameters: at cpu scale (Fashion-MNIST, N = 256)
36,864,010 (147 MB), at paper scale (CIFAR-10, N = 256) 150,528,010 (602 MB), as the original's. It is
computed without materialising the embedding (:class:`~patchnb.models.simple.SimpleNetwork`); a run of
2 epochs of 4,000 images at cpu scale took about 70 s here (the constrained one about 45 s).

Until issue 12 the simple model put a learnable 1x1 conv N*D -> N before a linear layer over N*H'*W'
(a factorised, position-shared map, not the original's); it is kept as embedding ``simple_factorised``
and not run here.

Deviations from the original: those of :mod:`.network`; at ``cpu`` scale half the training images
(4,000) and a fixed random half of the test set (5,000), so that the two variants' budget curves fit the
page's time; N and k are the paper's Table 2 values (256, 64) at cpu and paper scale, 16 and 4 at smoke.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_float
from ...models.simple import simple_parameters
from ..result import Result
from . import budget
from .network import ChapterConfig, page_text, presets, run_variants, summarise, table
from .plots import accuracy_figure, curves_figure, val_curve

#: CIFAR-10's image shape, the paper preset's data (for the paper-scale size of the Simple model)
PAPER_SHAPE = (3, 32, 32)
#: the head of both variants in the Table 2 commands: no pooling, no BatchNorm, no bottleneck
TABLE2_HEAD = dict(avg_pool=[False], batch_norm=[False], bottleneck=False)


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Table 2's parameters: the chapter's budget with its own N, k, batch and ``lr`` (the constrained
    embedding's), and ``lr_simple``, the simple embedding's learning rate."""

    lr_simple: float = 1e-5

    def validate(self) -> None:
        super().validate()
        check_float("lr_simple", self.lr_simple, 0, strict_min=True)


_TABLE2 = dict(batch_size=32, lr=1e-3, lr_simple=1e-5)
PRESETS = presets(smoke=dict(n_centroids=16, k=4, n_patches=4096, **_TABLE2),
                  cpu=dict(train_size=4000, val_size=2000, test_size=5000, epochs=2, schedule="multistep",
                           budget_fractions=(0.25, 0.5, 1.0), n_centroids=256, k=64, n_patches=65536, **_TABLE2),
                  paper=dict(n_centroids=256, k=64, n_patches=65536, **_TABLE2))
Config.PRESETS = PRESETS


def run(cfg: Config) -> Result:
    """Table 2: ``tab_table2``, ``fig_table2`` (accuracy per variant), ``fig_curves_table2`` (training
    curves), ``fig_budget_table2`` (budget curves); text ``acc_simple``, ``acc_constrained``, the verdict
    ``claim_constrained`` and ``claim_constrained_gap``, ``simple_params`` (the Simple model's parameters
    on this page's data, 5x5 patches) and ``simple_params_paper`` (at the paper preset, CIFAR-10),
    ``t2_desc``, ``budget_images``,
    ``budget_schedule`` and the page's ``data_desc`` / ``budget_desc``; numbers ``acc_simple``,
    ``acc_constrained``, ``claim_constrained_diff``."""
    splits = cfg.load_data()
    lrs = {"Simple": cfg.lr_simple, "Constrained": cfg.lr}
    variants = {"Simple": dict(embedding="simple", lr=cfg.lr_simple, **TABLE2_HEAD),
                "Constrained": dict(embedding="full", lr=cfg.lr, **TABLE2_HEAD)}
    outs = run_variants(cfg, variants, splits, desc="Table 2 runs")
    rows = {name: {**summarise(name, outs[name]), "lr": f"{lrs[name]:g}"} for name in variants}
    curve = budget.run_budgets(cfg, variants, splits, full=outs, desc="Table 2 budget curve")
    acc = {name: curve.accs(name) for name in variants}
    v = budget.decide(curve.budgets, acc["Constrained"], acc["Simple"])
    text = {**page_text(cfg, splits), **budget.budget_text(cfg, curve.budgets),
            "t2_desc": f"N={cfg.n_centroids}, k={cfg.k}, batch {cfg.batch_size}, learning rates {cfg.lr_simple:g} "
                       f"(simple) and {cfg.lr:g} (constrained)",
            "acc_simple": rows["Simple"]["test acc. (%)"], "acc_constrained": rows["Constrained"]["test acc. (%)"],
            "simple_params": f"{simple_parameters(splits.shape, cfg.n_centroids, 5, len(splits.classes)):,}",
            "simple_params_paper": f"{simple_parameters(PAPER_SHAPE, PRESETS['paper']['n_centroids']):,}",
            **budget.claim_text("claim_constrained", v)}
    numbers = {"acc_simple": rows["Simple"]["_mean"], "acc_constrained": rows["Constrained"]["_mean"],
               **budget.claim_numbers("claim_constrained", v)}
    title = f"Table 2 ({cfg.dataset}, scale={cfg.scale})"
    figures = {"fig_table2": accuracy_figure(list(rows.values()), title),
               "fig_curves_table2": curves_figure({title: {n: val_curve(outs[n]) for n in variants}}),
               "fig_budget_table2": budget.figure(curve.budgets, acc, title)}
    return Result(cfg, tables={"tab_table2": table(list(rows.values()))}, figures=figures, text=text,
                  numbers=numbers, runs={"table": outs, "budgets": curve.plain()})

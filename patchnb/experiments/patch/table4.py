"""Table 4 of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features" (ICML 2022):
accuracy across depth, the patch algorithm run layer by layer.

What the recipe does: depths 1 to ``max_depth`` trained layerwise (train a layer, freeze it, build a new
dictionary from its bottleneck output, train the next layer on top) for Phi_full, Phi_hard and a
layerwise CNN (learnable conv + ReLU per layer), beside VGG-like CNNs of each depth trained end to end.
The layers follow the Table 4 commands (:data:`~patchnb.models.patch.TABLE4_LAYERS`, written once there):
kernels 5, 3, 3, 3; AvgPool(2, 2) and BatchNorm after layer 1 only; k of layer 1 (``k``, the paper's
N/4) and half of it for the deeper layers (the paper's 256, 128, 128, 128 at N = 1024). The CNNs have as
many channels as the dictionary has centroids, padding 0, no MLP hidden layer and a ReLU after the
bottleneck. One layerwise run yields the accuracies of every depth. The page checks the abstract's claim
that depth gives further gains, for Phi_full and Phi_hard, and that the deepest Phi_full beats the
end-to-end CNN of the same depth, each by the book's rule from runs at the budgets of ``budget_fractions``
(:mod:`.budget`: the two layerwise patch families and the deepest end-to-end CNN; the table is the full
budget). Figures: accuracy against depth, training curves (a layerwise run's stages one after another),
the budget curves.

Deviations from the original: those of :mod:`.network`; below ``paper`` scale the dictionary is smaller
(N = 16 / 64 instead of 1024), the smoke scale stops at depth 2, and at cpu scale the table trains on
half the images (4 families x 4 depths x seeds). The same few epochs train every stage, so a deeper
layerwise model has seen more epochs in total than the end-to-end CNN of its depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt

from ...checks import check_int
from ...models.patch import TABLE4_LAYERS, table4_layers
from ..result import Result
from . import budget
from .network import ChapterConfig, page_text, presets, run_variants, summarise, table
from .plots import curves_figure, val_curve

POOL = 2  # AvgPool(2, 2) after layer 1 (the Table 4 commands' --pool-size 2 --pool-stride 2)
#: the families of the table, and the names their numbers are glued under
FAMILIES = {"Phi_full": "full", "Phi_hard": "hard", "CNN (end to end)": "cnn", "CNN (layerwise)": "cnn_layerwise"}
LAYERWISE = {"Phi_full": "full", "Phi_hard": "hard", "CNN (layerwise)": "conv"}  # family -> embedding


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Table 4's parameters: the chapter's budget with its own N (``n_centroids``, also the CNNs' channels)
    and layer-1 ``k``, and ``max_depth``, the deepest model."""

    max_depth: int = 4

    def validate(self) -> None:
        super().validate()
        check_int("max_depth", self.max_depth, 1)

    def layer_ks(self) -> list[int]:
        """k per layer: ``k`` for layer 1, then Table 4's ratios (256, 128, 128, 128 at k = 256)."""
        first = TABLE4_LAYERS["k"][0]
        return [max(1, self.k * k // first) for k in table4_layers("k", self.max_depth)]

    def layerwise(self) -> dict:
        """The :class:`~.network.RunConfig` overrides of a layerwise run to ``max_depth``."""
        d = self.max_depth
        return dict(depth=d, kernel_size=table4_layers("kernel_size", d), n_centroids=self.n_centroids,
                    k=self.layer_ks(), avg_pool=table4_layers("avg_pool", d),
                    batch_norm=table4_layers("batch_norm", d), pool_size=POOL, pool_stride=POOL)

    def end_to_end(self, depth: int) -> dict:
        """The :class:`~.network.RunConfig` overrides of the VGG-like CNN of ``depth`` layers."""
        return dict(model="vgg", depth=depth, width=self.n_centroids, kernel_size=table4_layers("kernel_size", depth),
                    padding=[0] * depth, batch_norm=table4_layers("batch_norm", depth), mlp_hidden_layers=0,
                    relu_after_bottleneck=True, k=None)


PRESETS = presets(smoke=dict(max_depth=2, n_centroids=16, k=4),
                  cpu=dict(max_depth=4, n_centroids=64, k=16, train_size=8000, val_size=2000,
                           budget_fractions=(0.25, 0.5, 1.0)),
                  paper=dict(max_depth=4, n_centroids=1024, k=256))
Config.PRESETS = PRESETS


def run(cfg: Config) -> Result:
    """Table 4: ``tab_table4``, ``fig_table4`` (accuracy against depth), ``fig_curves_table4`` (training
    curves), ``fig_budget_table4`` (budget curves); text ``acc_<family>_d<depth>``, ``best_depth_<family>``,
    ``max_depth``, ``t4_desc``, the verdicts ``claim_depth_full``, ``claim_depth_hard``,
    ``claim_full_vs_cnn`` with their ``<claim>_gap``, ``budget_images``, ``budget_schedule`` and the page's
    ``data_desc`` / ``budget_desc``; numbers ``acc_<family>_d<depth>`` and ``<claim>_diff``."""
    splits = cfg.load_data()
    depths = list(range(1, cfg.max_depth + 1))
    variants = {name: dict(embedding=emb, **cfg.layerwise()) for name, emb in LAYERWISE.items()}
    variants.update({f"CNN (end to end), depth {d}": cfg.end_to_end(d) for d in depths})
    outs = run_variants(cfg, variants, splits, desc="Table 4 runs")
    rows, by = [], {}
    for d in depths:
        for name in ("Phi_full", "Phi_hard", "CNN (layerwise)", "CNN (end to end)"):
            if name in LAYERWISE:
                r = summarise(f"{name}, depth {d}", outs[name], depth=d)
            else:
                r = summarise(f"{name}, depth {d}", outs[f"{name}, depth {d}"])
            r["family"], r["depth"] = name, d
            by[(name, d)] = r
            rows.append(r)
    text = {**page_text(cfg, splits), "max_depth": str(cfg.max_depth),
            "t4_desc": f"N={cfg.n_centroids} centroids (and CNN channels), k={cfg.layer_ks()}"}
    numbers = {}
    for name, key in FAMILIES.items():
        for d in depths:
            text[f"acc_{key}_d{d}"] = by[(name, d)]["test acc. (%)"]
            numbers[f"acc_{key}_d{d}"] = by[(name, d)]["_mean"]
        text[f"best_depth_{key}"] = str(max(depths, key=lambda d: by[(name, d)]["_mean"]))
    top = cfg.max_depth
    deepest_cnn = f"CNN (end to end), depth {top}"
    curve = budget.run_budgets(cfg, {name: variants[name] for name in ("Phi_full", "Phi_hard", deepest_cnn)},
                               splits, full=outs, desc="Table 4 budget curve")
    acc = {f"Phi_full, depth {top}": curve.accs("Phi_full", top), "Phi_full, depth 1": curve.accs("Phi_full", 1),
           f"Phi_hard, depth {top}": curve.accs("Phi_hard", top), "Phi_hard, depth 1": curve.accs("Phi_hard", 1),
           deepest_cnn: curve.accs(deepest_cnn)}  # an end-to-end run records one result
    verdicts = {
        "claim_depth_full": budget.decide(curve.budgets, acc[f"Phi_full, depth {top}"], acc["Phi_full, depth 1"]),
        "claim_depth_hard": budget.decide(curve.budgets, acc[f"Phi_hard, depth {top}"], acc["Phi_hard, depth 1"]),
        "claim_full_vs_cnn": budget.decide(curve.budgets, acc[f"Phi_full, depth {top}"], acc[deepest_cnn])}
    text.update(budget.budget_text(cfg, curve.budgets))
    for claim, v in verdicts.items():
        text.update(budget.claim_text(claim, v))
        numbers.update(budget.claim_numbers(claim, v))
    title = f"Table 4 ({cfg.dataset}, scale={cfg.scale})"
    panels = {"layerwise (stage d trains after stages 1..d-1)": {name: val_curve(outs[name], top)
                                                                 for name in LAYERWISE},
              "CNN end to end": {f"depth {d}": val_curve(outs[f"CNN (end to end), depth {d}"]) for d in depths}}
    figures = {"fig_table4": depth_figure(cfg, by, depths), "fig_curves_table4": curves_figure(panels),
               "fig_budget_table4": budget.figure(curve.budgets, acc, title)}
    return Result(cfg, tables={"tab_table4": table(rows)}, figures=figures, text=text, numbers=numbers,
                  runs={"table": outs, "budgets": curve.plain()})


def depth_figure(cfg: Config, by: dict, depths: list[int]):
    """Test accuracy (mean ± std over seeds) against depth, one line per family."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in ("Phi_full", "Phi_hard", "CNN (end to end)", "CNN (layerwise)"):
        ax.errorbar(depths, [100 * by[(name, d)]["_mean"] for d in depths],
                    yerr=[100 * by[(name, d)]["_std"] for d in depths], marker="o", capsize=3, label=name)
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(depths)
    ax.set_title(f"Accuracy across depth ({cfg.dataset}, scale={cfg.scale})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.close(fig)
    return fig

"""Table 3 of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features" (ICML 2022):
which parts of the head matter, pooling or the bottleneck.

What the recipe does: Phi_full with a clustered dictionary at the chapter's budget, with four heads:
*Original* (no pooling, no bottleneck), *AvgPool* (AvgPool 4 + BatchNorm), *Bottleneck* (1x1 to 32) and
*Both* (the paper's default head; the same runs as Table 1's "Phi_full, clustered patches", shared through
the run cache). The paper uses *Both* in every other experiment, so the page reads its claim as "Both is
the best head" and checks that (Both against the best of the other three heads at the full budget), the
ordering of the four, and whether each part alone helps; each claim by the book's rule from the heads'
runs at the budgets of ``budget_fractions`` (:mod:`.budget`; the table is the full budget). Figures:
accuracy per head, training curves, the budget curves.

Deviations from the original: those of :mod:`.network`. The paper's Table 3 numbers were not reachable
offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..result import Result
from . import budget
from .network import ChapterConfig, page_text, presets, run_variants, summarise, table
from .plots import accuracy_figure, curves_figure, val_curve

#: the four heads (:class:`~.network.RunConfig` overrides of Phi_full); "Both" is the default head
HEADS = {"Original": dict(avg_pool=[False], batch_norm=[False], bottleneck=False),
         "AvgPool": dict(avg_pool=[True], batch_norm=[True], bottleneck=False),
         "Bottleneck": dict(avg_pool=[False], batch_norm=[False], bottleneck=True),
         "Both": dict()}


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Table 3 runs the chapter's budget as it is: no parameters of its own."""


#: cpu: a quarter of Table 1's training images (13,500: Table 1's quarter-budget runs are this table's Both)
PRESETS = presets(cpu=dict(train_size=13500))
Config.PRESETS = PRESETS


def run(cfg: Config) -> Result:
    """Table 3: ``tab_table3``, ``fig_table3`` (accuracy per head), ``fig_curves_table3`` (training
    curves), ``fig_budget_table3`` (budget curves); text ``acc_<head>`` (lower case), ``t3_order``,
    ``t3_rival`` (the best head other than Both), the verdicts ``claim_both_best``, ``claim_pool_helps``,
    ``claim_bottleneck_helps`` with their ``<claim>_gap``, ``budget_images``, ``budget_schedule`` and the
    page's ``data_desc`` / ``budget_desc``; numbers ``acc_<head>`` (means) and ``<claim>_diff``."""
    splits = cfg.load_data()
    variants = {name: dict(embedding="full", **kw) for name, kw in HEADS.items()}
    outs = run_variants(cfg, variants, splits, desc="Table 3 runs")
    rows = {name: summarise(name, outs[name]) for name in HEADS}
    order = sorted(HEADS, key=lambda n: -rows[n]["_mean"])
    rival = next(n for n in order if n != "Both")
    curve = budget.run_budgets(cfg, variants, splits, full=outs, desc="Table 3 budget curve")
    acc = {name: curve.accs(name) for name in HEADS}
    verdicts = {"claim_both_best": budget.decide(curve.budgets, acc["Both"], acc[rival]),
                "claim_pool_helps": budget.decide(curve.budgets, acc["AvgPool"], acc["Original"]),
                "claim_bottleneck_helps": budget.decide(curve.budgets, acc["Bottleneck"], acc["Original"])}
    text = {**page_text(cfg, splits), **budget.budget_text(cfg, curve.budgets),
            **{f"acc_{name.lower()}": rows[name]["test acc. (%)"] for name in HEADS},
            "t3_order": " > ".join(order), "t3_rival": rival}
    numbers = {f"acc_{name.lower()}": rows[name]["_mean"] for name in HEADS}
    for claim, v in verdicts.items():
        text.update(budget.claim_text(claim, v))
        numbers.update(budget.claim_numbers(claim, v))
    title = f"Table 3 ({cfg.dataset}, scale={cfg.scale})"
    figures = {"fig_table3": accuracy_figure(list(rows.values()), title),
               "fig_curves_table3": curves_figure({title: {n: val_curve(outs[n]) for n in HEADS}}),
               "fig_budget_table3": budget.figure(curve.budgets, acc, title)}
    return Result(cfg, tables={"tab_table3": table(list(rows.values()))}, figures=figures, text=text,
                  numbers=numbers, runs={"table": outs, "budgets": curve.plain()})

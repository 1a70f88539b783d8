"""Table 3 of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features" (ICML 2022):
which parts of the head matter, pooling or the bottleneck.

What the recipe does: Phi_full with a clustered dictionary at the chapter's budget, with four heads:
*Original* (no pooling, no bottleneck), *AvgPool* (AvgPool 4 + BatchNorm), *Bottleneck* (1x1 to 32) and
*Both* (the paper's default head; the same runs as Table 1's "Phi_full, clustered patches", shared through
the run cache). The paper uses *Both* in every other experiment, so the page reads its claim as "Both is
the best head" and checks that, the ordering of the four, and whether each part alone helps.

Deviations from the original: those of :mod:`.network`. The paper's Table 3 numbers were not reachable
offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import Result
from .network import ChapterConfig, page_text, presets, run_variants, summarise, table, verdict, word

#: the four heads (:class:`~.network.RunConfig` overrides of Phi_full); "Both" is the default head
HEADS = {"Original": dict(avg_pool=[False], batch_norm=[False], bottleneck=False),
         "AvgPool": dict(avg_pool=[True], batch_norm=[True], bottleneck=False),
         "Bottleneck": dict(avg_pool=[False], batch_norm=[False], bottleneck=True),
         "Both": dict()}


@dataclass(frozen=True)
class Config(ChapterConfig):
    """Table 3 runs the chapter's budget as it is: no parameters of its own."""


PRESETS = presets()
Config.PRESETS = PRESETS


def run(cfg: Config) -> Result:
    """Table 3: ``tab_table3``; text ``acc_<head>`` (lower case), ``t3_order``, the verdicts
    ``claim_both_best``, ``claim_pool_helps``, ``claim_bottleneck_helps`` and the page's
    ``data_desc`` / ``budget_desc``; numbers ``acc_<head>`` (means)."""
    splits = cfg.load_data()
    outs = run_variants(cfg, {name: dict(embedding="full", **kw) for name, kw in HEADS.items()}, splits,
                        desc="Table 3 runs")
    rows = {name: summarise(name, outs[name]) for name in HEADS}
    order = sorted(HEADS, key=lambda n: -rows[n]["_mean"])
    text = {**page_text(cfg, splits),
            **{f"acc_{name.lower()}": rows[name]["test acc. (%)"] for name in HEADS},
            "t3_order": " > ".join(order),
            "claim_both_best": word(order[0] == "Both"),
            "claim_pool_helps": verdict(rows["AvgPool"], rows["Original"]),
            "claim_bottleneck_helps": verdict(rows["Bottleneck"], rows["Original"])}
    numbers = {f"acc_{name.lower()}": rows[name]["_mean"] for name in HEADS}
    return Result(cfg, tables={"tab_table3": table(list(rows.values()))}, text=text, numbers=numbers, runs=outs)

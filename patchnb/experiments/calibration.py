"""How a verdict is decided, and how often it is wrong: the book's rule (:mod:`patchnb.experiments.verdict`)
simulated on budget curves like the book's.

Each simulated claim has paired per-seed differences at ``n_budgets`` budgets with a true difference of
``effect`` seed standard deviations at every budget and seed noise correlated ``rho`` between budgets
(nested training sets and the same seeds make the book's budgets correlated). With ``effect = 0`` the
fraction called decisive is the rule's **false-decisive rate**, which must stay at most ``ALPHA``; with an
effect it is the rule's **power**. The same simulation runs in the test suite (``tests/test_verdict.py``),
which asserts the first. For contrast the page also runs the rule the book used before (decisive when the
claimed sign holds at the two largest budgets and the gap exceeds two standard errors at the largest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import verdict as V
from .base import ExperimentConfig
from .result import Result


@dataclass(frozen=True)
class Config(ExperimentConfig):
    n_sims: int = 20000
    seed_counts: tuple[int, ...] = (2, 3, 5)
    rhos: tuple[float, ...] = (0.0, 0.8)
    effects: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0)
    looks: tuple[int, ...] = (3, 5)
    n_budgets: int = 3

    def validate(self) -> None:
        if isinstance(self.n_sims, bool) or not isinstance(self.n_sims, int) or self.n_sims < 100:
            raise ValueError(f"n_sims={self.n_sims!r} must be an int >= 100 (simulated claims per cell)")
        if not self.seed_counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 2
                                       for n in self.seed_counts):
            raise ValueError(f"seed_counts={self.seed_counts!r} must be ints >= 2 (seeds per variant)")
        if not self.rhos or any(not isinstance(r, (int, float)) or not 0 <= r < 1 for r in self.rhos):
            raise ValueError(f"rhos={self.rhos!r} must be correlations in [0, 1)")
        if not self.effects or any(not isinstance(e, (int, float)) or e <= 0 for e in self.effects):
            raise ValueError(f"effects={self.effects!r} must be positive effects in seed SDs")
        if isinstance(self.n_budgets, bool) or not isinstance(self.n_budgets, int) or self.n_budgets < V.MIN_BUDGETS:
            raise ValueError(f"n_budgets={self.n_budgets!r} must be an int >= {V.MIN_BUDGETS}")
        if len(self.looks) < 1 or list(self.looks) != sorted(set(self.looks)) or self.looks[0] < 2:
            raise ValueError(f"looks={self.looks!r} must be increasing seed counts >= 2, e.g. (3, 5)")


PRESETS = {"smoke": {"n_sims": 2000}, "cpu": {"n_sims": 20000}, "paper": {"n_sims": 100000}}
Config.PRESETS = PRESETS


def previous_rule_rate(n_seeds: int, rho: float, n_sims: int, n_budgets: int = 3, seed: int = 0) -> float:
    """The false-decisive rate of the rule the book used before this one (the claimed sign at the two largest
    budgets and a gap over two standard errors at the largest), on the same simulated null curves."""
    rng = np.random.default_rng(seed)
    sims = V._simulated(0.0, n_seeds, rho, n_sims, n_budgets, rng)
    d = sims.mean(-1)
    se = sims.std(-1, ddof=1) / math.sqrt(n_seeds)
    same = np.sign(d[:, -2]) == np.sign(d[:, -1])
    return float((same & (np.abs(d[:, -1]) > 2 * se[:, -1])).mean())


def _mc(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-12) / n)


def run(cfg: Config) -> Result:
    """The rule's false-decisive rate and power over ``cfg``'s grid: a table, a power figure and the words the
    book's introduction cites."""
    import matplotlib.pyplot as plt
    import pandas as pd

    n = cfg.n_sims
    designs = [(f"{k} seeds", k, None) for k in cfg.seed_counts]
    designs.append((f"sequential {' then '.join(map(str, cfg.looks))} seeds", max(cfg.looks), cfg.looks))
    rows, numbers = [], {}
    for label, k, looks in designs:
        for rho in cfg.rhos:
            null = V.null_decisive_rate(k, rho, n, cfg.n_budgets, looks=looks, seed=1)
            row = {"design": label, "budget correlation": rho,
                   "false-decisive rate (%)": f"{100 * null:.1f} ± {100 * _mc(null, n):.1f}"}
            if looks is None:
                old = previous_rule_rate(k, rho, n, cfg.n_budgets, seed=1)
                row["previous rule (%)"] = f"{100 * old:.1f}"
                numbers[f"previous_{k}_{rho:g}"] = old
            else:
                row["previous rule (%)"] = "-"
            for e in cfg.effects:
                row[f"power at {e:g} SD (%)"] = f"{100 * V.power(e, k, rho, n, cfg.n_budgets, looks=looks, seed=2):.0f}"
            numbers[f"null_{label}_{rho:g}"] = null
            rows.append(row)
    table = pd.DataFrame(rows)

    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    grid = np.linspace(0, max(cfg.effects), 9)
    rho = max(cfg.rhos)
    for label, k, looks in designs:
        ax.plot(grid, [100 * V.power(e, k, rho, max(2000, n // 10), cfg.n_budgets, looks=looks, seed=3) for e in grid],
                marker="o", label=label)
    ax.axhline(100 * V.ALPHA, color="0.4", linestyle="--", linewidth=1, label=f"alpha = {V.ALPHA:g}")
    ax.set_xlabel("true difference (seed standard deviations)")
    ax.set_ylabel("called decisive (%)")
    ax.set_title(f"the rule's power, budgets correlated {rho:g}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)

    worst = max(v for key, v in numbers.items() if key.startswith("null_"))
    k3 = 3 if 3 in cfg.seed_counts else cfg.seed_counts[0]
    p1 = V.power(1.0, k3, rho, n, cfg.n_budgets, seed=2)
    p3 = V.power(3.0, k3, rho, n, cfg.n_budgets, seed=2)
    p3_seq = V.power(3.0, max(cfg.looks), rho, n, cfg.n_budgets, looks=cfg.looks, seed=2)
    k_old = min(cfg.seed_counts)
    text = {
        "alpha": f"{V.ALPHA:g}",
        "alpha_side": f"{V.ALPHA / 2:g}",
        "worst_null": f"{100 * worst:.1f} %",
        "n_sims": f"{n:,}",
        "rho_max": f"{rho:g}",
        "k3": str(k3),
        "power_1sd": f"{100 * p1:.0f} %",
        "power_3sd": f"{100 * p3:.0f} %",
        "power_3sd_seq": f"{100 * p3_seq:.0f} %",
        "looks": " then ".join(map(str, cfg.looks)),
        "effects": ", ".join(f"{e:g}" for e in cfg.effects),
        "k_old": str(k_old),
        "previous_null": f"{100 * numbers[f'previous_{k_old}_{rho:g}']:.1f} %",
    }
    numbers.update(worst_null=worst, power_1sd=p1, power_3sd=p3, power_3sd_seq=p3_seq)
    return Result(cfg, tables={"calibration": table}, figures={"power": fig}, text=text, numbers=numbers)

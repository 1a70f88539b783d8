"""The patch chapter's figure styles beside its tables (Brutzkus et al., ICML 2022; issue "The published
book and its readers", §2): test accuracy per variant with error bars over seeds, and training curves
(validation accuracy per epoch, mean over seeds) from the history every run records
(:func:`~.network.run_network`'s ``results[d]["history"]``, one row per epoch with ``val_score``).

Kept out of :mod:`.network` so that a change of style does not invalidate the cached runs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def accuracy_figure(rows: list[dict], title: str):
    """Test accuracy per variant (rows of :func:`~.network.summarise`): the mean over seeds with an
    error bar of one standard deviation, and each seed's accuracy as a small dot."""
    fig, ax = plt.subplots(figsize=(5.6, 0.45 * len(rows) + 1.2))
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows):
        accs = 100 * np.asarray(r["_accs"])
        ax.errorbar(100 * r["_mean"], y, xerr=100 * r["_std"] if len(accs) > 1 else None, fmt="o", color="C0",
                    capsize=3)
        ax.plot(accs, [y] * len(accs), ".", color="0.45", markersize=4)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["variant"] for r in rows], fontsize=8)
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("variant")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    plt.close(fig)
    return fig


def val_curve(records: list[dict], stages: int = 1) -> tuple[list[int], list[float]]:
    """Validation accuracy (%) per epoch, mean over the runs in ``records`` (one per seed). With
    ``stages`` > 1 (a layerwise run) the histories of layers 1..stages follow one another, so the x axis
    counts the epochs of all stages so far."""
    per_seed = []
    for o in records:
        rows = [row for res in o["results"][:stages] for row in res["history"]]
        per_seed.append([100 * float(row["val_score"]) for row in rows])
    n = min(len(h) for h in per_seed)
    return list(range(1, n + 1)), [float(np.mean([h[i] for h in per_seed])) for i in range(n)]


def curves_figure(panels: dict[str, dict[str, tuple[list[int], list[float]]]], xlabel: str = "epoch"):
    """Training curves: one panel per entry of ``panels`` (its title), one line per ``{label: (epochs,
    val accuracy %)}`` (:func:`val_curve`)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for label, (x, y) in curves.items():
            ax.plot(x, y, marker="o", markersize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=7)
        epochs = sorted({x for xs, _ in curves.values() for x in xs})
        if 0 < len(epochs) <= 12:  # every epoch a tick (a 1-epoch run would get ticks at 0.96 .. 1.04)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    plt.close(fig)
    return fig

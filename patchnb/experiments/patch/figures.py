"""Figures 6, 8 and 9 of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features"
(ICML 2022): kernels, neighbours and dictionary size.

What the recipe does:

* Figure 6 (App. C.4): the first 16 first-layer kernels of the vanilla one-hidden-layer CNN (Table 1's
  run, shared through the run cache) beside 16 centroids of a k-means dictionary of ZCA-whitened
  patches (:func:`patchnb.embedding.build_dictionary`, the chapter's N, patches and k-means iterations);
* Figure 8 (App. C.5): Phi_full's test accuracy for each k in ``ks`` at the chapter's N;
* Figure 9 (App. C.5): for each dictionary size N in ``ns`` with k = N/4 and ``n_patches`` scaled with N
  (at most the paper's 256 N).

Each run is Phi_full with a clustered dictionary and the paper's head at the chapter's budget; the
point k = the chapter's k (and N = the chapter's N) is Table 1's Phi_full run. The page checks that an
intermediate k works best (an interior optimum: the best interior k of the full budget against the better
of the two ends) and that the largest N beats the smallest, each by the book's rule from those runs at
the budgets of ``budget_fractions`` (:mod:`.budget`; the curves of Figures 8 and 9 are the full budget).
Figures beside them: the budget curves of both claims and the training curves of every run.

Deviations from the original: those of :mod:`.network`; ``curve_seeds`` can limit the curves to the first
seeds (every scale runs all of them since issue 12; one seed cannot settle a claim), the cpu scale trains
on 13,500 images (a quarter of Table 1's: its point k = 64, N = 256 is Table 1's quarter-budget Phi_full
run), and the k and N grids are
shorter below ``paper`` scale (the paper: k = 1..1024, N = 1024..16384).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...book import pm
from ...cache import cached
from ...checks import check_int
from ...embedding import build_dictionary
from ...plots import patch_rows
from ..result import Result
from . import budget, table1
from .network import ChapterConfig, cached_run, page_text, presets, run_variants, summarise
from .plots import curves_figure, val_curve

PATCH_SIZE = 5      # the dictionary's and the CNN's 5x5 patches
FIG6_SHOWN = 16     # kernels and centroids shown per row


@dataclass(frozen=True)
class Config(ChapterConfig):
    """The Figures' parameters: the chapter's budget, the grids ``ks`` (Figure 8, at least three values,
    increasing: an interior optimum needs an interior) and ``ns`` (Figure 9, at least two, increasing),
    and ``curve_seeds``: how many of ``seeds`` each curve point is run with (None: all)."""

    ks: tuple[int, ...] = (4, 16, 64, 128)
    ns: tuple[int, ...] = (32, 64, 128, 256)
    curve_seeds: int | None = None

    def validate(self) -> None:
        super().validate()
        for name, least in (("ks", 3), ("ns", 2)):
            values = getattr(self, name)
            if not isinstance(values, tuple) or len(values) < least:
                raise ValueError(f"{name} must be a list of at least {least} integers, got {values!r}")
            for v in values:
                check_int(name, v, 1)
            if list(values) != sorted(set(values)):
                raise ValueError(f"{name}={list(values)} must be increasing, without repeats")
        if max(self.ks) > self.n_centroids:
            raise ValueError(f"ks={list(self.ks)} has k > n_centroids={self.n_centroids} (the dictionary size)")
        check_int("curve_seeds", self.curve_seeds, 1, allow_none=True)

    def curve_seed_list(self) -> tuple[int, ...]:
        return self.seeds[:self.curve_seeds] if self.curve_seeds else self.seeds

    def k_variants(self) -> dict[str, dict]:
        """Figure 8's runs: ``{setting: RunConfig overrides}``."""
        return {f"k={k}, N={self.n_centroids}": dict(embedding="full", k=[k]) for k in self.ks}

    def n_variants(self) -> dict[str, dict]:
        """Figure 9's runs: k = N/4, patches for k-means scaled with N (at most 256 N)."""
        return {f"N={n}, k={max(1, n // 4)}": dict(embedding="full", n_centroids=n, k=[max(1, n // 4)],
                                                    n_patches=min(256 * n, self.n_patches * n // self.n_centroids))
                for n in self.ns}


PRESETS = presets(smoke=dict(ks=(2, 8, 16), ns=(16, 32), curve_seeds=None),
                  cpu=dict(ks=(4, 16, 64, 128), ns=(32, 64, 128, 256), curve_seeds=None, train_size=13500),
                  paper=dict(ks=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), ns=(1024, 2048, 4096, 8192, 16384),
                             curve_seeds=None))
Config.PRESETS = PRESETS


def zca_centroids(cfg: Config, splits) -> dict:
    """Figure 6's dictionary: k-means centroids of ZCA-whitened patches of the training images (cached)."""
    key = {"dataset": cfg.dataset, "train_size": cfg.train_size, "val_size": cfg.val_size, "patch_size": PATCH_SIZE,
           "n_patches": cfg.n_patches, "n_centroids": cfg.n_centroids, "whitening": "zca", "seed": cfg.seeds[0],
           "kmeans_iters": cfg.kmeans_iters}

    def compute(_run_dir):
        d = build_dictionary(splits.norm(splits.train.images), PATCH_SIZE, cfg.n_patches, cfg.n_centroids, "zca",
                             seed=cfg.seeds[0], n_iter=cfg.kmeans_iters)
        return {"centroids": d["centroids"], "channels": d["channels"]}

    return cached("patch_zca_dictionary", key, compute)


def run(cfg: Config) -> Result:
    """Figures 6, 8, 9: ``fig6``, ``fig8``, ``fig9``, ``tab_figures``, ``fig_budget_k``, ``fig_budget_n``
    (budget curves of the two claims), ``fig_curves_figures`` (training curves); text ``ks``, ``ns``,
    ``fig_seeds``, ``best_k``, ``best_n``, ``k_interior``, ``k_end`` (the two k the interior claim
    compares), the verdicts ``claim_k_interior``, ``claim_n_grows`` with their ``<claim>_gap``,
    ``budget_images``, ``budget_schedule`` and the page's ``data_desc`` / ``budget_desc``; numbers
    ``acc_k<k>`` and ``acc_n<N>`` (means) and ``<claim>_diff``."""
    splits = cfg.load_data()
    seeds = cfg.curve_seed_list()
    k_variants, n_variants = cfg.k_variants(), cfg.n_variants()
    k_runs = run_variants(cfg, k_variants, splits, seeds, desc="Figure 8 runs")
    n_runs = run_variants(cfg, n_variants, splits, seeds, desc="Figure 9 runs")
    k_rows = [summarise(s, outs) for s, outs in k_runs.items()]
    n_rows = [summarise(s, outs) for s, outs in n_runs.items()]
    cnn = cached_run(cfg.run_config(cfg.seeds[0], **table1.VARIANTS["vanilla CNN"]), splits)
    zca = zca_centroids(cfg, splits)
    k_means, n_means = [r["_mean"] for r in k_rows], [r["_mean"] for r in n_rows]
    best_k = int(np.argmax(k_means))
    k_names, n_names = list(k_variants), list(n_variants)
    interior = k_names[1 + int(np.argmax(k_means[1:-1]))]
    end = k_names[0] if k_means[0] >= k_means[-1] else k_names[-1]
    compared = {interior: k_variants[interior], end: k_variants[end]}
    k_curve = budget.run_budgets(cfg, compared, splits, full=k_runs, seeds=seeds, desc="Figure 8 budget curve")
    ends = {n_names[0]: n_variants[n_names[0]], n_names[-1]: n_variants[n_names[-1]]}
    n_curve = budget.run_budgets(cfg, ends, splits, full=n_runs, seeds=seeds, desc="Figure 9 budget curve")
    k_acc = {name: k_curve.accs(name) for name in compared}
    n_acc = {name: n_curve.accs(name) for name in ends}
    verdicts = {"claim_k_interior": budget.decide(k_curve.budgets, k_acc[interior], k_acc[end]),
                "claim_n_grows": budget.decide(n_curve.budgets, n_acc[n_names[-1]], n_acc[n_names[0]])}
    frame = pd.DataFrame({
        "setting": [r["variant"] for r in k_rows + n_rows],
        "test acc. (%)": [pm(r["_mean"], r["_std"]) if len(seeds) > 1 else f"{100 * r['_mean']:.1f} (one seed)"
                          for r in k_rows + n_rows],
        "wall-clock / run (s)": [f"{r['_seconds']:.0f}" for r in k_rows + n_rows]}).set_index("setting")
    text = {**page_text(cfg, splits), **budget.budget_text(cfg, k_curve.budgets),
            "ks": ", ".join(map(str, cfg.ks)), "ns": ", ".join(map(str, cfg.ns)),
            "fig_seeds": ", ".join(map(str, seeds)), "best_k": str(cfg.ks[best_k]),
            "best_n": str(cfg.ns[int(np.argmax(n_means))]), "k_interior": interior, "k_end": end}
    numbers = {**{f"acc_k{k}": m for k, m in zip(cfg.ks, k_means)},
               **{f"acc_n{n}": m for n, m in zip(cfg.ns, n_means)}}
    for claim, v in verdicts.items():
        text.update(budget.claim_text(claim, v))
        numbers.update(budget.claim_numbers(claim, v))
    shape = (-1, zca["channels"], PATCH_SIZE, PATCH_SIZE)
    title = f"Phi_full, {cfg.dataset}, scale={cfg.scale}"
    figures = {"fig6": patch_rows({"CNN kernels": cnn["first_conv"][:FIG6_SHOWN],
                                   "whitened patches (ZCA)": zca["centroids"][:FIG6_SHOWN].reshape(shape)},
                                  title="Learned CNN kernels (top) and ZCA-whitened dictionary patches (bottom)"),
               "fig8": curve_figure(cfg, cfg.ks, k_rows, f"k (neighbours), N={cfg.n_centroids}"),
               "fig9": curve_figure(cfg, cfg.ns, n_rows, "dictionary size N (k = N/4)"),
               "fig_budget_k": budget.figure(k_curve.budgets, k_acc, f"Figure 8's claim: {title}"),
               "fig_budget_n": budget.figure(n_curve.budgets, n_acc, f"Figure 9's claim: {title}"),
               "fig_curves_figures": curves_figure({"Figure 8 (k)": {n: val_curve(o) for n, o in k_runs.items()},
                                                    "Figure 9 (N)": {n: val_curve(o) for n, o in n_runs.items()}})}
    plt.close(figures["fig6"])
    return Result(cfg, tables={"tab_figures": frame}, figures=figures, text=text, numbers=numbers,
                  runs={"k": k_runs, "n": n_runs, "cnn": cnn, "zca": zca,
                        "budgets": {"k": k_curve.plain(), "n": n_curve.plain()}})


def curve_figure(cfg: Config, xs, rows: list[dict], xlabel: str):
    """Test accuracy (mean ± std over the curve's seeds) against ``xs`` on a log2 axis."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar(xs, [100 * r["_mean"] for r in rows], yerr=[100 * r["_std"] for r in rows], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(f"Phi_full, {cfg.dataset}, scale={cfg.scale}")
    plt.close(fig)
    return fig

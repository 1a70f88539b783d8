"""The page of the SSL zoo built from its cached runs (:mod:`patchnb.experiments.ssl_zoo`): the table,
the words and numbers the prose cites (no sentences: those are the notebook's markdown), the verdicts
of its claims (:func:`claims`, the book's rule :func:`patchnb.experiments.verdict.budget_verdict` on the
budget curve of the encoders' training images) and the figures (training curves, the budget curve, the
alignment-uniformity plane, confusion matrix and nearest-neighbour queries of the best self-supervised
encoder)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..book import pm
from ..data import Splits
from ..eval import confusion_figure, features, query_figure
from ..models import ResNet18
from .verdict import FAILS, HOLDS, UNSETTLED, Verdict, budget_figure, budget_verdict

BASELINES = ("random", "supervised", "phi_full")
LABELS = {"simclr": "SimCLR", "mocov2": "MoCo v2 + EqCo + MoCHi", "hcl": "HCL", "deepcluster": "DeepCluster",
          "context_encoder": "Context Encoder", "detcon": "DetCon_S", "random": "random encoder (baseline)",
          "supervised": "supervised (upper bound)", "phi_full": "Phi_full patch network (supervised)"}
BUDGET_XLABEL = "images the encoders train on"


def value(record: dict, key: str) -> float:
    """A number of one run: from its evaluation (the protocol's dict) or its training record."""
    return record["eval"][key] if key in record["eval"] else record[key]


def stat(runs: dict, row: str, key: str) -> tuple[float, float]:
    """Mean and standard deviation (ddof 1; 0 for one seed) of ``key`` over the seeds of ``row``."""
    v = np.array([value(r, key) for r in runs[row]], dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def mean(runs: dict, row: str, key: str) -> float:
    return stat(runs, row, key)[0]


def _cell(runs: dict, row: str, key: str, pct: bool = True) -> str:
    m, s = stat(runs, row, key)
    scale, digits = (100.0, 1) if pct else (1.0, 3)
    return pm(m, s, scale=scale, digits=digits) if len(runs[row]) > 1 else f"{m * scale:.{digits}f}"


def rows_of(cfg) -> tuple[str, ...]:
    return (*cfg.methods, *BASELINES)


def summary_table(cfg, runs: dict) -> pd.DataFrame:
    """One row per encoder: probe and kNN test accuracy, alignment, uniformity, feature dimension,
    training time and the validation-selected L2 strength (mean ± std over seeds when several)."""
    return pd.DataFrame([{
        "encoder": LABELS[n], "kind": "self-supervised" if n in cfg.methods else "baseline",
        "linear probe test acc. (%)": _cell(runs, n, "probe_accuracy"),
        "kNN test acc. (%)": _cell(runs, n, "knn_accuracy"),
        "alignment": _cell(runs, n, "alignment", pct=False), "uniformity": _cell(runs, n, "uniformity", pct=False),
        "feature dim": runs[n][0]["eval"]["feature_dim"], "training time (s)": f"{mean(runs, n, 'train_seconds'):.0f}",
        "probe L2 (val-selected)": f"{runs[n][0]['eval']['probe_weight_decay']:g}",
    } for n in rows_of(cfg)]).set_index("encoder")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def probe_curve(cfg, curve: dict, row: str) -> list[list[float]]:
    """Per budget (increasing), the linear-probe test accuracy of ``row`` per seed."""
    return [[float(value(r, "probe_accuracy")) for r in curve[n][row]] for n in sorted(curve)]


def spearman_curve(cfg, curve: dict) -> list[list[float]]:
    """Per budget per seed, the Spearman correlation across every encoder of uniformity and probe accuracy."""
    order = rows_of(cfg)
    out = []
    for n in sorted(curve):
        at = []
        for j in range(len(cfg.seeds)):
            u = pd.Series([value(curve[n][r][j], "uniformity") for r in order])
            p = pd.Series([value(curve[n][r][j], "probe_accuracy") for r in order])
            at.append(float(u.corr(p, method="spearman")))
        out.append(at)
    return out


def all_of(verdicts: list[Verdict]) -> str:
    """The word of "every one of these claims": holds when each holds, does not hold when any does not
    hold, otherwise not settled at this budget."""
    words = [v.word for v in verdicts]
    return HOLDS if all(w == HOLDS for w in words) else FAILS if FAILS in words else UNSETTLED


def claims(cfg, curve: dict, best: str) -> dict[str, Verdict]:
    """The page's claims decided by the book's rule on linear-probe test accuracy over the budget curve,
    paired by seed: ``claim_random_<method>`` (the method beats the random encoder), ``claim_bound`` (the
    supervised network beats the best self-supervised method ``best``, chosen by mean probe accuracy at
    the full budget), ``claim_phi`` (the Phi_full features beat ``best``) and ``claim_uniformity``
    (Spearman rho of uniformity and probe accuracy across the encoders is below 0: more uniform encoders
    probe better)."""
    budgets = sorted(curve)
    acc = {r: probe_curve(cfg, curve, r) for r in rows_of(cfg)}
    out = {f"claim_random_{m}": budget_verdict(budgets, acc[m], acc["random"]) for m in cfg.methods}
    out["claim_bound"] = budget_verdict(budgets, acc["supervised"], acc[best])
    out["claim_phi"] = budget_verdict(budgets, acc["phi_full"], acc[best])
    rho = spearman_curve(cfg, curve)
    if all(x == x for v in rho for x in v):  # NaN: a constant column (every encoder equal)
        out["claim_uniformity"] = budget_verdict(budgets, rho, 0.0, claimed="less")
    return out


def texts(cfg, runs: dict, splits: Splits, curve: dict) -> tuple[dict[str, str], dict[str, float]]:
    """The glued words and numbers (``text``) and the raw numbers (``numbers``) of the page; ``runs``: the
    rows at the full budget, ``curve``: ``{budget: {row: [record per seed]}}``."""
    methods, order = list(cfg.methods), rows_of(cfg)
    probe = {n: mean(runs, n, "probe_accuracy") for n in order}
    knn = {n: mean(runs, n, "knn_accuracy") for n in order}
    al = {n: mean(runs, n, "alignment") for n in order}
    un = {n: mean(runs, n, "uniformity") for n in order}
    rank = sorted(methods, key=lambda n: -probe[n])
    best = rank[0]
    verdicts = claims(cfg, curve, best)
    beat = [n for n in rank if verdicts[f"claim_random_{n}"].word == HOLDS]
    rho = float(pd.Series([un[n] for n in order]).corr(pd.Series([probe[n] for n in order]), method="spearman"))
    c, (h, w) = splits.shape[0], splits.shape[-2:]
    compute = sum(r["train_seconds"] + r["eval"]["seconds"] for n, at in curve.items() for row, rs in at.items()
                  for r in rs if row != "random" or n == max(curve))  # one random row per seed serves every budget
    budgets = sorted(curve)
    t = {
        "data_desc": f"{splits.name} ({len(splits.train):,} train / {len(splits.val):,} val / {len(splits.test):,} "
                     f"test images, {h}x{w}x{c}); scale={cfg.scale}",
        "budget_desc": f"ResNet-18 of width {cfg.width} ({8 * cfg.width}-d features), batch {cfg.batch_size}, "
                       f"{cfg.epochs} epoch(s) = {cfg.images_seen(budgets[-1]):,} images seen per method, "
                       f"{len(cfg.seeds)} seed(s) {list(cfg.seeds)}",
        "budget_images": ", ".join(f"{n:,}" for n in budgets),
        "budget_schedule": f"{cfg.epochs} epoch(s) at every budget with each method's own optimiser and schedule, "
                           f"batch {cfg.batch_size}; Phi_full {cfg.phi_epochs} epoch(s)",
        "n_seeds": str(len(cfg.seeds)), "seed_list": ", ".join(str(x) for x in cfg.seeds),
        "phi_desc": f"a dictionary of {cfg.phi_n_centroids} whitened {cfg.phi_patch_size}x{cfg.phi_patch_size} "
                    f"patch centroids (k-means on "
                    f"{cfg.phi_n_patches:,} patches), k = {cfg.phi_k} nearest centroids, {cfg.phi_epochs} epoch(s) "
                    f"with Adam",
        "row_keys": ",".join(order),
        **{f"probe_{n}": _pct(probe[n]) for n in order}, **{f"knn_{n}": _pct(knn[n]) for n in order},
        # ranking (a description of the full budget's means, not a verdict)
        "best_ssl": best, "best_label": LABELS[best], "probe_best": _pct(probe[best]), "rank_order": ",".join(rank),
        "rank_list": " > ".join(f"{LABELS[n]} ({_pct(probe[n])}%)" for n in rank),
        "best_knn_label": LABELS[max(methods, key=lambda n: knn[n])],
        # against the random encoder: one claim per method, and all of them
        "n_ssl": str(len(methods)), "n_beat_random": str(len(beat)),
        "beat_list": ", ".join(LABELS[n] for n in beat) or "none",
        "random_claims": "; ".join(f"{LABELS[n]} {verdicts[f'claim_random_{n}'].word} "
                                   f"({verdicts[f'claim_random_{n}'].gap()})" for n in rank),
        "claim_all_random": all_of([verdicts[f"claim_random_{n}"] for n in methods]),
        # against the supervised bound (a description of the means, then the claim)
        "supervised_gaps": ", ".join(f"{LABELS[n]} {_signed(probe[n] - probe['supervised'])}" for n in rank),
        "gap_random": _signed(probe["random"] - probe["supervised"]),
        # the patch network
        "phi_trained_acc": _pct(mean(runs, "phi_full", "trained_test_acc")),
        # the plane
        "n_encoders": str(len(order)), "rho_uniformity": f"{rho:.2f}",
        "most_invariant": LABELS[min(order, key=lambda n: al[n])],
        "most_uniform": LABELS[min(order, key=lambda n: un[n])],
        "compute_seconds": f"{compute:.0f}",
    }
    for claim, v in verdicts.items():
        t[claim] = v.word
        t[f"{claim}_gap"] = v.gap(scale=1.0, digits=2, unit="") if claim == "claim_uniformity" else v.gap()
    if "claim_uniformity" not in verdicts:
        t.update(claim_uniformity=UNSETTLED, claim_uniformity_gap="n/a (a constant column: rho undefined)")
    numbers = {"rho_uniformity": rho, "n_beat_random": float(len(beat)), "compute_seconds": compute,
               **{f"probe_{n}": probe[n] for n in order}, **{f"knn_{n}": knn[n] for n in order},
               **{f"alignment_{n}": al[n] for n in order}, **{f"uniformity_{n}": un[n] for n in order},
               "phi_trained_acc": mean(runs, "phi_full", "trained_test_acc"),
               **{f"{claim}_diff": float(v.diffs[-1]) for claim, v in verdicts.items()}}
    return t, numbers


def budget_curve_figure(cfg, curve: dict):
    """Linear-probe test accuracy of every row against the encoders' training images (the claims' curve)."""
    budgets = sorted(curve)
    fig = budget_figure(budgets, {LABELS[r]: probe_curve(cfg, curve, r) for r in rows_of(cfg)}, BUDGET_XLABEL,
                        ylabel="linear probe test accuracy (%)",
                        title=f"{len(cfg.seeds)} seed(s); the random encoder is untrained (the same at every budget)")
    return fig


def curves_figure(cfg, runs: dict):
    """Training loss per epoch of every row that trains, one panel each (the losses have different scales)."""
    trained = [*cfg.methods, "supervised", "phi_full"]
    ncol = 4
    nrow = int(np.ceil(len(trained) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.6 * nrow), squeeze=False)
    for ax, n in zip(axes.flat, trained):
        for s, r in zip(cfg.seeds, runs[n]):
            ax.plot([h["epoch"] + 1 for h in r["history"]], [h["loss"] for h in r["history"]], marker="o",
                    label=f"seed {s}")
        ax.set_title(LABELS[n], fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(trained):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plane_figure(cfg, runs: dict):
    """Every encoder on the alignment-uniformity plane, coloured by linear-probe accuracy."""
    order = rows_of(cfg)
    al, un = [mean(runs, n, "alignment") for n in order], [mean(runs, n, "uniformity") for n in order]
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    sc = ax.scatter(al, un, c=[100 * mean(runs, n, "probe_accuracy") for n in order], cmap="viridis", s=70,
                    edgecolor="k")
    for n, a, u in zip(order, al, un):
        ax.annotate(LABELS[n].split(" (")[0], (a, u), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("alignment  E||f(x) - f(x')||²  (lower: more invariant)")
    ax.set_ylabel("uniformity  log E exp(-2||f(x) - f(y)||²)")
    fig.colorbar(sc, ax=ax, label="linear probe test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def best_test_features(cfg, runs: dict, splits: Splits, best: str):
    """``(N_test, D)`` test features of the first seed's encoder of the method ``best``."""
    net = ResNet18(splits.shape[0], cfg.width)
    net.load_state_dict(runs[best][0]["state"])
    return features(net, splits.test, splits)[0]


def figures(cfg, runs: dict, splits: Splits, best: str, test_feats=None, curve: dict | None = None) -> dict:
    """All figures of the page (closed after drawing: they are shown where they are glued); ``test_feats``:
    :func:`best_test_features`, computed here when not given; ``curve``: the runs per budget (the budget
    figure ``fig_budget_zoo`` is drawn when given)."""
    first = runs[best][0]
    if test_feats is None:
        test_feats = best_test_features(cfg, runs, splits, best)
    out = {"fig_curves": curves_figure(cfg, runs), "fig_plane": plane_figure(cfg, runs),
           "fig_confusion": confusion_figure(first["eval"]["confusion"], splits.train.classes,
                                             title=f"{LABELS[best]}: linear probe (test)"),
           "fig_query": query_figure(test_feats, splits.test, n_matches=5,
                                     title=f"{LABELS[best]}: nearest neighbours (cosine)")}
    if curve is not None:
        out["fig_budget_zoo"] = budget_curve_figure(cfg, curve)
    for fig in out.values():
        plt.close(fig)
    return out

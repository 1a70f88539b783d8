"""Convolution vs attention: shape or texture? The shape-bias chapter.

Geirhos et al., "ImageNet-trained CNNs are biased towards texture; increasing shape bias improves
accuracy and robustness", ICLR 2019: the *shape bias* of a classifier is, on cue-conflict images
(the shape of class a, the texture of class b != a), shape decisions / (shape + texture decisions)
(:func:`patchnb.bias.metrics.shape_bias`). The convolution-vs-attention study asked whether attention
models (ViT, CoAtNet) carry a different bias than convolutional ones (ResNet, ConvNeXt), trained on
ordinary or on stylized images, and fine-tuned its backbones on a second task.

The recipe trains every model of ``models`` on cue-consistent (texture = the shape's class) and on
stylized (texture independent of the class) stimuli, at every texture strength of ``strengths`` and
seed of ``seeds`` (:func:`patchnb.bias.experiment.bias_run`, one cached run each), measures the
shape bias on cue-conflict stimuli made from unseen silhouettes, and transfers the ResNet trained at
the strongest texture to Fashion-MNIST classification, frozen (only a new linear head learns) or
fine-tuned (:func:`patchnb.bias.transfer.transfer`).

Deviations from the convolution-vs-attention study: ImageNet and Stylized-ImageNet are replaced by a
small controlled stand-in (Fashion-MNIST silhouettes filled with procedural textures,
:mod:`patchnb.bias.stimuli`), so the texture strength can be swept; the models are small versions of
the study's architectures (``widths``), trained from scratch; early stopping uses the validation split
(the study's ``--patience`` option was ignored); the Phi_full patch network of the patch chapter
takes part ("patch"), which no published comparison includes; the transfer head is initialised from
the run's seed (:func:`patchnb.bias.transfer.transfer`), so a transfer result does not depend on what
ran before it in the process.

Verdicts: the two claims of the conclusion -- attention models (ViT, CoAtNet) have a higher shape bias
than convolutional ones (ResNet, ConvNeXt) after cue-consistent training, and stylized training raises
the shape bias (Geirhos et al. 2019), both at the strongest texture -- are one family (Holm's correction)
decided by the book's rule (:func:`patchnb.experiments.verdict.budget_verdict`: a paired t-test at the
largest budget) from runs at the fractions ``budget_fractions`` of ``n_train`` (``BUDGET``: 1/4, 1/2 and
all of the training stimuli) over ``seeds``, paired by seed; with ``looks`` an undecided claim gets more
seeds (:func:`~patchnb.experiments.verdict.decide`), only for the claims' models. The shape bias is a
proportion of cue-conflict decisions (shape / (shape + texture)), so its sampling error counts: ``n_eval``
is the fewest shape-or-texture decisions of a claim's run at the largest budget (the rule's bound for a
proportion measured on that many decisions). Only the models these claims compare (the convolutional and
attention models of ``models``) are run at the smaller budgets, both training sets, the strongest
texture; each budget is its own run with the chapter's schedule (the same epochs and cosine schedule on
fewer stimuli, so fewer steps). The full budget is the table's runs. The other words of the conclusion
(which models are texture-biased, how many stylized training moves) describe the means over seeds at the
full budget; they are not verdicts. Nothing is selected on the test split (the runs' epoch is chosen on
validation; the transferred backbone is fixed, the ResNet).

The cached runs, ``Config`` and ``PRESETS`` are :mod:`.shape_bias_runs` (re-exported here); this module is
the page, out of the runs' cache key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from .. import plots
from ..bias.stimuli import make_stimuli
from ..train import mean_std
from .result import Result
from .shape_bias_runs import (
    ATTENTION,
    CONVOLUTIONAL,
    PRESETS,
    STIMULI_SEED,
    TRAIN_KINDS,
    Config,
    _transfer_score,
    bias_record,
    budget_records,
    claim_models,
    load_fmnist,
    load_masks,
    transfer_score,
)
from .verdict import ALPHA, budget_figure, budget_verdict, decide, holm, mean_sd


def transfer_table(cfg: Config, masks: tuple, strength: float) -> tuple[pd.DataFrame, str]:
    """Fashion-MNIST test accuracy of the backbone trained on each kind of stimuli at ``strength``
    (first seed), frozen and fine-tuned; and the description of the second task."""
    if cfg.transfer_arch is None:
        return (pd.DataFrame(columns=["backbone trained on", "mode", "Fashion-MNIST test acc. (%)"]),
                "not measured (transfer needs a vision model: resnet, convnext, vit or coatnet)")
    fm = load_fmnist(cfg)
    rows = []
    for kind in TRAIN_KINDS:
        for mode in ("frozen", "finetune"):
            score = transfer_score(cfg, masks, kind, strength, mode, fm)
            rows.append({"backbone trained on": kind, "mode": mode, "Fashion-MNIST test acc. (%)": f"{100 * score:.1f}",
                         "score": score})
    return pd.DataFrame(rows), fm.describe()


def _cell(values) -> str:
    """A value over seeds, the book's one way (:func:`~patchnb.experiments.verdict.mean_sd`); runs without a
    shape or texture decision (an undefined shape bias) are left out and counted."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite:
        return "undefined (no shape or texture decision)"
    left = len(values) - len(finite)
    return mean_sd(finite) + (f" ({left} run(s) without a decision left out)" if left else "")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± one standard deviation over seeds of the shape bias and accuracy per model, training set and
    texture strength (in the order the runs were made)."""
    rows = []
    for (m, k, s), g in df.groupby(["model", "train_kind", "texture_strength"], sort=False):
        sb, acc = mean_std(g.shape_bias), mean_std(g.accuracy)
        rows.append({"model": m, "trained on": k, "texture strength": s, "shape bias (%)": _cell(list(g.shape_bias)),
                     "consistent test acc. (%)": _cell(list(g.accuracy)), "sb": sb[0], "sb_std": sb[1],
                     "acc": acc[0]})
    return pd.DataFrame(rows)


def verdicts(summary: pd.DataFrame, strength: float) -> tuple[dict, dict]:
    """The descriptive words and numbers of the chapter's conclusion at texture ``strength`` (means over
    seeds, one budget; the claims are decided by :func:`claims`): which models decide mostly by texture
    after cue-consistent training, how many stylized training moves, and the mean gap between attention
    and convolutional models beside the seed-to-seed spread."""
    top = summary[summary["texture strength"] == strength]
    cons = top[top["trained on"] == "consistent"].set_index("model")
    styl = top[top["trained on"] == "stylized"].set_index("model")["sb"]
    sb = cons["sb"]
    texture_biased = sorted(m for m in sb.index if sb[m] < 0.5)
    shape_kept = sorted(m for m in sb.index if sb[m] >= 0.5)
    moved = sorted(m for m in sb.index if m in styl.index and styl[m] > sb[m])
    text = {"sb_cons_range": f"{100 * sb.min():.0f}–{100 * sb.max():.0f}%",
            "sb_styl_range": f"{100 * styl.min():.0f}–{100 * styl.max():.0f}%",
            "sb_gain": f"{100 * (styl - sb).mean():+.0f}",
            "n_models": str(len(sb)), "n_texture_biased": str(len(texture_biased)),
            "texture_biased": ", ".join(texture_biased) or "none", "shape_kept": ", ".join(shape_kept) or "none",
            "n_moved": str(len(moved))}
    numbers = {"sb_gain": float((styl - sb).mean()), **{f"sb_consistent_{m}": float(v) for m, v in sb.items()},
               **{f"sb_stylized_{m}": float(v) for m, v in styl.items()}}
    conv = [m for m in CONVOLUTIONAL if m in sb.index]
    attn = [m for m in ATTENTION if m in sb.index]
    if conv and attn:
        gap, spread = float(sb[attn].mean() - sb[conv].mean()), float(cons["sb_std"].mean())
        text.update(attn_minus_conv=f"{100 * gap:+.0f} points", seed_spread=f"{100 * spread:.0f} points")
        numbers.update(attn_minus_conv=gap, seed_spread=spread)
    else:
        text.update(attn_minus_conv="not measured (needs a convolutional and an attention model)", seed_spread="n/a")
    return text, numbers


def budget_curves(cfg: Config, masks: tuple, strength: float, n_seeds: int | None = None
                  ) -> tuple[dict[tuple[str, str], list[list[float]]], int]:
    """Shape bias per ``(model, training set)`` of the claims' models, per budget of ``cfg.budgets`` per
    seed (the first ``n_seeds`` of ``cfg.seeds_upto``; cached runs), and the fewest shape-or-texture
    decisions of a run at the largest budget (the claims' ``n_eval``)."""
    records = budget_records(cfg, masks, strength, n_seeds)
    curves = {mk: [[float(r["shape_bias"]) for r in at] for at in per] for mk, per in records.items()}
    decisions = [r["n_shape"] + r["n_texture"] for per in records.values() for r in per[-1]]
    return curves, min(decisions) if decisions else 0


def _mean_over(curves: dict, models: list[str], kind: str) -> list[list[float]]:
    """Per budget per seed, the mean shape bias of ``models`` trained on ``kind``."""
    per_model = [curves[(m, kind)] for m in models]
    return [[sum(v) / len(v) for v in zip(*(pm_[i] for pm_ in per_model))] for i in range(len(per_model[0]))]


def _defined(a: list[list[float]], b: list[list[float]]) -> tuple[list[list[float]], list[list[float]], int]:
    """The seeds whose shape bias is defined in both ``a`` and ``b`` at each budget (a run without a shape or
    texture decision has none), and how many pairs were left out."""
    kept_a, kept_b, left = [], [], 0
    for xa, xb in zip(a, b):
        pairs = [(x, y) for x, y in zip(xa, xb) if math.isfinite(x) and math.isfinite(y)]
        left += len(xa) - len(pairs)
        kept_a.append([x for x, _ in pairs])
        kept_b.append([y for _, y in pairs])
    return kept_a, kept_b, left


def claims(cfg: Config, budgets: list[int], curves: dict, more: Callable | None = None, n_eval: int | None = None
           ) -> tuple[dict, dict, dict]:
    """The chapter's two claims decided by the book's rule (paired by seed; ``n_eval``: the fewest
    shape-or-texture decisions of a run, the shape bias being a proportion of them), one Holm family:
    ``claim_attn_shape``, the mean shape bias of the attention models exceeds that of the convolutional
    ones after cue-consistent training; ``claim_stylized``, stylized training raises the mean shape bias of
    the claims' models. ``more(n)``: the curves for the first ``n`` seeds (``cfg.look_counts``; default
    ``curves``). Returns the glued words (:meth:`~patchnb.experiments.verdict.Verdict.glue` names), the
    numbers (``<claim>_diff``, ``<claim>_p``) and the curves drawn (the table's seeds)."""
    conv, attn = claim_models(cfg)
    both = conv + attn
    looks = cfg.look_counts
    more = more or (lambda n: curves)
    text, numbers, drawn, pairs = {}, {}, {}, {}
    if conv and attn:
        pairs["claim_attn_shape"] = lambda c: (_mean_over(c, attn, "consistent"), _mean_over(c, conv, "consistent"))
        drawn["attention (consistent)"], drawn["convolution (consistent)"] = pairs["claim_attn_shape"](curves)
    if both:
        pairs["claim_stylized"] = lambda c: (_mean_over(c, both, "stylized"), _mean_over(c, both, "consistent"))
        drawn["claims' models, stylized"], drawn["claims' models, consistent"] = pairs["claim_stylized"](curves)
    raw, left = {}, {}
    for claim in ("claim_attn_shape", "claim_stylized"):
        if claim not in pairs:
            text.update({claim: "not measured (needs a convolutional and an attention model)",
                         f"{claim}_gap": "n/a"})
            continue

        def get(n, pair=pairs[claim], claim=claim):
            a, b, left[claim] = _defined(*pair(more(n)))
            return a, b

        if any(not at for at in get(looks[0])[0]):
            text.update({claim: f"not computed: at some budget no seed has a shape or texture decision in both "
                                f"compared curves ({left[claim]} pair(s) without one)", f"{claim}_gap": "n/a"})
            continue
        raw[claim] = (budget_verdict(budgets, *get(looks[0]), claimed="greater", n_eval=n_eval or None)
                      if len(looks) == 1 else decide(budgets, get, looks, claimed="greater", n_eval=n_eval or None))
    for claim, v in holm(raw, alpha=ALPHA / len(looks)).items():
        text.update(v.glue(claim, unit=" points", budget_unit="training stimuli"))
        text[f"{claim}_reason"] = v.reason or "decided"
        text[f"{claim}_left_out"] = str(left.get(claim, 0))
        numbers[f"{claim}_diff"] = float(v.diffs[-1])
        numbers[f"{claim}_p"] = float(v.p)
    return text, numbers, drawn


def budget_text(cfg: Config) -> dict[str, str]:
    """``budget_images`` (the curve's training-set sizes), ``budget_schedule`` (what trains at each) and
    ``claim_models`` (the models run along the curve)."""
    conv, attn = claim_models(cfg)
    return {"budget_images": ", ".join(f"{n:,}" for n in cfg.budgets),
            "budget_schedule": f"{cfg.epochs} epoch(s) at every budget, batch {cfg.batch_size}, Adam lr {cfg.lr:g} "
                               f"with a cosine schedule over the run's steps",
            "claim_models": ", ".join(conv + attn) or "none"}


def budget_fig(budgets: list[int], drawn: dict, strength: float):
    """The claims' budget curves: shape bias against training stimuli, one panel per claim."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(drawn)
    for ax, pair, title in zip(axes, (names[:2], names[2:]) if len(names) == 4 else (names[:0], names),
                               ("attention vs convolution", "stylized vs cue-consistent training")):
        if pair:
            budget_figure(budgets, {n: drawn[n] for n in pair}, "training stimuli",
                          ylabel="shape bias on cue-conflict (%)", title=f"{title} (texture {strength:g})", ax=ax)
        else:
            ax.axis("off")
    fig.tight_layout()
    plt.close(fig)
    return fig


def run(cfg: Config) -> Result:
    """Every run of the comparison (cached), the shape-bias table and figure, example decisions, the
    transfer table and the words and numbers of the conclusion."""
    masks = load_masks(cfg)
    (train_masks, _, _), test_masks = masks
    grid = [(m, k, s, seed) for m in cfg.models for k in TRAIN_KINDS for s in cfg.strengths for seed in cfg.seeds]
    runs = [bias_record(cfg, *point, masks) for point in tqdm(grid, desc="shape-bias runs")]
    cols = ("model", "train_kind", "texture_strength", "seed", "shape_bias", "accuracy", "n_shape", "n_texture",
            "n_other", "n_excluded", "seconds")
    df = pd.DataFrame([{c: r[c] for c in cols} for r in runs])
    summary = summarize(df)
    hi = max(cfg.strengths)
    conclusion, numbers = verdicts(summary, hi)
    curves, n_eval = budget_curves(cfg, masks, hi)
    extra = {len(cfg.seeds): curves}

    def more(n: int) -> dict:  # the sequential design's further seeds, run only when asked for
        if n not in extra:
            extra[n] = budget_curves(cfg, masks, hi, n)[0]
        return extra[n]

    claim_text, claim_numbers, drawn = claims(cfg, cfg.budgets, curves, more, n_eval=n_eval)
    looks = cfg.look_counts
    claim_text.update(
        n_eval=f"{n_eval:,}",
        looks_desc=(f"one look at {looks[0]} seed(s)" if len(looks) == 1 else
                    f"looks at {', '.join(map(str, looks))} seeds (more seeds only while undecided, only for the "
                    f"claims' models; each look at level {ALPHA / len(looks):.3g})"))
    conclusion.update({**claim_text, **budget_text(cfg)})
    numbers.update(claim_numbers)
    transfers, fm_desc = transfer_table(cfg, masks, hi)

    shown = {kind: make_stimuli(kind, 10, *test_masks, image_size=cfg.image_size, texture_strength=1.0,
                                noise=cfg.noise, seed=STIMULI_SEED) for kind in ("consistent", "stylized", "conflict")}
    panels = {}
    for kind in TRAIN_KINDS:  # one panel per training set, one line per model over the texture strengths
        panels[f"trained on {kind}"] = lines = {}
        for m in cfg.models:
            g = summary[(summary["model"] == m) & (summary["trained on"] == kind)]
            lines[m] = (g["texture strength"], 100 * g["sb"], 100 * g["sb_std"])
    ex = next(r for r in runs if r["train_kind"] == "consistent" and r["texture_strength"] == hi)
    e = ex["examples"]
    figures = {
        "fig_stimuli": plots.stimulus_rows({k: (s.data.images, s.shape_labels, s.texture_labels)
                                            for k, s in shown.items()},
                                           "Stimuli at texture strength 1 (S = shape class, T = texture class)"),
        "fig_shape_bias": plots.errorbar_panels(panels, "texture strength (contrast of the texture)",
                                                "shape bias on cue-conflict (%)"),
        "fig_examples": plots.decisions(e["images"], e["shape"], e["texture"], e["pred"],
                                        f"{ex['model']} trained on cue-consistent stimuli"),
    }
    if drawn:
        figures["fig_budget_shape_bias"] = budget_fig(cfg.budgets, drawn, hi)
    for fig in figures.values():  # shown by the page's glue, not by the inline backend
        plt.close(fig)
    text = {
        "data_desc": f"Fashion-MNIST silhouettes ({len(train_masks):,} train / {len(test_masks[0]):,} test masks), "
                     f"{cfg.image_size}x{cfg.image_size}; {cfg.n_train:,} training stimuli, {cfg.epochs} epoch(s); "
                     f"scale={cfg.scale}",
        "n_seeds": str(len(cfg.seeds)), "n_conflict": f"{cfg.n_conflict:,}", "strength_hi": f"{hi:g}",
        "n_excluded": str(int(df.n_excluded.sum())),
        "n_other_share": f"{100 * df.n_other.sum() / (len(df) * cfg.n_conflict):.0f}%",
        "run_seconds": f"{df.seconds.mean():.1f}", "fm_desc": fm_desc, **conclusion,
    }
    numbers.update({f"transfer_{r['backbone trained on']}_{r['mode']}": r["score"] for _, r in transfers.iterrows()})
    numbers["other_share"] = float(df.n_other.sum() / (len(df) * cfg.n_conflict))
    return Result(cfg, tables={"tab_shape_bias": summary.drop(columns=["sb", "sb_std", "acc"]),
                               "tab_transfer": transfers.drop(columns=["score"], errors="ignore")},
                  figures=figures, text=text, numbers=numbers,
                  runs={"grid": runs, "budgets": cfg.budgets, "n_eval": n_eval,
                        "curves": {f"{m}/{k}": v for (m, k), v in curves.items()}})


__all__ = ["ATTENTION", "CONVOLUTIONAL", "Config", "PRESETS", "TRAIN_KINDS", "bias_record", "budget_curves",
           "claim_models", "claims", "load_masks", "run", "summarize", "transfer_table", "verdicts", "_transfer_score"]

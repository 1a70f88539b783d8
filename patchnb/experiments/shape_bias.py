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
the shape bias (Geirhos et al. 2019), both at the strongest texture -- are decided by the book's rule
(:func:`patchnb.experiments.verdict.budget_verdict`) from runs at the fractions ``budget_fractions`` of
``n_train`` (``BUDGET``: 1/4, 1/2 and all of the training stimuli) over ``seeds``, paired by seed. Only
the models these claims compare (the convolutional and attention models of ``models``) are run at the
smaller budgets, both training sets, the strongest texture; each budget is its own run with the
chapter's schedule (the same epochs and cosine schedule on fewer stimuli, so fewer steps). The full
budget is the table's runs. The other words of the conclusion (which models are texture-biased, how
many stylized training moves) describe the means over seeds at the full budget; they are not verdicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from .. import data, plots
from ..bias.experiment import BIAS_MODELS, bias_run
from ..bias.stimuli import fashion_mnist_masks, make_stimuli
from ..bias.transfer import transfer
from ..book import pm
from ..cache import cached
from ..checks import check_float, check_int
from ..models.vision import MODELS, make_vision_model
from ..train import TrainConfig, mean_std
from .base import ExperimentConfig, check_budget_fractions
from .result import Result
from .verdict import UNSETTLED, budget_figure, budget_verdict

TRAIN_KINDS = ("consistent", "stylized")
CONVOLUTIONAL, ATTENTION = ("resnet", "convnext"), ("vit", "coatnet")
MASK_SEED = 0  # the silhouettes drawn per class: the same for every run
STIMULI_SEED = 5  # the stimuli drawn in fig_stimuli
SMALL_WIDTHS = {"resnet": 8, "convnext": 16, "vit": 32, "coatnet": 8, "patch": 256}  # patch: dictionary size N
PAPER_WIDTHS = {"resnet": 32, "convnext": 64, "vit": 128, "coatnet": 32, "patch": 1024}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Models, texture strengths and seeds of the comparison, the size of every stimulus set, the
    training budget and the second task's size (``fmnist`` Fashion-MNIST training images)."""

    models: tuple[str, ...] = BIAS_MODELS
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0)  # texture contrast, 0 = no texture
    noise: float = 0.05  # additive gaussian pixel noise of the stimuli
    masks_train: int | None = 300  # silhouettes per class (None: all)
    masks_test: int | None = 100
    n_train: int = 2000
    n_val: int = 300
    n_test: int = 1000
    n_conflict: int = 1000
    epochs: int = 3
    fmnist: int | None = 5000  # second task: training images (val: a fifth, test: twice); None: all
    widths: dict = field(default_factory=lambda: dict(SMALL_WIDTHS))  # per model; patch: dictionary size N
    image_size: int = 28
    batch_size: int = 64
    lr: float = 2e-3
    budget_fractions: tuple = (0.25, 0.5, 1.0)  # fractions of n_train of the claims' budget curve (one is 1)

    BUDGET: ClassVar[str] = "n_train"

    def validate(self) -> None:
        if not isinstance(self.models, tuple) or not self.models:
            raise ValueError(f"models must be a non-empty list of {list(BIAS_MODELS)}, got {self.models!r}")
        for m in self.models:
            if m not in BIAS_MODELS:
                raise ValueError(f"models: {m!r} is not supported; allowed values: "
                                 f"{', '.join(map(repr, BIAS_MODELS))}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat a model, got {list(self.models)}")
        if not isinstance(self.strengths, tuple) or not self.strengths:
            raise ValueError(f"strengths must be a non-empty list of texture strengths in [0, 1], got "
                             f"{self.strengths!r}")
        for s in self.strengths:
            check_float("strengths", s, 0.0, 1.0)
        check_float("noise", self.noise, 0.0)
        for name in ("masks_train", "masks_test", "fmnist"):
            check_int(name, getattr(self, name), 1, allow_none=True)
        for name in ("n_train", "n_val", "n_test", "n_conflict", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_int("image_size", self.image_size, 8)
        check_float("lr", self.lr, 0.0, strict_min=True)
        if not isinstance(self.widths, dict):
            raise ValueError(f"widths must map each model to its width, got {self.widths!r}")
        missing = [m for m in self.models if m not in self.widths]
        if missing:
            raise ValueError(f"widths has no width for model(s) {missing}; it has {sorted(self.widths)}")
        for m in self.models:
            check_int(f"widths[{m!r}]", self.widths[m], 1)
        object.__setattr__(self, "widths", dict(self.widths))  # a copy: presets share their dict
        check_budget_fractions(self.budget_fractions, "n_train")
        self.budgets  # noqa: B018 -- distinct training-set sizes, checked here (the API boundary)

    @property
    def budgets(self) -> list[int]:
        """The claims' budget curve: training stimuli per run, increasing (the last is ``n_train``)."""
        sizes = sorted(max(1, int(round(self.n_train * f))) for f in self.budget_fractions)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give n_train {sizes}: not distinct; use a "
                             f"larger n_train or other fractions")
        return sizes

    def train_config(self, seed: int) -> TrainConfig:
        """The optimisation of every run of the chapter (bias training and transfer)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr,
                           schedule="cosine", seed=seed, device=self.device)

    @property
    def transfer_arch(self) -> str | None:
        """The backbone transferred to the second task: the ResNet, else the first vision model."""
        vision = [m for m in self.models if m in MODELS]
        return "resnet" if "resnet" in vision else (vision[0] if vision else None)


PRESETS = {
    "smoke": dict(models=("resnet", "vit", "patch"), strengths=(1.0,), seeds=(0,), masks_train=40, masks_test=20,
                  n_train=320, n_val=100, n_test=200, n_conflict=200, epochs=1, fmnist=600, widths=SMALL_WIDTHS),
    "cpu": dict(models=BIAS_MODELS, strengths=(0.25, 0.5, 1.0), seeds=(0, 1, 2), masks_train=300, masks_test=100,
                n_train=2000, n_val=300, n_test=1000, n_conflict=1000, epochs=3, fmnist=5000, widths=SMALL_WIDTHS),
    "paper": dict(models=BIAS_MODELS, strengths=(0.1, 0.25, 0.5, 1.0), seeds=(0, 1, 2, 3, 4), masks_train=None,
                  masks_test=None, n_train=50000, n_val=5000, n_test=10000, n_conflict=10000, epochs=30, fmnist=None,
                  widths=PAPER_WIDTHS),
}
Config.PRESETS = PRESETS


def load_masks(cfg: Config) -> tuple[tuple, tuple]:
    """The training and test silhouettes (masks, labels, class names) of ``cfg``."""
    return (fashion_mnist_masks("train", n_per_class=cfg.masks_train, seed=MASK_SEED),
            fashion_mnist_masks("test", n_per_class=cfg.masks_test, seed=MASK_SEED))


def _run_key(cfg: Config, model: str, kind: str, strength: float, seed: int) -> dict:
    keep = ("noise", "masks_train", "masks_test", "n_train", "n_val", "n_test", "n_conflict", "image_size")
    return {"model": model, "kind": kind, "strength": strength, "seed": seed, "width": cfg.widths[model],
            **{k: getattr(cfg, k) for k in keep}, "train": dataclasses.asdict(cfg.train_config(seed))}


def bias_record(cfg: Config, model: str, kind: str, strength: float, seed: int, masks: tuple) -> dict:
    """One cached run: ``model`` trained on ``kind`` stimuli at texture ``strength`` with ``seed``
    (the record of :func:`patchnb.bias.experiment.bias_run`)."""
    train_masks, test_masks = masks
    return cached("shape_bias", _run_key(cfg, model, kind, strength, seed), lambda run_dir: bias_run(
        model, kind, train_masks, test_masks, texture_strength=strength, noise=cfg.noise, n_train=cfg.n_train,
        n_val=cfg.n_val, n_test=cfg.n_test, n_conflict=cfg.n_conflict, image_size=cfg.image_size,
        width=cfg.widths[model], cfg=cfg.train_config(seed), seed=seed, progress=True))


def _transfer_score(cfg: Config, source: dict, fm: data.Splits, mode: str, seed: int) -> float:
    arch = source["model"]
    backbone = make_vision_model(arch, 1, len(source["classes"]), cfg.image_size, cfg.widths[arch])
    backbone.load_state_dict(source["state"])
    return float(transfer(backbone, fm, cfg.train_config(seed), mode=mode, progress=True)[1].test["score"])


def transfer_table(cfg: Config, masks: tuple, strength: float) -> tuple[pd.DataFrame, str]:
    """Fashion-MNIST test accuracy of the backbone trained on each kind of stimuli at ``strength``
    (first seed), frozen and fine-tuned; and the description of the second task."""
    arch, seed = cfg.transfer_arch, cfg.seeds[0]
    if arch is None:
        return (pd.DataFrame(columns=["backbone trained on", "mode", "Fashion-MNIST test acc. (%)"]),
                "not measured (transfer needs a vision model: resnet, convnext, vit or coatnet)")
    fm = data.load_splits("fashion_mnist", train_size=cfg.fmnist, val_size=cfg.fmnist and cfg.fmnist // 5,
                          test_size=cfg.fmnist and 2 * cfg.fmnist)
    rows = []
    for kind in TRAIN_KINDS:
        key = _run_key(cfg, arch, kind, strength, seed)
        for mode in ("frozen", "finetune"):
            score = cached("shape_bias_transfer", {**key, "mode": mode, "fmnist": cfg.fmnist},
                           lambda run_dir, kind=kind, mode=mode: _transfer_score(
                               cfg, bias_record(cfg, arch, kind, strength, seed, masks), fm, mode, seed))
            rows.append({"backbone trained on": kind, "mode": mode, "Fashion-MNIST test acc. (%)": f"{100 * score:.1f}",
                         "score": score})
    return pd.DataFrame(rows), fm.describe()


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the shape bias and accuracy per model, training set and
    texture strength (in the order the runs were made)."""
    rows = []
    for (m, k, s), g in df.groupby(["model", "train_kind", "texture_strength"], sort=False):
        sb, acc = mean_std(g.shape_bias), mean_std(g.accuracy)
        rows.append({"model": m, "trained on": k, "texture strength": s, "shape bias (%)": pm(*sb),
                     "consistent test acc. (%)": pm(*acc), "sb": sb[0], "sb_std": sb[1], "acc": acc[0]})
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


def claim_models(cfg: Config) -> tuple[list[str], list[str]]:
    """The convolutional and the attention models of ``cfg.models`` (the models the claims compare)."""
    return [m for m in CONVOLUTIONAL if m in cfg.models], [m for m in ATTENTION if m in cfg.models]


def budget_curves(cfg: Config, masks: tuple, strength: float) -> dict[tuple[str, str], list[list[float]]]:
    """Shape bias per ``(model, training set)`` of the claims' models, per budget of ``cfg.budgets`` per
    seed (cached runs; the full budget is the table's runs)."""
    conv, attn = claim_models(cfg)
    points = [(n, cfg if n == cfg.n_train else cfg.replace(n_train=n)) for n in cfg.budgets]
    grid = [(m, k, n, at, seed) for m in conv + attn for k in TRAIN_KINDS for n, at in points for seed in cfg.seeds]
    out: dict[tuple[str, str], list[list[float]]] = {}
    for m, k, n, at, seed in tqdm(grid, desc="shape-bias budget curve"):
        per = out.setdefault((m, k), [[] for _ in points])
        per[[p for p, _ in points].index(n)].append(float(bias_record(at, m, k, strength, seed, masks)["shape_bias"]))
    return out


def _mean_over(curves: dict, models: list[str], kind: str) -> list[list[float]]:
    """Per budget per seed, the mean shape bias of ``models`` trained on ``kind``."""
    per_model = [curves[(m, kind)] for m in models]
    return [[sum(v) / len(v) for v in zip(*(pm_[i] for pm_ in per_model))] for i in range(len(per_model[0]))]


def claims(cfg: Config, budgets: list[int], curves: dict) -> tuple[dict, dict, dict]:
    """The chapter's two claims decided by the book's rule (paired by seed): ``claim_attn_shape``, the
    mean shape bias of the attention models exceeds that of the convolutional ones after cue-consistent
    training; ``claim_stylized``, stylized training raises the mean shape bias of the claims' models.
    Returns the glued words and gaps, the numbers (``<claim>_diff``) and the curves drawn."""
    conv, attn = claim_models(cfg)
    both = conv + attn
    text, numbers, drawn = {}, {}, {}
    pairs = {}
    if conv and attn:
        a, b = _mean_over(curves, attn, "consistent"), _mean_over(curves, conv, "consistent")
        pairs["claim_attn_shape"] = (a, b)
        drawn["attention (consistent)"], drawn["convolution (consistent)"] = a, b
    if both:
        a, b = _mean_over(curves, both, "stylized"), _mean_over(curves, both, "consistent")
        pairs["claim_stylized"] = (a, b)
        drawn["claims' models, stylized"], drawn["claims' models, consistent"] = a, b
    for claim in ("claim_attn_shape", "claim_stylized"):
        if claim not in pairs:
            text.update({claim: "not measured (needs a convolutional and an attention model)",
                         f"{claim}_gap": "n/a"})
            continue
        a, b = pairs[claim]
        if not all(x == x for v in a + b for x in v):  # a run without a shape or texture decision: NaN
            text.update({claim: UNSETTLED, f"{claim}_gap": "n/a (a run made no shape or texture decision)"})
            continue
        v = budget_verdict(budgets, a, b, claimed="greater", paired=True)
        text.update({claim: v.word, f"{claim}_gap": v.gap()})
        numbers[f"{claim}_diff"] = float(v.diffs[-1])
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
    curves = budget_curves(cfg, masks, hi)
    claim_text, claim_numbers, drawn = claims(cfg, cfg.budgets, curves)
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
                  runs={"grid": runs, "budgets": cfg.budgets,
                        "curves": {f"{m}/{k}": v for (m, k), v in curves.items()}})


__all__ = ["Config", "PRESETS", "bias_record", "budget_curves", "claims", "load_masks", "run", "summarize",
           "transfer_table", "verdicts"]

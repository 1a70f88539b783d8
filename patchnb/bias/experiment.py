"""One shape-bias experiment: train a model on cue-consistent or stylized stimuli with
:func:`patchnb.train.fit`, then measure its accuracy on cue-consistent test stimuli (unseen
silhouettes) and its shape bias on cue-conflict stimuli made from the same unseen silhouettes."""

from __future__ import annotations

import time

import torch

from ..models.patch import patch_network
from ..models.vision import MODELS, make_vision_model
from ..train import TrainConfig, features, fit
from .metrics import shape_bias
from .stimuli import bias_splits, make_stimuli

BIAS_MODELS = (*MODELS, "patch")  # "patch": the Phi_full network of the patch chapter, dictionary from the stimuli


def bias_run(model_name: str, train_kind: str, train_masks: tuple, test_masks: tuple, texture_strength: float = 1.0,
             noise: float = 0.0, n_train: int = 2000, n_val: int = 500, n_test: int = 1000, n_conflict: int = 1000,
             image_size: int = 28, width: int | None = None, cfg: TrainConfig | None = None, seed: int = 0,
             model_kwargs: dict | None = None, progress: bool = False) -> dict:
    """Train ``model_name`` on ``train_kind`` stimuli (``consistent`` / ``stylized``) and evaluate.

    ``model_name`` is one of :data:`BIAS_MODELS`; for ``"patch"`` the dictionary is built from the
    training stimuli and ``width`` is its size N (k = N/4).

    Returns a dict with ``shape_bias`` (and its counts), ``accuracy`` (shape label, cue-consistent
    test), ``conflict_shape_acc`` / ``conflict_texture_acc`` (fractions of cue-conflict images
    answered by shape / by texture), the best epoch, seconds, the trained ``model`` state, a few
    example cue-conflict images with their decisions, the normalisation (``mean``/``std`` lists) and
    the class names: tensors and plain values only, so the record can be cached."""
    cfg = cfg or TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-3, schedule="cosine", seed=seed)
    common = dict(image_size=image_size, texture_strength=texture_strength, noise=noise)
    splits = bias_splits(train_kind, train_masks, test_masks, n_train, n_val, n_test, seed=seed, **common)
    torch.manual_seed(seed)
    if model_name == "patch":
        model = patch_network(splits.norm(splits.train.images), len(splits.classes), n_centroids=width or 256,
                              seed=seed, **(model_kwargs or {}))
    else:
        model = make_vision_model(model_name, splits.shape[0], len(splits.classes), image_size, width,
                           **(model_kwargs or {}))
    t0 = time.perf_counter()
    result = fit(model, splits, cfg, progress=progress)
    conflict = make_stimuli("conflict", n_conflict, *test_masks, seed=seed + 3_000_017, **common)
    pred = features(model, conflict.data, splits, 1000)[0].argmax(1)
    sb = shape_bias(pred, conflict.shape_labels, conflict.texture_labels, n_classes=len(splits.classes))
    n = len(conflict)
    return {"model": model_name, "train_kind": train_kind, "texture_strength": texture_strength, "seed": seed,
            "shape_bias": sb.shape_bias, "n_shape": sb.n_shape, "n_texture": sb.n_texture, "n_other": sb.n_other,
            "n_excluded": sb.n_excluded, "accuracy": float(result.test["score"]), "val_accuracy": result.val["score"],
            "conflict_shape_acc": sb.n_shape / n, "conflict_texture_acc": sb.n_texture / n,
            "per_class": {c: v["shape_bias"] for c, v in sb.per_class.items()}, "best_epoch": result.best_epoch,
            "seconds": time.perf_counter() - t0, "state": {k: v.cpu() for k, v in model.state_dict().items()},
            "examples": {"images": conflict.data.images[:16].clone(), "shape": conflict.shape_labels[:16].clone(),
                         "texture": conflict.texture_labels[:16].clone(), "pred": pred[:16].clone()},
            "norm": {"mean": list(splits.norm.mean), "std": list(splits.norm.std)}, "classes": list(splits.classes)}


__all__ = ["BIAS_MODELS", "bias_run"]

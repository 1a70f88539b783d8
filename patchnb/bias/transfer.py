"""Training options of the convolution-vs-attention study on top of :func:`patchnb.train.fit`:
a frozen backbone with a new head, and transfer of a (bias-)trained backbone to a second task,
frozen (linear probe) or fine-tuned. Early stopping is ``TrainConfig.patience`` (honoured by the
loop; the study's ``--patience`` option was ignored by its training script)."""

from __future__ import annotations

import copy

import torch

from ..data import Splits, check_choice
from ..models.vision import VisionModel, freeze_backbone, replace_head
from ..train import TrainConfig, TrainResult, fit

TRANSFER_MODES = ("frozen", "finetune")


def transfer(model: VisionModel, splits: Splits, cfg: TrainConfig, mode: str = "frozen", copy_model: bool = True,
             **fit_kwargs) -> tuple[VisionModel, TrainResult]:
    """Train ``model`` on a second task ``splits``: a fresh head with ``len(splits.classes)`` outputs,
    the backbone frozen (``mode="frozen"``: weights *and* BatchNorm statistics fixed, only the head
    learns) or trained too (``mode="finetune"``). The new head is initialised from ``cfg.seed`` (as
    ``fit`` seeds the training), so the result depends only on the arguments, not on what ran before.
    The input model is left untouched unless ``copy_model=False``. Returns the trained model and
    :class:`patchnb.train.TrainResult`."""
    check_choice("mode", mode, TRANSFER_MODES)
    if not isinstance(model, VisionModel):
        raise TypeError(f"transfer needs a patchnb.models.vision.VisionModel, got {type(model).__name__}")
    if copy_model:
        model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        replace_head(model, len(splits.classes))
    freeze_backbone(model, frozen=(mode == "frozen"))
    result = fit(model, splits, cfg, **fit_kwargs)
    return model, result


__all__ = ["TRANSFER_MODES", "transfer"]

"""Optimisers and learning-rate schedules of :func:`patchnb.train.fit`.

:func:`make_optimizer` builds SGD (with momentum), Adam, AdamW or :class:`LARS` from a
:class:`~patchnb.train.TrainConfig`; :func:`lr_factor` is the multiplier of the base LR at a
(fractional) epoch: linear warm-up, then constant, multi-step, exponential, staircase or cosine decay.
``fit`` evaluates it after every optimiser step at ``step / steps_per_epoch``, where
``steps_per_epoch`` is the number of batches the loader really yields
(:func:`patchnb.train.steps_per_epoch`).
"""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
SCHEDULES = ("constant", "multistep", "cosine", "exponential", "staircase")


def lr_factor(cfg, epoch: float) -> float:
    """Multiplier of the base LR at (fractional) ``epoch`` for ``cfg`` (a :class:`~patchnb.train.TrainConfig`):
    warm-up, then the schedule."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return (epoch + 1e-8) / cfg.warmup_epochs
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(int(epoch) >= m for m in cfg.milestones)
    if cfg.schedule == "exponential":
        return cfg.gamma ** epoch
    if cfg.schedule == "staircase":
        return cfg.gamma ** (int(epoch) // cfg.step_epochs)
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)  # cosine
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - cfg.warmup_epochs) / span)))


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017, "Large Batch
    Training of Convolutional Networks", eq. 6): each tensor's step is scaled by
    ``eta * ||w|| / (||g|| + wd ||w||)``. Biases and norm parameters (1-D) are not adapted."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    wn, gn = p.norm(), g.norm()
                    trust = torch.where((wn > 0) & (gn > 0), group["eta"] * wn / gn, torch.ones_like(wn))
                    g = g * trust
                buf = self.state[p].get("momentum")
                buf = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
                self.state[p]["momentum"] = buf
                p.add_(buf, alpha=-group["lr"])


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` of a :class:`~patchnb.train.TrainConfig` over the trainable ``params``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
    return LARS(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

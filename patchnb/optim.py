"""Optimisers and learning-rate schedules of :func:`patchnb.train.fit`.

:func:`make_optimizer` builds SGD (with momentum), Adam, AdamW or :class:`LARS` (two forms: ``"lars"``
and EMP-SSL's ``"lars_solo"``) from a
:class:`~patchnb.train.TrainConfig`; :func:`lr_factor` is the multiplier of the base LR at a
(fractional) epoch: linear warm-up, then constant, multi-step, exponential, staircase or cosine decay.
``fit`` evaluates it after every optimiser step at ``step / steps_per_epoch``, where
``steps_per_epoch`` is the number of batches the loader really yields
(:func:`patchnb.train.steps_per_epoch`).
"""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "lars", "lars_solo")
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
    r"""Momentum SGD with layer-wise adaptive rate scaling (LARS; You, Gitman, Ginsburg 2017, "Large Batch
    Training of Convolutional Networks", arXiv:1708.03888), in the two forms the book's recipes use.

    For every tensor ``w`` with gradient ``g`` that is adapted, with weight decay ``wd``:

    * ``trust="decayed"`` (the default; patchnb's LARS so far): the decayed gradient
      :math:`d = g + wd\,w` is scaled by :math:`\eta\,\|w\| / \|d\|`. This is the trust ratio of SimCLR's
      TensorFlow ``LARSOptimizer`` (google-research/simclr ``lars_optimizer.py``, also the unused ``LARS``
      class of EMP-SSL's ``lars.py``); it is *not* You et al.'s eq. 6, whose denominator is
      :math:`\|g\| + wd\,\|w\|` (the triangle inequality makes that one the smaller ratio).
    * ``trust="eq6"``: You et al. eq. 6, :math:`\lambda = \eta\,\|w\| / (\|g\| + wd\,\|w\| + \epsilon)`,
      and :math:`d = \lambda\,(g + wd\,w)`; with ``clip=True`` the factor is :math:`\min(\lambda/\mathrm{lr}, 1)`
      instead, so the tensor's effective learning rate is :math:`\min(\lambda, \mathrm{lr})`. This is
      solo-learn's ``LARSWrapper`` (``update_p``), which EMP-SSL's ``main.py`` (tsb0601/EMP-SSL) wraps
      around ``SGD(lr, momentum=0.9, weight_decay=1e-4, nesterov=True)`` with ``eta=0.005, clip=True,
      exclude_bias_n_norm=True``: :func:`make_optimizer`'s ``"lars_solo"``.

    In both forms a tensor with :math:`\|w\| = 0` or :math:`\|g\| = 0` takes its step unscaled (``"decayed"``:
    :math:`d = g + wd\,w`; ``"eq6"``: :math:`d = g`, as the wrapper, which then adds no decay either).
    With ``exclude_1d`` (default) biases and normalisation parameters (tensors of at most one dimension) are
    neither adapted nor decayed (:math:`d = g`), as the wrapper's ``exclude_bias_n_norm`` (which also takes
    their decay away). Then PyTorch's momentum SGD on :math:`d`: the buffer :math:`b \leftarrow
    \mathrm{momentum}\,b + d` (:math:`b = d` at the first step), :math:`w \leftarrow w - \mathrm{lr}\,u` with
    :math:`u = b`, or with ``nesterov`` :math:`u = d + \mathrm{momentum}\,b`.
    """

    TRUST = ("decayed", "eq6")

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02,
                 trust: str = "decayed", clip: bool = False, exclude_1d: bool = True, nesterov: bool = False,
                 eps: float = 0.0):
        if trust not in self.TRUST:
            raise ValueError(f"trust must be one of {list(self.TRUST)}, got {trust!r}")
        if not eta > 0 or not lr > 0:
            raise ValueError(f"lr and eta must be > 0, got lr={lr}, eta={eta}")
        if eps < 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ValueError(f"eps and weight_decay must be >= 0 and momentum in [0, 1), got eps={eps}, "
                             f"weight_decay={weight_decay}, momentum={momentum}")
        if clip and trust != "eq6":
            raise ValueError("clip=True is the LARSWrapper's clipping and needs trust='eq6'")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, trust=trust,
                                      clip=clip, exclude_1d=exclude_1d, nesterov=nesterov, eps=eps))

    @staticmethod
    def _direction(p: torch.Tensor, group: dict) -> torch.Tensor:
        """The (scaled) gradient ``d`` of one tensor, before momentum."""
        g, wd = p.grad, group["weight_decay"]
        if group["exclude_1d"] and p.ndim <= 1:
            return g
        if group["trust"] == "decayed":
            g = g.add(p, alpha=wd)
            wn, gn = p.norm(), g.norm()
            trust = torch.where((wn > 0) & (gn > 0), group["eta"] * wn / gn, torch.ones_like(wn))
            return g * trust
        wn, gn = p.norm(), g.norm()
        local = group["eta"] * wn / (gn + wd * wn + group["eps"])
        if group["clip"]:
            local = torch.clamp(local / group["lr"], max=1.0)  # lr 0 (end of a cosine schedule): factor 1
        return torch.where((wn > 0) & (gn > 0), g.add(p, alpha=wd) * local, g)  # no host sync on a GPU

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = self._direction(p, group)
                buf = self.state[p].get("momentum")
                buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                self.state[p]["momentum"] = buf
                p.add_(d.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf, alpha=-group["lr"])
        return loss


#: the options of :func:`make_optimizer`'s ``"lars_solo"``: EMP-SSL's ``main.py`` (tsb0601/EMP-SSL, also the
#: kachayev/ssl-in-one-epoch port): ``LARSWrapper(SGD(..., nesterov=True), eta=0.005, clip=True,
#: exclude_bias_n_norm=True)``, the wrapper's ``eps`` 1e-8; momentum and weight decay are the TrainConfig's.
LARS_SOLO = dict(eta=0.005, trust="eq6", clip=True, exclude_1d=True, nesterov=True, eps=1e-8)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` of a :class:`~patchnb.train.TrainConfig` over the trainable ``params``:
    ``"lars"`` is :class:`LARS` with its defaults (trust ratio on the decayed gradient, eta 0.02, plain
    momentum); ``"lars_solo"`` is :class:`LARS` with :data:`LARS_SOLO`, the LARS of EMP-SSL's code."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lars_solo":
        return LARS(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **LARS_SOLO)
    return LARS(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

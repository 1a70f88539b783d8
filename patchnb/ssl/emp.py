"""EMP-SSL's evaluation protocol and per-epoch checkpointing for any self-supervised method.

* :func:`patch_averaged_features`: the image representation of EMP-SSL (Tong, Chen, LeCun, Ma 2023,
  "EMP-SSL: Towards Self-Supervised Learning in One Training Epoch", sec. 3.3): the backbone
  features of ``n_patches`` random resized crops of each image, averaged. Seeded, so the same
  encoder, data and seed give the same features.
* :class:`EMPSSLAveraged`: :class:`~patchnb.ssl.methods.EMPSSL` whose ``evaluate`` scores those
  patch-averaged features (``eval_patches``; 0 keeps the cheap whole-image kNN for per-epoch model
  selection), with its parameters checked (``n_patches >= 2``, ``eps > 0``).
* :class:`Checkpointing`: wraps any method so that :func:`patchnb.train.fit` (unchanged) writes the
  backbone every ``every`` epochs (``epoch_003.pt``, via :func:`patchnb.eval.save_backbone`), with the
  cumulative training seconds in its metadata; resumes with the run. :func:`pretrain_with_checkpoints`
  runs it (seed 001's SupCon protocol: checkpoints first, then :func:`patchnb.eval.sweep_checkpoints`).
* :func:`evaluate_representation`: linear probe + weighted kNN (k = 20) + uniformity of one encoder.
* :func:`vmf_concentration` and :func:`circle_projection`: the von Mises-Fisher view of normalised
  embeddings (how concentrated they are on the sphere, overall and per class).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .augment import Augment, normalize
from .methods import EMPSSL, _unwrap

CHECKPOINT_FOLDER = "checkpoints"


def check_emp(n_patches: int, eps: float, name: str = "n_patches") -> None:
    """EMP-SSL needs at least two patches per image (the invariance term compares patches with their
    mean) and a positive coding-rate precision ``eps``."""
    if int(n_patches) != n_patches or n_patches < 2:
        raise ValueError(f"{name} must be an integer >= 2 (EMP-SSL averages over patches), got {n_patches}")
    if not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite value > 0 (the coding-rate precision; the paper uses 0.2), got {eps}")


@torch.no_grad()
def patch_averaged_features(encoder: nn.Module, data, splits, n_patches: int = 20, seed: int = 0,
                            augment: Augment | None = None, scale: tuple[float, float] = (0.25, 1.0),
                            batch_size: int = 128, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""EMP-SSL's image embedding (Tong et al. 2023, sec. 3.3): :math:`\bar h(x) = \frac1n \sum_{i=1}^n f(c_i(x))`
    over ``n_patches`` random resized crops :math:`c_i` (area fraction in ``scale``, upsampled to the input
    size, then ``augment``'s flip and colour operations; default :meth:`Augment.emp_ssl`) through the
    backbone ``encoder`` (eval mode, no gradient). Returns ``(features (N, D) float32 on the CPU, labels)``.

    The crops are drawn from one ``torch.Generator`` seeded with ``seed`` batch after batch, so the result
    is reproducible for a given ``batch_size``.
    """
    if int(n_patches) != n_patches or n_patches < 2:
        raise ValueError(f"n_patches must be an integer >= 2 (use the whole image for one view), got {n_patches}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    augment = augment or Augment.emp_ssl()
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was = encoder.training
    encoder.eval()
    out = []
    try:
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float().div_(255)
            p = augment.patches(x, n_patches, g, scale)  # (n, B, C, H, W)
            n, b = p.shape[:2]
            h = encoder(normalize(p.flatten(0, 1), splits.norm)).float().flatten(1)
            out.append(h.view(n, b, -1).mean(0).cpu())
    finally:
        encoder.train(was)
    return torch.cat(out), data.labels.clone()


@dataclass
class EMPSSLAveraged(EMPSSL):
    """:class:`~patchnb.ssl.methods.EMPSSL` evaluated as the paper does: weighted kNN on *patch-averaged*
    backbone features (``eval_patches`` crops per image, seeded with ``eval_seed``). ``eval_patches = 0``
    scores whole images instead (cheap; for per-epoch model selection inside :func:`patchnb.train.fit`).
    Checks ``n_patches >= 2``, ``eps > 0`` and ``eval_patches`` in {0} or >= 2."""

    eval_patches: int = 0
    eval_seed: int = 0
    name: str = "emp_ssl"

    def __post_init__(self) -> None:
        check_emp(self.n_patches, self.eps)
        if self.eval_patches != 0:
            check_emp(self.eval_patches, self.eps, "eval_patches")

    def features(self, model: nn.Module, data, splits) -> torch.Tensor:
        if not self.eval_patches:
            return super().features(model, data, splits)
        backbone = getattr(_unwrap(model), "backbone", _unwrap(model))
        bs = max(1, self.eval_batch_size // self.eval_patches)
        return patch_averaged_features(backbone, data, splits, self.eval_patches, self.eval_seed, self.augment,
                                       self.patch_scale, batch_size=bs)[0]


class Checkpointing:
    """Wrap a method so that :func:`patchnb.train.fit` saves the backbone every ``every`` epochs.

    ``fit`` calls ``evaluate`` on the validation split once after each epoch's steps; the first
    ``evaluate`` after some steps marks the end of an epoch, and the backbone is written to
    ``folder/epoch_{epoch:03d}.pt`` (epochs counted from 1) with ``{"epoch", "train_seconds", "method"}``
    as metadata, ``train_seconds`` being the cumulative wall-clock of the training steps (forward,
    backward, optimiser) without evaluation. The later calls of ``fit`` (final validation, test) write
    nothing. When ``fit`` resumes from ``run_dir/last.pt`` the epoch count and seconds are read from it,
    so the numbering continues. Everything else is delegated to ``method``.
    """

    def __init__(self, method, folder: str | Path, every: int = 1, run_dir: str | Path | None = None):
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch, got {every}")
        self.method, self.folder, self.every = method, Path(folder), int(every)
        self.run_dir = Path(run_dir) if run_dir is not None else self.folder.parent
        self.epoch: int | None = None
        self.seconds = 0.0
        self._t0: float | None = None
        self.saved: list[Path] = []

    @property
    def name(self) -> str:
        return self.method.name

    def __repr__(self) -> str:  # part of fit's config fingerprint: the folder is not
        return f"Checkpointing({self.method!r}, every={self.every})"

    def _start(self) -> None:
        from ..train import CheckpointError, load_checkpoint

        self.epoch, self.seconds = 0, 0.0
        last = self.run_dir / "last.pt"
        if last.is_file():
            try:
                ck = load_checkpoint(last)
                self.epoch, self.seconds = int(ck["epoch"]) + 1, float(ck.get("train_seconds", 0.0))
            except (CheckpointError, KeyError):
                pass

    def step(self, model, images, labels, splits, generator):
        if self.epoch is None:
            self._start()
        if self._t0 is None:
            self._t0 = time.perf_counter()
        return self.method.step(model, images, labels, splits, generator)

    def evaluate(self, model, data, splits) -> dict:
        if self._t0 is not None:  # the end of an epoch
            from ..eval.features import save_backbone

            self.seconds += time.perf_counter() - self._t0
            self._t0 = None
            self.epoch += 1
            if self.epoch % self.every == 0:
                path = self.folder / f"epoch_{self.epoch:03d}.pt"
                save_backbone(model, path, {"epoch": self.epoch, "train_seconds": self.seconds,
                                            "method": self.method.name})
                self.saved.append(path)
        return self.method.evaluate(model, data, splits)

    def __getattr__(self, item):  # anything else (make_model, augment, ...) is the method's
        if item == "method":
            raise AttributeError(item)
        return getattr(self.method, item)


def pretrain_with_checkpoints(model: nn.Module, splits, cfg, method, run_dir: str | Path, every: int = 1,
                              name: str = "pretrain", progress: bool = True):
    """``fit(model, splits, cfg, Checkpointing(method, run_dir/checkpoints, every), run_dir)``; returns
    ``(TrainResult, sorted checkpoint paths)``. Interrupted runs resume (``fit``'s ``last.pt``), and a
    finished run returns at once with its checkpoints."""
    from ..train import fit

    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_FOLDER
    wrapped = Checkpointing(method, folder, every, run_dir)
    result = fit(model, splits, cfg, wrapped, run_dir=run_dir, name=name, progress=progress)
    return result, sorted(folder.glob("epoch_*.pt"))


def checkpoint_meta(path: str | Path) -> dict:
    """The metadata :class:`Checkpointing` stored with a backbone (epoch, train_seconds, method)."""
    from ..train import load_checkpoint

    return dict(load_checkpoint(path).get("meta", {}))


# ----------------------------------------------------------------------------- evaluation


def evaluate_representation(encoder: nn.Module, splits, n_patches: int | None = None, seed: int = 0,
                            k: int = 20, temperature: float = 0.07,
                            weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
                            augment: Augment | None = None, batch_size: int = 512, device=None) -> dict:
    """Linear probe (regularisation chosen on validation, scored once on test), weighted kNN (``k``,
    ``temperature``; train split as the bank) and uniformity / vMF concentration of the l2-normalised test
    embeddings, for whole-image features (``n_patches=None``) or EMP-SSL's patch-averaged features.
    Returns the metrics and the test features (``"test_features"``, ``"test_labels"``)."""
    from ..eval.features import features
    from ..eval.knn import knn_classify
    from ..eval.probe import linear_probe
    from .losses import uniformity

    def feats(d, s):
        if n_patches is None:
            return features(encoder, d, splits, batch_size, device)
        return patch_averaged_features(encoder, d, splits, n_patches, seed + s, augment,
                                       batch_size=max(1, batch_size // n_patches), device=device)

    t0 = time.perf_counter()
    (ftr, ytr), (fva, yva), (fte, yte) = feats(splits.train, 0), feats(splits.val, 1), feats(splits.test, 2)
    seconds_features = time.perf_counter() - t0
    nc = len(splits.classes)
    probe = linear_probe(ftr, ytr, fva, yva, fte, yte, weight_decays=weight_decays, n_classes=nc)
    knn = knn_classify(ftr, ytr, fte, yte, k=k, temperature=temperature, n_classes=nc)
    knn_val = knn_classify(ftr, ytr, fva, yva, k=k, temperature=temperature, n_classes=nc)
    z = F.normalize(fte.double(), dim=1)
    sub = z[:2000]
    return {"linear": probe.test["accuracy"], "linear_val": probe.val["accuracy"], "knn": knn.accuracy,
            "knn_val": knn_val.accuracy, "precision": probe.test["precision"], "recall": probe.test["recall"],
            "f1": probe.test["f1"], "confusion": probe.test["confusion"], "weight_decay": probe.weight_decay,
            "uniformity": float(uniformity(sub)), "kappa": vmf_concentration(z)["kappa"],
            "kappa_class": vmf_concentration(z, yte)["kappa"], "seconds_features": seconds_features,
            "test_features": fte, "test_labels": yte}


def vmf_concentration(z: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    r"""Concentration :math:`\hat\kappa` of a von Mises-Fisher distribution fitted to unit vectors ``z`` (N, d)
    (Banerjee et al. 2005, JMLR, eq. 4.4): with :math:`\bar R = \|\frac1N\sum_i z_i\|`,
    :math:`\hat\kappa = \bar R (d - \bar R^2) / (1 - \bar R^2)`. 0 for a uniform spread over the sphere, large
    when the points gather around one direction. With ``labels`` the per-class estimates are averaged
    (weighted by class size): high class concentration with low overall concentration is the picture
    of well-separated, uniformly spread classes. Returns ``{"kappa", "R"}``."""
    z = F.normalize(z.double(), dim=1)
    d = z.shape[1]

    def one(x):
        r = float(x.mean(0).norm())
        r = min(r, 1 - 1e-12)
        return r * (d - r * r) / (1 - r * r), r

    if labels is None:
        k, r = one(z)
        return {"kappa": k, "R": r}
    ks, rs, ws = [], [], []
    for c in torch.unique(labels):
        m = labels == c
        k, r = one(z[m])
        ks.append(k)
        rs.append(r)
        ws.append(int(m.sum()))
    w = torch.tensor(ws, dtype=torch.float64) / sum(ws)
    return {"kappa": float((torch.tensor(ks) * w).sum()), "R": float((torch.tensor(rs) * w).sum())}


def circle_projection(z: torch.Tensor) -> torch.Tensor:
    """2-D view of embeddings on the sphere: l2-normalise, project on the two leading principal directions,
    l2-normalise again (points on the unit circle, as in Wang & Isola 2020, Fig. 3). Returns (N, 2)."""
    z = F.normalize(z.double(), dim=1)
    zc = z - z.mean(0)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    return F.normalize(z @ v[:2].T, dim=1).float()

"""Backbone checkpoints written during training, for any method of :func:`patchnb.train.fit`.

* :func:`save_backbone`: the backbone's weights apart from any head (read back with
  :func:`patchnb.eval.load_backbone`, the one loader).
* :class:`Checkpointing`: wraps a method so that ``fit`` writes the backbone every ``every`` epochs
  (``epoch_003.pt``) with the cumulative training seconds in its metadata; resumes with the run.
* :func:`pretrain_with_checkpoints` runs it: the first half of the SupCon thesis repo's protocol
  (seed 001: checkpoints first, then a linear head on each, :func:`patchnb.eval.sweep_checkpoints`),
  also EMP-SSL's per-epoch snapshots.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from ..train import CheckpointError, fit, load_checkpoint, save_atomic, unwrap

CHECKPOINT_FOLDER = "checkpoints"


def save_backbone(model: nn.Module, path: str | Path, meta: Mapping | None = None) -> Path:
    """Save the backbone's weights apart from any head, atomically (:func:`patchnb.train.save_atomic`).

    A model with a ``backbone`` sub-module (e.g. :class:`patchnb.ssl.SSLModel`) has only that part
    saved; any other module is saved whole. DDP/DataParallel wrappers are unwrapped. The file holds
    ``{"backbone": state_dict, "meta": meta}``; read it back with :func:`patchnb.eval.load_backbone`.
    """
    model = unwrap(model)
    backbone = model.backbone if isinstance(getattr(model, "backbone", None), nn.Module) else model
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    save_atomic({"backbone": state, "meta": dict(meta or {})}, path)
    return Path(path)


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
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_FOLDER
    wrapped = Checkpointing(method, folder, every, run_dir)
    result = fit(model, splits, cfg, wrapped, run_dir=run_dir, name=name, progress=progress)
    return result, sorted(folder.glob("epoch_*.pt"))


def checkpoint_meta(path: str | Path) -> dict:
    """The metadata :class:`Checkpointing` stored with a backbone (epoch, train_seconds, method)."""
    return dict(load_checkpoint(path).get("meta", {}))

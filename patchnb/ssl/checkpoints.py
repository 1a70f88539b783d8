"""Backbone checkpoints written during training, for any method of :func:`patchnb.train.fit`.

* :func:`save_backbone`: the backbone's weights apart from any head (read back with
  :func:`patchnb.eval.load_backbone`, the one loader).
* :class:`Checkpointing`: a ``fit`` callback (``on_epoch_end``) writing the backbone every ``every``
  epochs (``epoch_003.pt``) with the cumulative training seconds in its metadata; resumes with the run.
* :func:`pretrain_with_checkpoints` runs it: the first half of the SupCon thesis repo's protocol
  (seed 001: checkpoints first, then a linear head on each, :func:`patchnb.eval.sweep_checkpoints`),
  also EMP-SSL's per-epoch snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from ..checkpoint import load_checkpoint, save_atomic
from ..train import fit, unwrap

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
    """A :func:`patchnb.train.fit` callback that saves the backbone every ``every`` epochs.

    ``fit`` calls ``on_epoch_end(epoch, model, row, run_dir)`` after each epoch's validation and its
    ``last.pt``; after epochs ``every, 2 every, ...`` (counted from 1) the backbone is written to
    ``folder/epoch_{epoch:03d}.pt`` with ``{"epoch", "train_seconds", "method"}`` as metadata.
    ``train_seconds`` is ``fit``'s own cumulative wall-clock of the training steps (forward, backward,
    optimiser; no evaluation), read from that epoch's ``run_dir/last.pt`` (``None`` without a run
    folder). A resumed run does not replay the epochs it skips, so their files stay as written and the
    numbering continues. ``method`` names the method in the metadata.
    """

    def __init__(self, folder: str | Path, every: int = 1, method: str = ""):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1 epoch, got {every!r}")
        self.folder, self.every, self.method = Path(folder), every, str(method)
        self.saved: list[Path] = []

    def on_epoch_end(self, epoch: int, model: nn.Module, row: dict, run_dir: Path | None) -> None:
        n = epoch + 1
        if n % self.every:
            return
        seconds = None
        if run_dir is not None:
            seconds = float(load_checkpoint(Path(run_dir) / "last.pt")["train_seconds"])
        path = self.folder / f"epoch_{n:03d}.pt"
        save_backbone(model, path, {"epoch": n, "train_seconds": seconds, "method": self.method})
        self.saved.append(path)


def pretrain_with_checkpoints(model: nn.Module, splits, cfg, method, run_dir: str | Path, every: int = 1,
                              name: str = "pretrain", progress: bool = True):
    """``fit(model, splits, cfg, method, run_dir, callbacks=[Checkpointing(run_dir/checkpoints, every)])``;
    returns ``(TrainResult, sorted checkpoint paths)``. Interrupted runs resume (``fit``'s ``last.pt``),
    and a finished run returns at once with its checkpoints."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_FOLDER
    saver = Checkpointing(folder, every, method.name)
    result = fit(model, splits, cfg, method, run_dir=run_dir, name=name, progress=progress, callbacks=[saver])
    return result, sorted(folder.glob("epoch_*.pt"))


def checkpoint_meta(path: str | Path) -> dict:
    """The metadata :class:`Checkpointing` stored with a backbone (epoch, train_seconds, method)."""
    return dict(load_checkpoint(path).get("meta", {}))

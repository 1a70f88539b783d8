"""Checkpoint sweep (seed 001's protocol): a linear head on every saved checkpoint, the best chosen on
validation, only that one evaluated on test.

``sweep_checkpoints(run_dir, build_encoder, splits)`` takes every checkpoint file of ``run_dir``
(``*.pt``, ``*.pth``, ``*.ckpt``, ``*.tar``; sorted by the last number in the file name, the epoch;
files without a number, such as ``last.pt``, come after), loads its backbone with
:func:`~patchnb.eval.features.load_backbone` into ``build_encoder()``, extracts frozen features and
fits the :func:`~patchnb.eval.probe.linear_probe` (regularisation chosen on validation). Each
checkpoint's result is written at once to ``run_dir/sweep.json`` (atomically), so an interrupted
sweep resumes where it stopped: checkpoints already scored with the same data and probe settings,
whose file is unchanged (size and modification time), are skipped. A corrupt or unloadable
checkpoint is skipped with a warning naming it; the sweep goes on. The checkpoint with the best
validation accuracy (ties: the earliest) is then evaluated once on test: accuracy, macro
precision / recall / F1 and the confusion matrix.

Command line (``patchnb sweep-checkpoints``): :func:`main`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageData, Splits, load_splits
from ..models.resnet import ResNet18
from .features import BackboneError, cached_features, features, load_backbone
from .probe import WEIGHT_DECAYS, linear_probe

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")
RESULTS_FILE = "sweep.json"
_VERSION = 1


class SweepError(RuntimeError):
    """The sweep cannot run: no checkpoints, or none of them could be scored."""


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch in a checkpoint's file name: its last integer (``epoch_012.pt`` -> 12,
    ``ckpt_epoch_700.pth`` -> 700), ``None`` when there is none (``last.pt``)."""
    nums = re.findall(r"\d+", Path(path).stem)
    return int(nums[-1]) if nums else None


def find_checkpoints(run_dir: str | Path, pattern: str | None = None) -> list[Path]:
    """Checkpoint files directly in ``run_dir`` (``pattern`` is a glob; default: the usual suffixes),
    sorted by epoch, then name; numberless names last."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SweepError(f"run folder {run_dir} does not exist")
    files = run_dir.glob(pattern) if pattern else (p for p in run_dir.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    files = [p for p in files if p.is_file() and not p.name.endswith(".tmp")]

    def key(p: Path):
        e = checkpoint_epoch(p)
        return (e is None, e if e is not None else 0, p.name)

    return sorted(files, key=key)


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _data_hash(data: ImageData) -> str:
    h = hashlib.sha1(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _write_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


@dataclass
class SweepResult:
    """``best`` checkpoint (file name), its epoch, validation and test metrics, one row per checkpoint
    (``status`` ``done`` or ``skipped``), and the results file."""

    best: str
    best_epoch: int | None
    val: dict
    test: dict
    rows: list[dict] = field(default_factory=list)
    path: Path | None = None

    def table(self):
        """Per-checkpoint validation results as a pandas DataFrame (one row per checkpoint)."""
        import pandas as pd  # a heavy import, needed only for the tables

        return pd.DataFrame([{"checkpoint": r["checkpoint"], "epoch": r.get("epoch"), "status": r["status"],
                              "val_accuracy": r.get("val_accuracy"), "weight_decay": r.get("weight_decay")}
                             for r in self.rows])

    def test_table(self):
        """The seed-001 table: accuracy, macro precision, recall, F1 on test of the selected checkpoint."""
        import pandas as pd  # a heavy import, needed only for the tables

        return pd.DataFrame([{"checkpoint": self.best, "epoch": self.best_epoch,
                              **{k: self.test[k] for k in ("accuracy", "precision", "recall", "f1")}}])


def sweep_checkpoints(run_dir: str | Path, build_encoder: Callable[[], nn.Module], splits: Splits,
                      weight_decays: Sequence[float] = WEIGHT_DECAYS, batch_size: int = 512, device=None,
                      pattern: str | None = None, results_file: str = RESULTS_FILE, cache: str | Path | None = None,
                      progress: bool = True) -> SweepResult:
    """Score every checkpoint of ``run_dir`` with a linear probe on validation, then only the best on test.

    ``build_encoder()`` returns a fresh encoder (an ``nn.Module`` mapping normalised images to
    features) for the weights to be loaded into. ``cache`` (a folder) also stores the features with
    :func:`~patchnb.eval.features.cached_features`. Resumable, skips corrupt checkpoints with a
    warning; raises :class:`SweepError` for a folder without checkpoints or when none could be
    scored. See the module docstring.
    """
    run_dir = Path(run_dir)
    ckpts = find_checkpoints(run_dir, pattern)
    if not ckpts:
        raise SweepError(f"no checkpoint files ({pattern or ', '.join('*' + s for s in CHECKPOINT_SUFFIXES)}) in "
                         f"{run_dir}")
    config = {"version": _VERSION, "weight_decays": sorted(float(w) for w in weight_decays),
              "norm": [list(splits.norm.mean), list(splits.norm.std)],
              "data": {k: _data_hash(getattr(splits, k)) for k in ("train", "val", "test")}}
    out_path = run_dir / results_file
    state = {"config": config, "checkpoints": {}}
    if out_path.is_file():
        try:
            old = json.loads(out_path.read_text())
            if old.get("config") == config:
                state = old
            else:
                warnings.warn(f"{out_path} was written with other data or probe settings; the sweep starts afresh",
                              stacklevel=2)
        except (json.JSONDecodeError, OSError) as e:
            warnings.warn(f"{out_path} is unreadable ({e}); the sweep starts afresh", stacklevel=2)

    def feats(path: Path, encoder: nn.Module, data: ImageData):
        if cache is not None:
            return cached_features(path, encoder, data, splits, cache, batch_size, device)
        return features(encoder, data, splits, batch_size, device)

    def load(path: Path) -> nn.Module:
        return load_backbone(path, build_encoder())

    entries = state["checkpoints"]
    for path in tqdm(ckpts, desc="checkpoints", disable=not progress):
        name, stat = path.name, _stat(path)
        old = entries.get(name)
        if old and old.get("status") == "done" and old.get("file") == stat:
            continue
        t0 = time.perf_counter()
        try:
            encoder = load(path)
        except BackboneError as e:
            warnings.warn(f"skipping checkpoint {path}: {e}", stacklevel=2)
            entries[name] = {"checkpoint": name, "epoch": checkpoint_epoch(path), "status": "skipped",
                             "error": str(e), "file": stat}
            _write_json(state, out_path)
            continue
        ftr, ytr = feats(path, encoder, splits.train)
        fva, yva = feats(path, encoder, splits.val)
        res = linear_probe(ftr, ytr, fva, yva, weight_decays=weight_decays, n_classes=len(splits.classes))
        entries[name] = {"checkpoint": name, "epoch": checkpoint_epoch(path), "status": "done",
                         "val_accuracy": res.val["accuracy"], "weight_decay": res.weight_decay, "grid": res.grid,
                         "val": {k: v for k, v in res.val.items() if k != "per_class"},
                         "seconds": time.perf_counter() - t0, "file": stat}
        _write_json(state, out_path)

    order = {p.name: i for i, p in enumerate(ckpts)}
    rows = [entries[p.name] for p in ckpts if p.name in entries]
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        errors = "; ".join(f"{r['checkpoint']}: {r.get('error')}" for r in rows[:3])
        raise SweepError(f"none of the {len(ckpts)} checkpoints in {run_dir} could be loaded ({errors})")
    best = max(done, key=lambda r: (r["val_accuracy"], -order[r["checkpoint"]]))
    path = run_dir / best["checkpoint"]
    test_entry = state.get("test")
    fresh = test_entry and test_entry.get("checkpoint") == best["checkpoint"] and test_entry.get("file") == best["file"]
    if not fresh:
        encoder = load(path)
        (ftr, ytr), (fva, yva), (fte, yte) = [feats(path, encoder, d) for d in (splits.train, splits.val, splits.test)]
        res = linear_probe(ftr, ytr, fva, yva, fte, yte, weight_decays=weight_decays, n_classes=len(splits.classes))
        test_entry = {"checkpoint": best["checkpoint"], "epoch": best["epoch"], "file": best["file"],
                      "weight_decay": res.weight_decay, "val": {k: v for k, v in res.val.items() if k != "per_class"},
                      "test": res.test}
        state["test"] = test_entry
        _write_json(state, out_path)
    state["best"] = best["checkpoint"]
    _write_json(state, out_path)
    return SweepResult(best["checkpoint"], best["epoch"], test_entry["val"], test_entry["test"], rows, out_path)


# ----------------------------------------------------------------------------- command line


def build_encoder_from(arch: str, in_channels: int, width: int = 16,
                       kwargs: dict | None = None) -> Callable[[], nn.Module]:
    """A builder for ``--arch``: ``resnet18`` (:class:`patchnb.models.ResNet18`, features
    ``8 * width``) or ``package.module:callable`` (called with ``kwargs``)."""
    kwargs = dict(kwargs or {})
    if arch == "resnet18":
        return lambda: ResNet18(in_channels, width, **kwargs)
    if ":" not in arch:
        raise ValueError(f"arch must be 'resnet18' or 'package.module:callable', got {arch!r}")
    mod, fn = arch.split(":", 1)
    builder = getattr(importlib.import_module(mod), fn)
    return lambda: builder(**kwargs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchnb sweep-checkpoints", description=(
        "Train a linear head on the frozen features of every checkpoint in RUN_DIR, pick the best on validation "
        "and evaluate only that one on test (accuracy, macro precision/recall/F1, confusion matrix). Results go to "
        "RUN_DIR/sweep.json; an interrupted sweep resumes."))
    a = p.add_argument
    a("run_dir", metavar="RUN_DIR", help="folder with checkpoint files (*.pt, *.pth, *.ckpt, *.tar)")
    a("--dataset", default="fashion_mnist", help="fashion_mnist | cifar10 | cifar100 | imagefolder | synthetic")
    a("--data-root", default=None, help="ImageFolder root (dataset imagefolder)")
    a("--image-size", type=int, default=None, help="resize ImageFolder images to this size")
    a("--val-fraction", type=float, default=0.1)
    a("--train-size", type=int, default=None, help="seeded subset of the train split for the probe")
    a("--val-size", type=int, default=None)
    a("--test-size", type=int, default=None)
    a("--mean", type=float, nargs="+", default=None, help="per-channel mean of the normalisation (with --std)")
    a("--std", type=float, nargs="+", default=None)
    a("--arch", default="resnet18", help="'resnet18' (patchnb.models.ResNet18) or 'package.module:callable'")
    a("--width", type=int, default=16, help="width of the resnet18 backbone")
    a("--arch-kwargs", default=None, help="YAML/JSON dict of keyword arguments for a 'module:callable' arch")
    a("--weight-decays", type=float, nargs="+", default=list(WEIGHT_DECAYS), help="L2 grid searched on validation")
    a("--batch-size", type=int, default=512)
    a("--device", default="cpu", help="cpu | cuda | auto")
    a("--pattern", default=None, help="glob of checkpoint files inside RUN_DIR (default: the usual suffixes)")
    a("--cache", default=None, help="folder to cache features in (reruns are then offline)")
    a("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``patchnb sweep-checkpoints RUN_DIR [options]`` (``argv`` without the sub-command word); prints the
    per-checkpoint validation table and the test metrics of the selected checkpoint; returns the exit code."""
    args = _parser().parse_args(argv)
    splits = load_splits(args.dataset, root=args.data_root, val_fraction=args.val_fraction,
                         train_size=args.train_size, val_size=args.val_size, test_size=args.test_size,
                         image_size=args.image_size, mean=args.mean, std=args.std)
    kwargs = yaml.safe_load(args.arch_kwargs) if args.arch_kwargs else None
    build = build_encoder_from(args.arch, splits.shape[0], args.width, kwargs)
    device = None if args.device == "auto" else args.device
    if args.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        res = sweep_checkpoints(args.run_dir, build, splits, weight_decays=args.weight_decays,
                                batch_size=args.batch_size, device=device, pattern=args.pattern, cache=args.cache,
                                progress=not args.no_progress)
    except SweepError as e:
        print(f"patchnb sweep-checkpoints: {e}")
        return 2
    print(splits.describe())
    print(res.table().to_string(index=False))
    t = res.test
    print(f"\nselected on validation: {res.best} (epoch {res.best_epoch}), val accuracy {res.val['accuracy']:.4f}")
    print(f"test: accuracy {t['accuracy']:.4f}  precision {t['precision']:.4f}  recall {t['recall']:.4f}  "
          f"f1 {t['f1']:.4f}")
    print(f"results: {res.path}")
    return 0

"""One training loop for every model and method in patchnb.

A *method* says what one step computes and how a model is scored; the loop does the rest:
optimiser and LR schedule, seeded shuffling, model selection on the validation split, one test
evaluation of the selected model, atomic checksummed checkpoints (the last two kept) with exact
resume, early stopping, a NaN guard, tqdm progress, per-epoch callbacks and a run record
(:mod:`patchnb.track`). Checkpoints hold only tensors and plain containers and are read with
``torch.load(weights_only=True)``, so no code runs from a checkpoint file.

A method is any object with

* ``name``: str
* ``step(model, images, labels, splits, generator) -> (loss, metrics)`` where ``images`` are the
  uint8 batch and ``labels`` its labels (both on the CPU), and
* ``evaluate(model, data, splits) -> dict`` with a ``"score"`` to maximise (for example accuracy).

:class:`Classification` is the supervised method (cross-entropy, flip + crop augmentation).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import (  # noqa: F401  (CheckpointError ... remove_temporaries: re-exported, callers use them)
    LAST,
    PREVIOUS,
    RESULT,
    CheckpointError,
    checksum_status,
    load_checkpoint,
    load_result,
    remove_temporaries,
    resume_point,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .checks import NonFiniteError, check_device, check_float, check_int
from .data import ImageData, Splits, check_choice, iterate_batches, random_crop_flip
from .distributed import is_main_process, resolve_device  # noqa: F401  (re-exported)
from .optim import LARS, OPTIMIZERS, SCHEDULES, lr_factor, make_optimizer  # noqa: F401  (re-exported)
from .track import Run


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Optimisation settings (validated at construction). Defaults are the patch paper's."""

    epochs: int = 200
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "multistep"
    milestones: tuple[int, ...] = (100, 150)
    gamma: float = 0.1
    step_epochs: int = 1
    warmup_epochs: float = 0.0
    seed: int = 0
    device: str = "cpu"
    patience: int | None = None
    max_steps_per_epoch: int | None = None
    eval_batch_size: int = 1000
    test_every_epoch: bool = False
    #: each training step under ``torch.autocast`` in bfloat16 (evaluation stays fp32). Off by default: it
    #: changes the numbers (benchmarks/ssl_methods.results.txt: SSL ResNet-18 steps 1.5-1.8x faster on AMX CPUs)
    bf16: bool = False
    #: the model's 4-D weights in channels_last memory format (convolutions run NHWC; fp32 results equal up
    #: to rounding; ssl_methods.results.txt: 1.3x at ResNet-18 width 16, none at width 8)
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "eval_batch_size", "step_epochs"):
            check_int(name, getattr(self, name), 1)
        check_float("lr", self.lr, 0.0, strict_min=True)
        check_float("momentum", self.momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("momentum must be < 1 (1 never forgets a gradient), got 1.0")
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("gamma", self.gamma, 0.0, 1.0, strict_min=True)  # <= 0 flips the step's sign or zeroes it
        check_float("warmup_epochs", self.warmup_epochs, 0.0)
        check_int("seed", self.seed)
        check_int("patience", self.patience, 1, allow_none=True)
        check_int("max_steps_per_epoch", self.max_steps_per_epoch, 1, allow_none=True)
        for name in ("test_every_epoch", "bf16", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise ValueError(f"milestones must be a list of epochs, got {self.milestones!r}")
        for m in self.milestones:
            check_int("milestones", m, 0)
        self.milestones = tuple(int(m) for m in self.milestones)
        check_device("device", self.device)

    def fingerprint(self) -> str:
        """Hash of everything that changes the result (not the device)."""
        d = _fingerprinted(self)
        d.pop("device")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


#: settings added after runs were recorded: left out of fingerprints while at these defaults, so that the
#: checkpoints and results recorded before them keep their fingerprints (and resume)
_LATER_SETTINGS = {"bf16": False, "channels_last": False}


def _fingerprinted(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    for k, default in _LATER_SETTINGS.items():
        if d[k] == default:
            d.pop(k)
    return d


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- methods


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DataParallel / DistributedDataParallel wrapper; any other model itself."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


@torch.no_grad()
def features(model: torch.nn.Module, data: ImageData, splits: Splits, batch_size: int = 512,
             device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """THE forward pass of a model over a data set: ``(outputs (N, D) float32 on the CPU, labels (N,))``.

    Logits of a classifier, backbone features of an SSL model or a frozen encoder (``patchnb.eval``
    re-exports this). Images are normalised with ``splits.norm`` (the pixel space the model was trained
    on); the model (unwrapped from DDP/DataParallel) runs in eval mode (BatchNorm running statistics, no
    dropout) without gradients, in batches of ``batch_size``, and its train/eval mode is restored
    afterwards. Outputs with more than two dimensions (feature maps) are flattened. ``device``
    defaults to the model's own device (the model is moved there)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = unwrap(model)
    if device is None:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        out = [model(splits.norm(x, dev)).float().flatten(1).cpu() for x, _ in iterate_batches(data, batch_size)]
    finally:
        model.train(was_training)
    return (torch.cat(out) if out else torch.zeros(0, 0)), data.labels.clone()


@dataclass
class Classification:
    """Supervised cross-entropy with the paper's augmentation (random crop after padding the raw
    image by ``pad`` black pixels, horizontal flip: torchvision's ``RandomCrop(padding=pad)`` and
    ``RandomHorizontalFlip()`` before ``Normalize``); scored by accuracy."""

    pad: int = 4
    flip: bool = True
    name: str = "classification"

    def step(self, model, images, labels, splits, generator):
        device = next(model.parameters()).device
        if self.pad or self.flip:  # on the raw pixels: the border is black, as torchvision's RandomCrop pads
            images = random_crop_flip(images, self.pad, self.flip, generator)
        logits = model(splits.norm(images, device))
        loss = F.cross_entropy(logits, labels.to(device))
        acc = (logits.argmax(1).cpu() == labels).float().mean()
        return loss, {"train_acc": float(acc)}

    def evaluate(self, model, data, splits, batch_size: int = 1000):
        logits, _ = features(model, data, splits, batch_size)
        loss = F.cross_entropy(logits, data.labels).item()
        pred = logits.argmax(1)
        return {"score": float((pred == data.labels).float().mean()), "loss": loss, "predictions": pred}


def check_classifier(model: torch.nn.Module, splits: Splits, device=None) -> None:
    """``model`` takes the images of ``splits`` and gives one score per class: one forward pass of (at
    most) two training images, in eval mode without gradients, must return ``(2, len(splits.classes))``.
    ``ValueError`` says which part does not fit: the images (their channels and size against the
    model's first convolution) or the outputs (against the classes). Nothing of the model changes:
    each module's train/eval mode is restored and per-image caches (a module's ``cache``) are set
    aside meanwhile."""
    c, h, w = splits.shape
    n_classes = len(splits.classes)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    x = splits.norm(splits.train.images[:2], device)
    modes = [(m, m.training) for m in model.modules()]
    caches = [(m, m.cache) for m in model.modules() if getattr(m, "cache", None) is not None]
    model.eval()
    try:
        for m, _ in caches:
            m.cache = None
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, IndexError) as e:
        conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        hint = (f"; its first convolution takes {conv.in_channels} channel(s), the images have {c}: build the model "
                f"with in_channels={c}" if conv is not None and conv.in_channels != c else
                f": build the model for {c}-channel {h}x{w} images")
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"the model does not take the images of {splits.name!r} ({c} channel(s), {h}x{w}; a batch "
                         f"of shape {tuple(x.shape)} fails with {type(e).__name__}: {first}){hint}") from e
    finally:
        for m, cache in caches:
            m.cache = cache
        for m, mode in modes:
            m.training = mode
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (len(x), n_classes):
        raise ValueError(f"the model outputs {shape} for a batch of {len(x)} images of {splits.name!r}, but it has "
                         f"{n_classes} classes: a classifier must output ({len(x)}, {n_classes}), one score per class; "
                         f"build it with n_classes={n_classes}")


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What a run produced: the selected epoch, its validation and test metrics, the curves."""

    best_epoch: int
    val: dict
    test: dict
    final_val: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    run_dir: str | None = None
    run_id: str = ""

    def summary(self) -> dict:
        return {"best_epoch": self.best_epoch, "val_score": self.val.get("score"),
                "test_score": self.test.get("score"), "final_val_score": self.final_val.get("score"),
                "seconds": self.seconds, "images_per_second": self.images_per_second}


def _scalars(d: dict) -> dict:
    """The numbers of ``d`` as Python ints/floats (numpy float64 included)."""
    return {k: (v if isinstance(v, bool) else int(v) if isinstance(v, int) else float(v))
            for k, v in d.items() if isinstance(v, (int, float))}


def _plain(value):
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors, so that what a
    method returns can be stored in a checkpoint read with ``weights_only=True``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def steps_per_epoch(n_train: int, cfg: TrainConfig) -> int:
    """Optimiser steps in one epoch of ``n_train`` images: the batches :func:`iterate_batches` yields
    with ``drop_last=True`` (``n_train // batch_size``, or one smaller batch when ``n_train`` is below
    ``batch_size``), at most ``max_steps_per_epoch``. The LR schedule counts epochs in these steps, so
    a milestone at epoch ``m`` takes effect exactly at the first step of epoch ``m``."""
    steps = max(n_train // cfg.batch_size, 1 if n_train else 0)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def fit(model: torch.nn.Module, splits: Splits, cfg: TrainConfig, method=None,
        run_dir: str | Path | None = None, name: str = "run", extra_config: dict | None = None,
        progress: bool = True, callbacks=()) -> TrainResult:
    """Train ``model`` with ``method`` (default :class:`Classification`) on ``splits.train``.

    After each epoch the model is scored on ``splits.val``; the best state (ties: earliest) is
    kept and, at the end, evaluated once on ``splits.test``. With ``run_dir`` every epoch writes
    ``last.pt`` atomically (model, optimiser, schedule, RNG states, history, run id; tensors and
    plain values only, with a checksum: :func:`patchnb.checkpoint.save_atomic`), the one it replaces
    being kept as ``previous.pt``; a finished run writes ``result.pt``. A call with the same
    ``run_dir`` and config returns the stored result when the run had finished, else resumes exactly
    where the previous one stopped. A damaged (truncated, altered) or missing ``last.pt`` is reported
    with a warning naming it and the run resumes from ``previous.pt``, which is then kept until a
    good ``last.pt`` replaces the damaged one; a damaged ``result.pt`` is reported and recomputed
    from the last checkpoint. When checkpoints exist but none is good, :class:`CheckpointError` says
    so (a run never restarts silently). Checkpoint files are loaded with ``weights_only=True``: no
    code runs from them.

    Under ``torchrun --nproc_per_node P`` (or in a process group the caller made) the first call
    joins the processes (:func:`patchnb.distributed.setup`: gloo on CPUs; nccl on GPUs, each process
    on ``cuda:LOCAL_RANK``) and wraps the model in DistributedDataParallel. Every process draws the
    same shuffled global batch of ``batch_size`` images and trains on its ``rank::P`` share, so the
    averaged gradient is the single-process one and so is the run, up to floating-point rounding,
    when the method draws no randomness per image and the model has no BatchNorm: augmentation is
    drawn per share, and on CPUs BatchNorm normalises each share by its own statistics (there is no
    SyncBatchNorm on CPUs; on GPUs it is synchronised). The loss and the method's metrics of each
    epoch are averaged over the processes; every process scores the whole validation split and
    takes rank 0's score for model selection and early stopping; only rank 0 writes checkpoints,
    records and results, and every process resumes from rank 0's checkpoint.

    ``callbacks`` is a sequence of objects; each one that defines
    ``on_epoch_end(epoch, model, history_row, run_dir)`` has it called on rank 0 after every
    epoch's validation and checkpoint (so a callback may read or copy ``run_dir / "last.pt"``).
    ``model`` is the unwrapped model in training mode, ``history_row`` the epoch's row of the
    history (a dict: do not modify it) and ``run_dir`` a :class:`~pathlib.Path` or None. Epochs
    skipped by a resume are not replayed; a callback must not change the model's parameters or
    the random state if the run is to stay exactly resumable.
    """
    hooks = [cb.on_epoch_end for cb in (callbacks or ()) if callable(getattr(cb, "on_epoch_end", None))]
    method = method or Classification()
    device, rank, world = distributed.setup(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if isinstance(method, Classification) and len(splits.train):
        check_classifier(model, splits, device)  # before anything is seeded, trained or written
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world})")
    net = model
    if world > 1:  # torchrun: each process takes every world-th image of each global batch
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    run_dir = Path(run_dir) if run_dir else None
    config = {"train": _fingerprinted(cfg), "method": repr(method), **(extra_config or {})}
    fingerprint = hashlib.sha1(json.dumps(_plainjson(config), sort_keys=True).encode()).hexdigest()[:12]
    generator = seed_everything(cfg.seed)
    optimizer = make_optimizer(model.parameters(), cfg)
    per_epoch = steps_per_epoch(len(splits.train), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s / max(per_epoch, 1)))

    start_epoch, best_score, best_epoch, best_state, history, run_id, bad_epochs = 0, -math.inf, -1, None, [], None, 0
    train_seconds, images_seen = 0.0, 0
    last_good = False  # whether run_dir/last.pt is a good checkpoint (it may then become previous.pt)
    if run_dir is not None:
        if rank == 0:
            for fname in (RESULT, LAST, PREVIOUS):
                remove_temporaries(run_dir, fname)
        done, result_problem = load_result(run_dir / RESULT, fingerprint,
                                           lambda d: (d["model"], TrainResult(**d["result"])))
        if done is not None:
            model.load_state_dict(done[0])
            return done[1]
        ck, last_good = resume_point(run_dir, fingerprint, result_problem)
        if ck is not None:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"], generator)
            start_epoch, best_score, best_epoch = ck["epoch"] + 1, ck["best_score"], ck["best_epoch"]
            best_state, history, run_id, bad_epochs = ck["best_state"], ck["history"], ck["run_id"], ck["bad_epochs"]
            train_seconds, images_seen = ck["train_seconds"], ck["images_seen"]
            if cfg.patience is not None and bad_epochs >= cfg.patience:
                start_epoch = cfg.epochs  # the run had stopped early: only its result is left to compute
    if rank > 0:
        run_dir = None  # only the first process writes checkpoints and records
    tracker = Run(name, config, run_dir, run_id=run_id, wandb=False if rank > 0 else None)
    for row in history:
        tracker.history.append(row)

    bar = tqdm(range(start_epoch, cfg.epochs), desc=name, disable=not progress or rank > 0, initial=start_epoch,
               total=cfg.epochs)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        losses, extras = [], {}
        for step, (images, labels) in enumerate(iterate_batches(splits.train, cfg.batch_size, shuffle=True,
                                                                generator=generator, drop_last=True)):
            if step >= per_epoch:
                break
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    loss, metrics = method.step(net, images[rank::world], labels[rank::world], splits, generator)
            except NonFiniteError as e:  # a loss refused NaN/inf embeddings: the run diverged
                raise TrainingDiverged(f"{method.name}: {e} at epoch {epoch} step {step} of run {name!r}; lower the "
                                       f"learning rate (lr={cfg.lr}) or check the inputs") from e
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{method.name}: loss is {loss.item()} at epoch {epoch} step {step} of run "
                                       f"{name!r}; lower the learning rate (lr={cfg.lr}) or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            images_seen += len(images)  # global batch, all processes
            for k, v in metrics.items():
                extras.setdefault(k, []).append(v)
        train_seconds += time.perf_counter() - t0
        means = distributed.mean_over_processes(
            [float(np.mean(losses)) if losses else float("nan")] + [float(np.mean(v)) for v in extras.values()],
            device)
        val = _plain(method.evaluate(model, splits.val, splits))
        val["score"] = distributed.from_main_process([val["score"]], device)[0] if world > 1 else val["score"]
        row = {"epoch": epoch, "loss": means[0], "lr": optimizer.param_groups[0]["lr"], "val_score": val["score"],
               **{f"val_{k}": v for k, v in _scalars(val).items() if k != "score"},
               **dict(zip(extras, means[1:]))}
        if cfg.test_every_epoch:  # only for a labelled comparison with the paper's max-over-epochs protocol
            row["test_score_this_epoch"] = _plain(method.evaluate(model, splits.test, splits))["score"]
        history.append(row)
        tracker.log(row, step=epoch)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{val['score']:.4f}")
        if val["score"] > best_score:
            best_score, best_epoch, bad_epochs = val["score"], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stop = cfg.patience is not None and bad_epochs >= cfg.patience
        if run_dir is not None:  # the newest good checkpoint becomes previous.pt, never a damaged one
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": rng_state(generator), "epoch": epoch,
                         "best_score": best_score, "best_epoch": best_epoch, "best_state": best_state,
                         "history": history, "run_id": tracker.id, "bad_epochs": bad_epochs,
                         "train_seconds": train_seconds, "images_seen": images_seen,
                         "fingerprint": fingerprint},
                        run_dir / LAST, previous=run_dir / PREVIOUS if last_good else None)
            last_good = True
        if rank == 0:
            for hook in hooks:
                hook(epoch, model, row, run_dir)
        if stop:
            break

    final_val = _scalars(method.evaluate(model, splits.val, splits)) if history else {}
    if best_state is not None:
        model.load_state_dict(best_state)
    val = _plain(method.evaluate(model, splits.val, splits))
    test = _plain(method.evaluate(model, splits.test, splits))  # the one test evaluation of this run
    result = TrainResult(best_epoch, _scalars(val), test, final_val, history, train_seconds,
                         images_seen / max(train_seconds, 1e-9), str(run_dir) if run_dir else None, tracker.id)
    tracker.finish(**result.summary())
    if run_dir is not None:
        save_atomic({"model": model.state_dict(), "result": asdict(result), "fingerprint": fingerprint},
                    run_dir / RESULT)
    return result


def _plainjson(x):
    if isinstance(x, dict):
        return {str(k): _plainjson(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plainjson(v) for v in x]
    return x if isinstance(x, (int, float, str, bool)) or x is None else repr(x)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) as Python floats."""
    a = np.asarray(list(values), dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0

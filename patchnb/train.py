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
import os
import pickle
import random
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageData, Splits, check_choice, iterate_batches, random_crop_flip
from .track import Run

OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
SCHEDULES = ("constant", "multistep", "cosine", "exponential", "staircase")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another configuration."""


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

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "eval_batch_size", "step_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        self.milestones = tuple(int(m) for m in self.milestones)

    def fingerprint(self) -> str:
        """Hash of everything that changes the result (not the device)."""
        d = asdict(self)
        d.pop("device")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; otherwise the named device (checked to exist)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but no CUDA GPU is available; use device='cpu'")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_factor(cfg: TrainConfig, epoch: float) -> float:
    """Multiplier of the base LR at (fractional) ``epoch``: warm-up, then the schedule."""
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


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
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
    """Supervised cross-entropy with the paper's augmentation (random crop after zero-padding by
    ``pad``, horizontal flip); scored by accuracy."""

    pad: int = 4
    flip: bool = True
    name: str = "classification"

    def step(self, model, images, labels, splits, generator):
        device = next(model.parameters()).device
        x = splits.norm(images, device)
        if self.pad or self.flip:
            x = random_crop_flip(x, self.pad, self.flip, generator)
        logits = model(x)
        loss = F.cross_entropy(logits, labels.to(device))
        acc = (logits.argmax(1).cpu() == labels).float().mean()
        return loss, {"train_acc": float(acc)}

    def evaluate(self, model, data, splits, batch_size: int = 1000):
        logits, _ = features(model, data, splits, batch_size)
        loss = F.cross_entropy(logits, data.labels).item()
        pred = logits.argmax(1)
        return {"score": float((pred == data.labels).float().mean()), "loss": loss, "predictions": pred}


# ----------------------------------------------------------------------------- checkpoints

# A file written by save_atomic is an ordinary torch.save zip archive whose zip comment (the last bytes
# of the file, ignored by every zip reader) is CHECKSUM_TAG + the SHA-256 of all the bytes before it.
CHECKSUM_TAG = b"patchnb-sha256:"
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory signature; the record is 22 bytes + the comment
_COMMENT_LEN = len(CHECKSUM_TAG) + 64
_CHUNK = 1 << 22


def _sha256(f, nbytes: int, tail: bytes = b"") -> str:
    """SHA-256 of the first ``nbytes`` of the open file ``f``, then ``tail``."""
    h = hashlib.sha256()
    f.seek(0)
    left = nbytes
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)
    h.update(tail)
    return h.hexdigest()


def _write_checksum(f) -> None:
    """Append the checksum comment to the torch.save archive just written to ``f`` (opened w+b)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(size - 22)
    eocd = f.read(22)
    if size < 22 or eocd[:4] != _EOCD or eocd[20:22] != b"\0\0":
        raise RuntimeError("torch.save did not write a zip archive without a comment; cannot add a checksum")
    length = _COMMENT_LEN.to_bytes(2, "little")
    digest = _sha256(f, size - 2, length)
    f.seek(size - 2)
    f.write(length + CHECKSUM_TAG + digest.encode())


def checksum_status(path: str | Path) -> str:
    """``"ok"`` when ``path`` carries the checksum :func:`save_atomic` writes and its bytes match it,
    ``"mismatch"`` when they do not (a bit flip), ``"absent"`` when there is none (a truncated file,
    or one written by other code)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < 22 + _COMMENT_LEN:
            return "absent"
        f.seek(size - 22 - _COMMENT_LEN)
        tail = f.read()
        eocd, comment = tail[:22], tail[22:]
        if eocd[:4] != _EOCD or not comment.startswith(CHECKSUM_TAG):
            return "absent"
        if int.from_bytes(eocd[20:22], "little") != _COMMENT_LEN:
            return "mismatch"
        return "ok" if _sha256(f, size - _COMMENT_LEN) == comment[len(CHECKSUM_TAG):].decode("ascii", "replace") \
            else "mismatch"


def _temporary(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def save_atomic(obj, path: str | Path, previous: str | Path | None = None) -> None:
    """torch.save ``obj`` with a checksum (:func:`checksum_status`) to a temporary file of its own in
    ``path``'s folder, fsync, then rename it over ``path``: a crash never leaves a half-written file
    in place of a good one, and concurrent writers never share a temporary file.

    ``obj`` must hold only tensors and plain containers (it is read back with ``weights_only=True``).
    With ``previous``, an existing ``path`` is first renamed to ``previous`` (the two newest files
    are kept). The file is created readable by its owner only (``mkstemp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "w+b") as f:
            torch.save(obj, f)
            _write_checksum(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(folder: str | Path, name: str) -> None:
    """Delete the temporary files an interrupted :func:`save_atomic` of ``folder/name`` left behind."""
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location="cpu", require_checksum: bool = False):
    """Load a file written by :func:`save_atomic` (or any ``torch.save`` file of tensors and plain
    containers), refusing to run code from it.

    The file is read with ``torch.load(weights_only=True)``: a pickle that names any other object
    (one whose ``__reduce__`` would run code, a pickled module, numpy objects) is refused with a
    :class:`CheckpointError` before anything of it is built. A checksum written by :func:`save_atomic`
    is verified; with ``require_checksum`` (patchnb's own checkpoints) a file without one is refused
    too. Any unreadable, truncated or altered file raises :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    status = checksum_status(path)
    if status == "mismatch":
        raise CheckpointError(f"checkpoint {path} is corrupt: its bytes do not match the checksum written with it "
                              f"(altered on disk, e.g. a bit flip)")
    if status == "absent" and require_checksum:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: it lacks the checksum patchnb writes at "
                              f"the end of every checkpoint (cut short, or not written by patchnb.train.save_atomic)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            first = str(e).strip().splitlines()
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain containers; it was not loaded, "
                f"since building them could run code from the file ({first[1] if len(first) > 1 else first[0]})"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (UnpicklingError: {e})") from e
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}); delete it "
                              f"to start the run again") from e


def _rng_state(generator: torch.Generator) -> dict:
    """Every random state a run draws from, as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "generator": generator.get_state(),
             "numpy": {"bit_generator": str(np_state["bit_generator"]),
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    random.setstate(state["python"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def _distributed() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside ``torch.distributed``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


LAST, PREVIOUS, RESULT = "last.pt", "previous.pt", "result.pt"
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "best_score", "best_epoch", "best_state",
                    "history", "run_id", "bad_epochs", "train_seconds", "images_seen", "fingerprint")


def _load_result(path: Path, fingerprint: str) -> tuple[tuple[dict, TrainResult] | None, str | None]:
    """``((model state, result), None)`` from a finished run's ``result.pt`` of this configuration;
    ``(None, why)`` when it is damaged (reported: the result is recomputed from ``last.pt``);
    ``(None, None)`` when there is none or it belongs to another configuration."""
    if not path.is_file():
        return None, None
    try:
        done = load_checkpoint(path, require_checksum=True)
        if not isinstance(done, dict) or done.get("fingerprint") != fingerprint:
            return None, None
        return (done["model"], TrainResult(**done["result"])), None
    except (CheckpointError, KeyError, TypeError) as e:
        why = str(e) if isinstance(e, CheckpointError) else f"{path} does not hold a run result ({e!r})"
        warnings.warn(f"{why}; the result is recomputed from the last checkpoint", stacklevel=3)
        return None, why


def _resume_point(run_dir: Path, fingerprint: str, result_problem: str | None = None) -> tuple[dict | None, bool]:
    """The newest good checkpoint of ``run_dir`` (``last.pt``, else ``previous.pt``) and whether it is
    ``last.pt``; ``(None, False)`` for a new run. A damaged or missing ``last.pt`` is reported with a
    warning naming it; when there are checkpoints but none is good, :class:`CheckpointError`."""
    problems = [result_problem] if result_problem else []
    if not (run_dir / LAST).exists() and (run_dir / PREVIOUS).exists():
        problems.append(f"{run_dir / LAST} is missing")
    for fname in (LAST, PREVIOUS):
        path = run_dir / fname
        if not path.exists():
            continue
        try:
            ck = load_checkpoint(path, require_checksum=True)
            missing = [k for k in _CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else ["all"]
            if missing:
                raise CheckpointError(f"{path} is not a training checkpoint of patchnb.train.fit (no {missing[0]!r})")
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if ck["fingerprint"] != fingerprint:
            raise CheckpointError(f"{path} was written by another configuration; use another run_dir or delete "
                                  f"{run_dir / LAST} and {run_dir / PREVIOUS} to start afresh")
        if problems:
            warnings.warn(f"{'; '.join(problems)}; resuming from {path} (after epoch {ck['epoch']})", stacklevel=3)
        return ck, fname == LAST
    if problems:
        raise CheckpointError(f"no good checkpoint to resume from in {run_dir}: {'; '.join(problems)}. Delete "
                              f"{run_dir / LAST} and {run_dir / PREVIOUS} to start the run again")
    return None, False


def fit(model: torch.nn.Module, splits: Splits, cfg: TrainConfig, method=None,
        run_dir: str | Path | None = None, name: str = "run", extra_config: dict | None = None,
        progress: bool = True, callbacks=()) -> TrainResult:
    """Train ``model`` with ``method`` (default :class:`Classification`) on ``splits.train``.

    After each epoch the model is scored on ``splits.val``; the best state (ties: earliest) is
    kept and, at the end, evaluated once on ``splits.test``. With ``run_dir`` every epoch writes
    ``last.pt`` atomically (model, optimiser, schedule, RNG states, history, run id; tensors and
    plain values only, with a checksum: :func:`save_atomic`), the one it replaces being kept as
    ``previous.pt``; a finished run writes ``result.pt``. A call with the same ``run_dir`` and config
    returns the stored result when the run had finished, else resumes exactly where the previous
    one stopped. A damaged (truncated, altered) or missing ``last.pt`` is reported with a warning
    naming it and the run resumes from ``previous.pt``, which is then kept until a good ``last.pt``
    replaces the damaged one; a damaged ``result.pt`` is reported and recomputed from the last
    checkpoint. When checkpoints exist but none is good, :class:`CheckpointError` says so (a run
    never restarts silently). Checkpoint files are loaded with ``weights_only=True``: no code runs
    from them.

    Under ``torchrun`` (``torch.distributed`` initialised) the model is wrapped in
    DistributedDataParallel (BatchNorm synchronised on GPUs), every process draws the same global
    batch and trains on its ``rank::world`` share, so gradients equal the single-process ones;
    only rank 0 writes checkpoints and records.

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
    device = resolve_device(cfg.device)
    model.to(device)
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world})")
    net = model
    if world > 1:  # torchrun: each process takes every world-th image of each global batch
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    run_dir = Path(run_dir) if run_dir else None
    config = {"train": asdict(cfg), "method": repr(method), **(extra_config or {})}
    fingerprint = hashlib.sha1(json.dumps(_plainjson(config), sort_keys=True).encode()).hexdigest()[:12]
    generator = seed_everything(cfg.seed)
    optimizer = make_optimizer(model.parameters(), cfg)
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s / steps_per_epoch))

    start_epoch, best_score, best_epoch, best_state, history, run_id, bad_epochs = 0, -math.inf, -1, None, [], None, 0
    train_seconds, images_seen = 0.0, 0
    last_good = False  # whether run_dir/last.pt is a good checkpoint (it may then become previous.pt)
    if run_dir is not None:
        if rank == 0:
            for fname in (RESULT, LAST, PREVIOUS):
                remove_temporaries(run_dir, fname)
        done, result_problem = _load_result(run_dir / RESULT, fingerprint)
        if done is not None:
            model.load_state_dict(done[0])
            return done[1]
        ck, last_good = _resume_point(run_dir, fingerprint, result_problem)
        if ck is not None:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            _set_rng_state(ck["rng"], generator)
            start_epoch, best_score, best_epoch = ck["epoch"] + 1, ck["best_score"], ck["best_epoch"]
            best_state, history, run_id, bad_epochs = ck["best_state"], ck["history"], ck["run_id"], ck["bad_epochs"]
            train_seconds, images_seen = ck["train_seconds"], ck["images_seen"]
            if cfg.patience is not None and bad_epochs >= cfg.patience:
                start_epoch = cfg.epochs  # the run had stopped early: only its result is left to compute
    if rank > 0:
        run_dir = None  # only the first process writes checkpoints and records
    tracker = Run(name, config, run_dir, run_id=run_id)
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
            if step >= steps_per_epoch:
                break
            loss, metrics = method.step(net, images[rank::world], labels[rank::world], splits, generator)
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
        val = _plain(method.evaluate(model, splits.val, splits))
        row = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": optimizer.param_groups[0]["lr"], "val_score": val["score"],
               **{f"val_{k}": v for k, v in _scalars(val).items() if k != "score"},
               **{k: float(np.mean(v)) for k, v in extras.items()}}
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
                         "scheduler": scheduler.state_dict(), "rng": _rng_state(generator), "epoch": epoch,
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

"""Checkpoint files of :func:`patchnb.train.fit` and of the run cache: atomic, checksummed, loaded without code.

* :func:`save_atomic` writes a ``torch.save`` archive with a SHA-256 checksum in its zip comment to a
  temporary file of its own, fsyncs it and renames it into place (optionally keeping the file it
  replaces as ``previous``): a crash never leaves a half-written file in place of a good one.
* :func:`load_checkpoint` reads one with ``torch.load(weights_only=True)`` (tensors and plain
  containers only: no code runs from a checkpoint) after checking the checksum.
* :func:`resume_point` picks the newest good checkpoint of a run folder (``last.pt``, else
  ``previous.pt``), :func:`load_result` a finished run's ``result.pt``; :func:`rng_state` /
  :func:`set_rng_state` capture and restore every random generator, so a resumed run continues
  bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another configuration."""


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
                              f"the end of every checkpoint (cut short, or not written by "
                              f"patchnb.checkpoint.save_atomic)")
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


def rng_state(generator: torch.Generator) -> dict:
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


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    random.setstate(state["python"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


LAST, PREVIOUS, RESULT = "last.pt", "previous.pt", "result.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "best_score", "best_epoch", "best_state",
                    "history", "run_id", "bad_epochs", "train_seconds", "images_seen", "fingerprint")


def load_result(path: Path, fingerprint: str, build=None) -> tuple[object | None, str | None]:
    """``(result, None)`` from a finished run's ``result.pt`` of this configuration: the stored dict
    (``"model"`` state and ``"result"`` fields, as :func:`patchnb.train.fit` writes them), or what
    ``build(stored dict)`` makes of it; ``(None, why)`` when it is damaged or ``build`` rejects it
    with a ``KeyError``/``TypeError`` (reported: the result is recomputed from ``last.pt``);
    ``(None, None)`` when there is none or it belongs to another configuration."""
    if not path.is_file():
        return None, None
    try:
        done = load_checkpoint(path, require_checksum=True)
        if not isinstance(done, dict) or done.get("fingerprint") != fingerprint:
            return None, None
        if not isinstance(done.get("model"), dict) or not isinstance(done.get("result"), dict):
            raise KeyError("model" if not isinstance(done.get("model"), dict) else "result")
        return (build(done) if build is not None else done), None
    except (CheckpointError, KeyError, TypeError) as e:
        why = str(e) if isinstance(e, CheckpointError) else f"{path} does not hold a run result ({e!r})"
        warnings.warn(f"{why}; the result is recomputed from the last checkpoint", stacklevel=3)
        return None, why


def resume_point(run_dir: Path, fingerprint: str, result_problem: str | None = None) -> tuple[dict | None, bool]:
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
            missing = [k for k in CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else ["all"]
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

"""The run cache: "load if cached, else compute" for every expensive run of the book.

A run is keyed by its name, its configuration and the version of the code it can execute: the
import closure of the module that defines the function computing it (:func:`patchnb.track.code_version`),
so an edit to a recipe re-runs that recipe's runs and nothing else. A cached value holds only tensors
and plain containers (dict, list, tuple, str, int, float, bool, None) and is read back with
``torch.load(weights_only=True)``: no code runs from a cache file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from .data import cache_dir
from .track import code_version
from .train import CheckpointError, load_checkpoint, save_atomic

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(value, where: str = "value") -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that is not a tensor or plain container
    (what a cached result may hold, so that it loads with ``weights_only=True``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; cached results use str/int keys")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, PLAIN):
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a cached result holds only "
                        f"tensors and plain containers (convert arrays with torch.as_tensor or .tolist(), "
                        f"dataclasses with dataclasses.asdict)")


def run_key(name: str, config: dict, modules=None) -> str:
    """Folder name of a cached run: its name, config and the version of the patchnb code it can use:
    ``modules`` and what they import, or, without ``modules``, every patchnb module loaded in this
    process."""
    if modules is None:
        modules = sorted(m for m in sys.modules if m == "patchnb" or m.startswith("patchnb."))
    blob = json.dumps({"name": name, "config": config, "code": code_version(modules).split("+")[0]},
                      sort_keys=True, default=repr)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def runs_dir() -> Path:
    path = cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load(path: Path):
    """The cached value at ``path`` (``weights_only`` load, checksum verified: :func:`load_checkpoint`),
    or ``_MISSING`` after a warning naming the file when it is damaged (the run is then recomputed)."""
    try:
        return load_checkpoint(path, require_checksum=True)["value"]
    except (CheckpointError, KeyError, TypeError) as e:
        warnings.warn(f"cached result {path} is unreadable ({e}); the run is recomputed", stacklevel=3)
        return _MISSING


_MISSING = object()


def cached(name: str, config: dict, fn, refresh: bool = False):
    """Return ``fn(run_dir)``'s result, computed once per (name, config, code version).

    The key covers the code ``fn`` can run: its module's import closure when ``fn`` is defined in
    patchnb, else every loaded patchnb module. ``fn`` receives its own run folder (for checkpoints,
    so an interrupted run resumes) and returns tensors and plain containers (:func:`check_plain`);
    the value is stored atomically as ``cached.pt`` with the config and its wall-clock.
    """
    home = getattr(fn, "__module__", None) or ""
    # a function defined in patchnb is keyed by its own module's import closure, so a run is shared by
    # every notebook that asks for it, whatever else each notebook imported
    modules = [home] if home == "patchnb" or home.startswith("patchnb.") else None
    folder = runs_dir() / run_key(name, config, modules)
    path = folder / "cached.pt"
    if path.is_file() and not refresh:
        value = _load(path)
        if value is not _MISSING:
            return value
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    value = fn(folder)
    check_plain(value, f"the result of run {name!r}")
    record = {"value": value, "config": json.loads(json.dumps(config, default=repr)),
              "seconds": time.perf_counter() - t0}
    save_atomic(record, path)
    return value

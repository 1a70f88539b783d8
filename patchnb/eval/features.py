"""Frozen features of an encoder, a disk cache for them, and THE loader of backbone weights.

* :func:`features` runs an encoder (an ``nn.Module`` mapping normalised images to features) over an
  :class:`~patchnb.data.ImageData` in batches, in eval mode and without gradients: the one forward pass
  over a data set, :func:`patchnb.train.features`, re-exported here.
* :func:`cached_features` stores those features on disk under a key built from a checkpoint path (its
  content hash) or a name, plus the data and normalisation, so kNN / linear probes can be rerun offline
  on a saved checkpoint without the encoder ever running again.
* :func:`load_backbone`: the one documented loader of backbone weights saved apart from heads (by
  :func:`patchnb.ssl.save_backbone`, re-exported here, or by third-party code); see its docstring for the
  accepted formats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, save_atomic
from ..data import ImageData, Splits, cache_dir
from ..distributed import resolve_device
from ..ssl.checkpoints import save_backbone  # noqa: F401  (the writer; patchnb.eval re-exports it)
from ..train import features, unwrap

#: keys under which a checkpoint dict may hold the weights, in the order they are looked for
STATE_KEYS = ("backbone", "state_dict", "model", "encoder")


class BackboneError(CheckpointError, ValueError):
    """Backbone weights that cannot be read or do not fit the model they are loaded into."""


def _device_of(module: nn.Module, device) -> torch.device:
    if device is not None:
        return resolve_device(str(device)) if not isinstance(device, torch.device) else device
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def feature_key(encoder_path_or_key: str | Path, data: ImageData, splits: Splits) -> str:
    """Cache key: the checkpoint's content hash (or the given name), the images, labels and normalisation."""
    p = Path(encoder_path_or_key)
    source = "file:" + _file_hash(p) if p.is_file() else "key:" + str(encoder_path_or_key)
    h = hashlib.sha1(source.encode())
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    h.update(json.dumps([list(splits.norm.mean), list(splits.norm.std)]).encode())
    return h.hexdigest()[:20]


def cached_features(encoder_path_or_key: str | Path, encoder: nn.Module | Callable[[], nn.Module] | None,
                    data: ImageData, splits: Splits, cache: str | Path | None = None, batch_size: int = 512,
                    device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`features`, stored in ``cache`` (default ``<patchnb cache>/features``) as ``<key>.pt``.

    ``encoder_path_or_key`` is a checkpoint file (the key then hashes its content, and on a cache miss
    its weights are loaded into ``encoder`` with :func:`load_backbone`) or any string naming the
    encoder (the caller then vouches that the name changes when the weights do). ``encoder`` may be
    a module, a zero-argument builder of one, or ``None`` when the features are known to be cached
    (a miss then raises). The file holds ``{"features", "labels", "source"}`` and is written
    atomically, so a killed run never leaves a half-written cache entry.
    """
    folder = Path(cache) if cache is not None else cache_dir() / "features"
    path = folder / f"{feature_key(encoder_path_or_key, data, splits)}.pt"
    if path.is_file():
        try:
            d = load_checkpoint(path)
            return d["features"], d["labels"]
        except (CheckpointError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed
    if encoder is None:
        raise ValueError(f"no cached features for {encoder_path_or_key!r} at {path} and encoder=None; pass the "
                         f"encoder (or a builder of it) to compute them")
    if not isinstance(encoder, nn.Module):
        encoder = encoder()
    if Path(encoder_path_or_key).is_file():
        load_backbone(encoder_path_or_key, encoder)
    feats, labels = features(encoder, data, splits, batch_size, device)
    save_atomic({"features": feats, "labels": labels, "source": str(encoder_path_or_key)}, path)
    return feats, labels


# ----------------------------------------------------------------------------- backbone weights


def _is_state_dict(d) -> bool:
    return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(k, str) and torch.is_tensor(v)
                                                         for k, v in d.items())


def _extract_state(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in STATE_KEYS:
            if key in obj:
                value = obj[key]
                if isinstance(value, nn.Module):
                    value = value.state_dict()
                if _is_state_dict(value):
                    return dict(value)
    keys = list(obj.keys())[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise BackboneError(f"{path} holds no weights: expected a state_dict or a dict with one of the keys "
                        f"{STATE_KEYS} holding one, found {keys}")


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _candidates(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The state as stored (minus ``module.``), then its ``backbone.`` part with the prefix stripped."""
    while state and all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    state = _strip(state, "module.")
    out = [state]
    sub = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if sub:
        out.append(sub)
    return out


def load_backbone(path: str | Path, model: nn.Module | None = None) -> nn.Module | dict[str, torch.Tensor]:
    """Load backbone weights saved apart from heads (the ONE loader of the project).

    Accepted files (``torch.save``): a plain ``state_dict``; or a checkpoint dict holding one under
    ``"backbone"``, ``"state_dict"``, ``"model"`` or ``"encoder"`` (looked up in that order; files
    are read with ``weights_only=True``, so a pickled module or any other object is refused and no
    code runs from the file), which covers :func:`save_backbone`, :func:`patchnb.train.fit`'s
    ``last.pt`` / ``result.pt`` and most third-party checkpoints. Prefixes are stripped: ``module.``
    (DataParallel/DDP) always; ``backbone.`` when the backbone part is wanted, in which case the
    other entries (projection head, momentum encoder, queue, classifier) are dropped.

    Without ``model`` the backbone's ``state_dict`` is returned (the ``backbone.`` part if there is
    one, else everything). With ``model`` the weights are loaded into it and it is returned: the
    first candidate (as stored, then the ``backbone.`` part) whose keys contain all of the model's
    keys is used, extra entries (heads) are ignored, and shapes must match.

    Raises :class:`BackboneError` (a :class:`patchnb.train.CheckpointError`) naming the file for a
    missing, corrupt or truncated file, a file without weights, missing keys or mismatched shapes.
    """
    path = Path(path)
    try:
        obj = load_checkpoint(path)
    except CheckpointError as e:
        cause = e.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
        raise BackboneError(f"cannot load backbone weights from {path}: the file is missing, corrupt or truncated "
                            f"({why})") from e
    candidates = _candidates(_extract_state(obj, path))
    if model is None:
        return candidates[-1]
    want = unwrap(model).state_dict()
    for state in reversed(candidates):  # the backbone part first: it is what a backbone model needs
        if set(want) <= set(state):
            bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in want.items()
                   if tuple(state[k].shape) != tuple(v.shape)]
            if bad:
                raise BackboneError(f"{path}: {len(bad)} tensors have the wrong shape for this model (was it built "
                                    f"with other parameters?): " + "; ".join(bad[:5]))
            unwrap(model).load_state_dict({k: state[k] for k in want}, strict=True)
            return model
    best = max(candidates, key=lambda s: len(set(want) & set(s)))
    missing = sorted(set(want) - set(best))
    unexpected = sorted(set(best) - set(want))
    raise BackboneError(f"{path} does not fit this model: {len(missing)} of its {len(want)} keys are missing "
                        f"(e.g. {missing[:5]}); the file has {len(unexpected)} other keys (e.g. {unexpected[:5]})")

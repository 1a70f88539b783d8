"""Validation of parameters at the API boundary: every error names the parameter, its value and
what is allowed, so a bad input fails where it was given, never deep inside torch or numpy."""

from __future__ import annotations

import math
import numbers


def check_choice(name: str, value, allowed) -> None:
    """Raise ``ValueError`` naming the parameter and its allowed values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values: {', '.join(map(repr, allowed))}")


def check_int(name: str, value, minimum: int | None = None, allow_none: bool = False) -> None:
    """``value`` is an int (not a bool, not a float such as 2.5), at least ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{' or None' if allow_none else ''}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                strict_min: bool = False) -> None:
    """``value`` is a finite real number in the given range (``strict_min``: above ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")


def check_seeds(name: str, seeds) -> tuple[int, ...]:
    """A non-empty list/tuple of distinct integers, returned as a tuple."""
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"{name} must be a non-empty list of integers, got {seeds!r}")
    for s in seeds:
        check_int(name, s)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must not repeat a seed, got {list(seeds)}")
    return tuple(int(s) for s in seeds)


class NonFiniteError(ValueError):
    """A tensor given to a function holds NaN or infinity (raised by :func:`check_finite`; the training loop
    turns one raised inside a step into its ``TrainingDiverged``, naming the method and step)."""


def check_finite(name: str, tensor) -> None:
    """``tensor`` holds no NaN or infinity (counted in the message, a :class:`NonFiniteError`); non-floating
    tensors pass."""
    import torch

    t = torch.as_tensor(tensor)
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_nan, n_inf = int(torch.isnan(t).sum()), int((~finite).sum()) - int(torch.isnan(t).sum())
        what = " and ".join(w for w, n in ((f"{n_nan} NaN", n_nan), (f"{n_inf} inf", n_inf)) if n)
        raise NonFiniteError(f"{name} contains {what} of its {t.numel()} values (shape {tuple(t.shape)}); "
                             f"it must be finite")


def check_tensor(name: str, value, ndim: int | None = None, dtypes=None, finite: bool = False):
    """``value`` is a torch tensor (of ``ndim`` dimensions and one of ``dtypes`` when given; finite when
    ``finite``); returns it."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {value.dtype}; allowed: {', '.join(map(str, dtypes))}")
    if finite:
        check_finite(name, value)
    return value


def check_labels(name: str, labels, n_classes: int | None = None):
    """Integer class labels in ``0 .. n_classes - 1`` (float labels would be truncated, negative or too
    large ones dropped or out of bounds); returns them as a long tensor."""
    import torch

    t = torch.as_tensor(labels)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class labels, got a {t.dtype} tensor (float labels would be "
                         f"truncated); cast them with .long() if they are whole numbers")
    t = t.long()
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{name} must be >= 0, got a label {lo}")
        if n_classes is not None and hi >= n_classes:
            raise ValueError(f"{name} holds a label {hi} but n_classes={n_classes}; allowed: 0..{n_classes - 1}")
    return t


def check_device(name: str, device) -> None:
    """``"auto"``, a ``torch.device`` or a device string torch understands (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``); whether that device exists is checked where it is used (a configuration may be written on
    another machine than the one that runs it)."""
    import torch

    if isinstance(device, torch.device) or device == "auto":
        return
    if not isinstance(device, str):
        raise ValueError(f"{name} must be a device string ('auto', 'cpu', 'cuda', 'cuda:0', ...), got {device!r}")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={device!r} is not a device; allowed values: 'auto', 'cpu', 'cuda', 'cuda:<index>', "
                         f"'mps'") from None

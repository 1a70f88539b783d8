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

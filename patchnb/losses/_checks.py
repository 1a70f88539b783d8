"""Input checks shared by the SSL losses: every bad input raises a ``ValueError`` that names the
parameter and what is allowed."""

from __future__ import annotations

import math

import torch

from ..checks import check_finite

__all__ = ["check_embeddings", "check_finite", "check_positive", "check_same_shape"]


def check_positive(name: str, value: float) -> None:
    """A finite number > 0 (an infinite temperature flattens every logit to 0: a constant loss)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_embeddings(name: str, z: torch.Tensor, min_batch: int = 2) -> None:
    """``z`` must be a finite floating (B, D) tensor with B >= ``min_batch`` (a NaN would make the loss NaN)."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{name} must be a 2-D (batch, dim) tensor, got {shape}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if z.shape[0] < min_batch:
        raise ValueError(f"{name} has a batch of {z.shape[0]}; this loss needs a batch of at least {min_batch} "
                         f"(a batch of one has no negatives / pairs)")
    check_finite(name, z)


def check_same_shape(name1: str, a: torch.Tensor, name2: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name1} and {name2} must have the same shape (two views of the same batch), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")

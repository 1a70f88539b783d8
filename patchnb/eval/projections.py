"""Saved projections (patchwork's ``save_projections``, jg10545/patchwork): embeddings with their labels
and split as a table, written as parquet (when pyarrow or fastparquet is installed) or CSV."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch


def has_parquet() -> bool:
    """Whether pandas can write parquet here (pyarrow or fastparquet installed)."""
    for mod in ("pyarrow", "fastparquet"):
        try:
            __import__(mod)
            return True
        except ImportError:
            pass
    return False


def projections_frame(feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                      classes: Sequence[str] | None = None):
    """A pandas DataFrame: ``split``, ``label``, ``class`` and one column ``z0 ... z{D-1}`` per feature."""
    import pandas as pd  # a heavy import, needed only when a table is written or read

    feats = torch.as_tensor(feats).float()
    labels = torch.as_tensor(labels).long()
    if feats.ndim != 2 or len(feats) != len(labels):
        raise ValueError(f"feats must be (N, D) and labels (N,), got {tuple(feats.shape)} and {tuple(labels.shape)}")
    split_col = [split] * len(labels) if isinstance(split, str) else list(split)
    if len(split_col) != len(labels):
        raise ValueError(f"split must be a string or one entry per row, got {len(split_col)} for {len(labels)} rows")
    df = pd.DataFrame(feats.numpy(), columns=[f"z{i}" for i in range(feats.shape[1])])
    df.insert(0, "split", split_col)
    df.insert(1, "label", labels.numpy())
    if classes is not None:
        df.insert(2, "class", [classes[i] for i in labels.tolist()])
    return df


def save_projections(path: str | Path, feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                     classes: Sequence[str] | None = None) -> Path:
    """Write embeddings + labels + split (patchwork's ``save_projections``) to ``path``: parquet when the
    suffix is ``.parquet`` and pyarrow/fastparquet is installed, else CSV (a ``.parquet`` request falls back
    to ``.csv`` with a warning). Returns the path written; read it back with :func:`load_projections`
    (``pandas.read_csv`` / ``pandas.read_parquet``)."""
    path = Path(path)
    df = projections_frame(feats, labels, split, classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        if has_parquet():
            df.to_parquet(path, index=False)
            return path
        warnings.warn(f"pyarrow/fastparquet is not installed: writing {path.with_suffix('.csv')} instead of {path}",
                      stacklevel=2)
        path = path.with_suffix(".csv")
    df.to_csv(path, index=False)
    return path


def load_projections(path: str | Path):
    """Read a file written by :func:`save_projections` into a DataFrame."""
    import pandas as pd  # a heavy import, needed only when a table is written or read

    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

"""What the patch chapter's pages share that is page code (Brutzkus et al., ICML 2022): a variant's table row
(:func:`summarise`), the table (:func:`table`) and the page's data and budget text (:func:`page_text`).

Kept out of :mod:`.network` (the runs module, whose import closure keys every cached run), so that a change of
wording or formatting re-trains nothing (``tests/test_cache_boundary.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...data import Splits
from ..verdict import mean_sd
from .network import ChapterConfig


def page_text(cfg: ChapterConfig, splits: Splits) -> dict[str, str]:
    """``data_desc`` (the data, cited by the book's introduction) and ``budget_desc`` (data and budget
    in one sentence) of a page."""
    data = f"{splits.describe()}; scale={cfg.scale}"
    decay = "cosine decay to 0" if cfg.schedule == "cosine" else f"10x drops at epochs {list(cfg.milestones)}"
    budget = (f"{data}; {cfg.epochs} epoch(s), batch {cfg.batch_size}, SGD lr {cfg.lr:g} momentum "
              f"{cfg.momentum:g} (unless stated), {decay}, N={cfg.n_centroids}, k={cfg.k}, {cfg.n_patches:,} "
              f"patches for k-means, augmentation {'on' if cfg.augment else 'off'}, seeds {list(cfg.seeds)}")
    return {"data_desc": data, "budget_desc": budget}


def summarise(label: str, outs: list[dict], depth: int = 1) -> dict:
    """A table row for one variant: test accuracy of the validation-selected model (mean ± one SD over the
    runs in ``outs``, :func:`~patchnb.experiments.verdict.mean_sd`, at layer ``depth`` of a layerwise run)
    beside the final-epoch and selected validation accuracy, seeds and wall-clock. Keys starting with ``_``
    hold the raw values (``_accs`` per seed, ``_mean``, ``_std``, ``_val_mean``: the mean selected validation
    accuracy, what a page selects on, ``_seconds``) and are hidden by :func:`table`."""
    rows = [o["results"][depth - 1] for o in outs]
    t, v, f = ([float(r[key]) for r in rows] for key in ("test_acc", "val_acc", "final_val_acc"))
    mean = float(np.mean(t))
    std = float(np.std(t, ddof=1)) if len(t) > 1 else 0.0
    seconds = float(np.mean([o["seconds"] for o in outs]))
    return {"variant": label, "test acc. (%)": mean_sd(t), "final-epoch val acc. (%)": mean_sd(f),
            "selected val acc. (%)": mean_sd(v), "seeds": ", ".join(str(o["config"]["seed"]) for o in outs),
            "wall-clock / run (s)": f"{seconds:.0f}", "_accs": t, "_mean": mean, "_std": std,
            "_val_mean": float(np.mean(v)), "_seconds": seconds}


def table(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`summarise` as a DataFrame indexed by variant, without the ``_`` columns."""
    return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]).set_index("variant")

"""The data-source parameters several recipes share (the SSL chapters' ``dataset``, ``data_root``, ``mean``,
``std`` and split sizes), validated in one place."""

from __future__ import annotations

from ..checks import check_choice, check_float, check_int
from ..data import DATASETS


def check_dataset(cfg, allowed=DATASETS) -> None:
    """Raise ``ValueError`` naming the parameter unless ``cfg.dataset`` is one of ``allowed`` and an ImageFolder
    dataset names its ``data_root``."""
    check_choice("dataset", cfg.dataset, allowed)
    if cfg.dataset == "imagefolder" and not cfg.data_root:
        raise ValueError("data_root must name the ImageFolder tree (with train/ and test/) when dataset='imagefolder'")


def check_data_source(cfg, sizes: tuple[str, ...] = ("n_train", "n_val", "n_test")) -> None:
    """Raise ``ValueError`` naming the parameter unless ``cfg.dataset`` is one of :data:`patchnb.data.DATASETS`
    (an ImageFolder with its ``data_root``), ``cfg.mean`` / ``cfg.std`` are both absent or two lists of the same
    length (std > 0), and the split sizes named in ``sizes`` are integers >= 1 or None (all of the split)."""
    check_dataset(cfg)
    mean, std = cfg.mean, cfg.std
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean and std, or neither (mean={mean!r}, std={std!r})")
    if mean is not None:
        if not isinstance(mean, tuple) or not isinstance(std, tuple) or len(mean) != len(std):
            raise ValueError(f"mean and std must be lists of the same length, got {mean!r} and {std!r}")
        for m, s in zip(mean, std):
            check_float("mean", m)
            check_float("std", s, 0.0, strict_min=True)
    for name in sizes:
        check_int(name, getattr(cfg, name), 1, allow_none=True)

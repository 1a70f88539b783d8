"""YAML configs of the self-supervised methods (``patchnb/ssl/configs/<method>.yaml``).

A config file holds one method's hyper-parameters, in four sections::

    method: simclr                   # a key of patchnb.ssl.METHODS
    paper: "Chen et al. 2020, ..."   # optional, documentation only
    params: {temperature: 0.1}       # fields of the method's dataclass (not `augment`, not `name`)
    augment: {crop_scale: [0.2, 1]}  # fields of patchnb.ssl.Augment (omitted: the method's default)
    train: {optimizer: adam, ...}    # overrides of patchnb.train.TrainConfig fields

:func:`load_method_config` turns it into ``(method, train_overrides)``; unknown sections, unknown
fields and bad values raise :class:`MethodConfigError` naming the file, the field and what is allowed.
The training budget (epochs, seed, device) is the caller's: ``TrainConfig(**{**overrides, "epochs": e})``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from ..train import TrainConfig
from .augment import Augment
from .methods import METHODS

CONFIG_DIR = Path(__file__).parent / "configs"
SECTIONS = ("method", "paper", "params", "augment", "train")


class MethodConfigError(ValueError):
    """A method config that cannot be read or does not describe a valid method."""


def available_configs() -> list[str]:
    """The names of the shipped configs (``simclr``, ``mocov2``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise MethodConfigError(f"method config file {str(p)!r} does not exist")
        return p
    path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise MethodConfigError(f"no method config named {str(name_or_path)!r}; available: {available_configs()} "
                                f"(or pass the path of a .yaml file)")
    return path


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def read_method_config(name_or_path: str | Path) -> dict:
    """The validated config as a plain dict (sections ``method``, ``paper``, ``params``, ``augment``, ``train``)."""
    path = _resolve(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise MethodConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise MethodConfigError(f"{path}: must be a mapping with sections {list(SECTIONS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise MethodConfigError(f"{path}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    method = raw.get("method")
    if method not in METHODS:
        raise MethodConfigError(f"{path}: method={method!r} is not one of {sorted(METHODS)}")
    cfg = {"method": method, "paper": str(raw.get("paper", ""))}
    allowed = {
        "params": _fields(METHODS[method]) - {"augment", "name"},
        "augment": _fields(Augment),
        "train": _fields(TrainConfig) - {"epochs", "seed", "device"},
    }
    for section, names in allowed.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise MethodConfigError(f"{path}: section {section!r} must be a mapping, got {type(values).__name__}")
        bad = sorted(set(values) - names)
        if bad:
            raise MethodConfigError(f"{path}: unknown {section} field(s) {bad} for {method}; allowed: {sorted(names)}")
        cfg[section] = dict(values)
    try:  # construct once so that value errors surface here, with the file named
        build_method(cfg)
        TrainConfig(**cfg["train"])
    except (TypeError, ValueError) as e:
        raise MethodConfigError(f"{path}: {e}") from e
    return cfg


def build_method(cfg: dict, **params):
    """The method object of a config dict (``params`` override the file's ``params``)."""
    cls = METHODS[cfg["method"]]
    kwargs = {**cfg.get("params", {}), **params}
    if cfg.get("augment"):
        base = cls().augment if "augment" in _fields(cls) else Augment()
        kwargs["augment"] = dataclasses.replace(base, **cfg["augment"])
    for k, v in list(kwargs.items()):
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


def load_method_config(name_or_path: str | Path) -> tuple[object, dict]:
    """``(method, train_config_overrides)`` from a shipped config name (``"simclr"``) or a YAML path.

    The method is built from ``params`` and ``augment``; the overrides are the ``train`` section, ready
    for ``TrainConfig(**overrides, epochs=..., seed=...)``. Raises :class:`MethodConfigError`."""
    cfg = read_method_config(name_or_path)
    return build_method(cfg), dict(cfg["train"])

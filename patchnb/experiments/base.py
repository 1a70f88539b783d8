"""The shape every recipe of the book shares: a validated ``Config`` with a ``PRESETS`` table per scale,
``run(cfg) -> Result``.

A recipe module (``patchnb.experiments.<chapter>``) defines::

    @dataclass(frozen=True)
    class Config(ExperimentConfig):
        n_centroids: int = 256
        ...
        BUDGET: ClassVar[str] = "train_size"      # the field that measures the budget

        def validate(self): ...                   # raise ValueError naming the parameter

    PRESETS = {"smoke": {...}, "cpu": {...}, "paper": {...}}   # values of Config fields per scale
    Config.PRESETS = PRESETS

    def run(cfg: Config) -> Result: ...

and a notebook calls ``cfg = Config.preset(scale, **overrides)``, ``result = run(cfg)``, ``result.glue()``
(:class:`~patchnb.experiments.result.Result`, page code kept out of this module so that it stays out of the
cached runs' import closure).
A scale is only a preset of parameters, never a code path: a recipe's code never reads ``cfg.scale``
(it is a label for the page).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..checks import check_choice, check_device, check_seeds

SCALES = ("smoke", "cpu", "paper")


MIN_BUDGETS = 3


def check_budget_fractions(fractions, of: str) -> None:
    """A page's ``budget_fractions``: a tuple of at least :data:`MIN_BUDGETS` distinct numbers in (0, 1], one of
    them 1 (the page's own budget); ``of`` names what they are fractions of, for the error."""
    fr = fractions
    if (not isinstance(fr, tuple) or len(fr) < MIN_BUDGETS or len(set(fr)) != len(fr)
            or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 for f in fr)
            or max(fr) != 1):
        raise ValueError(f"budget_fractions={fr!r} must be at least {MIN_BUDGETS} distinct fractions of {of} in "
                         f"(0, 1], one of them 1 (the page's budget), e.g. (0.25, 0.5, 1.0)")


@dataclass(frozen=True)
class ExperimentConfig:
    """Fields every recipe has. Subclasses add theirs (with defaults) and override :meth:`validate`."""

    scale: str = "cpu"
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    BUDGET: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        check_choice("scale", self.scale, SCALES)
        object.__setattr__(self, "seeds", check_seeds("seeds", self.seeds))
        if not isinstance(self.device, str):  # a string, so that the configuration is plain and hashable
            raise ValueError(f"device must be a device string ('auto', 'cpu', 'cuda', 'cuda:0', ...), got "
                             f"{self.device!r}")
        check_device("device", self.device)
        for f in fields(self):  # lists given by notebooks/YAML become tuples: configs are hashable values
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, _tuples(v))
        self.validate()

    def validate(self) -> None:
        """Check the recipe's own fields; raise ``ValueError`` naming the parameter and what is allowed."""

    @classmethod
    def preset(cls, scale: str, **overrides):
        """The configuration of ``scale`` (the recipe's ``PRESETS``), then ``overrides``.

        An override of ``None`` keeps the preset's value (notebook parameters default to ``None``);
        an unknown name is an error listing the fields."""
        check_choice("scale", scale, SCALES)
        if scale not in cls.PRESETS:
            raise ValueError(f"{cls.__module__}.PRESETS has no entry for scale={scale!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__} has no parameter(s) {unknown}; its parameters are "
                             f"{sorted(names - {'scale'})}")
        values = {**cls.PRESETS[scale], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(scale=scale, **values)

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values of every field (the run-cache key and the page's record of the run)."""
        return dataclasses.asdict(self)

    def key(self, *drop: str) -> dict:
        """The fields that change a run's result: all but the label ``scale``, the seed list (each run
        keys its own seed) and ``drop``."""
        return {k: v for k, v in self.to_dict().items() if k not in ("scale", "seeds", *drop)}

    def at_budget(self, fraction: float):
        """This configuration with its budget field (``BUDGET``) scaled by ``fraction`` (rounded, >= 1)."""
        if self.BUDGET is None:
            raise ValueError(f"{type(self).__module__}.Config declares no BUDGET field, so it cannot be swept")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        full = getattr(self, self.BUDGET)
        if full is None:
            raise ValueError(f"{self.BUDGET}=None (all of the data) cannot be scaled; give {self.BUDGET} a number")
        return self.replace(**{self.BUDGET: max(1, int(round(full * fraction)))})


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v

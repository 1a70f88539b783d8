"""The shape every recipe shares (patchnb.experiments.base), on a made-up recipe."""
from dataclasses import dataclass
from typing import ClassVar

import pytest

from patchnb.checks import check_int
from patchnb.experiments import ExperimentConfig
from patchnb.experiments.result import Result, sweep_budget


@dataclass(frozen=True)
class Config(ExperimentConfig):
    train_size: int | None = 100
    widths: tuple[int, ...] = (1, 2)
    BUDGET: ClassVar[str] = "train_size"

    def validate(self):
        check_int("train_size", self.train_size, 1, allow_none=True)


Config.PRESETS = {"smoke": dict(train_size=8), "cpu": dict(train_size=1000, seeds=[0, 1]),
                  "paper": dict(train_size=None)}


def test_preset_then_overrides():
    c = Config.preset("cpu")
    assert (c.scale, c.train_size, c.seeds) == ("cpu", 1000, (0, 1))
    c = Config.preset("cpu", seeds=[3], train_size=None, widths=[4, 5])  # None keeps the preset's value
    assert (c.train_size, c.seeds, c.widths) == (1000, (3,), (4, 5))
    assert c.key() == {"device": "cpu", "train_size": 1000, "widths": (4, 5)}
    assert hash(c) == hash(Config.preset("cpu", seeds=[3], widths=(4, 5)))


@pytest.mark.parametrize("kw, match", [
    (dict(train_sise=3), r"no parameter\(s\) \['train_sise'\]"),
    (dict(train_size=0), "train_size must be >= 1"),
    (dict(train_size=2.5), "train_size must be an integer"),
    (dict(seeds=[]), "seeds must be a non-empty list"),
    (dict(seeds=[1, 1]), "seeds must not repeat"),
    (dict(device="gpu"), "device='gpu' is not a device"),
])
def test_bad_parameters_name_themselves(kw, match):
    with pytest.raises(ValueError, match=match):
        Config.preset("cpu", **kw)


def test_unknown_scale():
    with pytest.raises(ValueError, match="scale='huge'"):
        Config.preset("huge")


def test_budget_sweep_scales_the_budget_field():
    seen = []

    def run(cfg):
        seen.append(cfg.train_size)
        return Result(cfg, numbers={"n": cfg.train_size})

    out = sweep_budget(run, Config.preset("cpu"), (1.0, 0.25, 0.5))
    assert [f for f, _ in out] == [0.25, 0.5, 1.0] and seen == [250, 500, 1000]
    with pytest.raises(ValueError, match="None"):
        Config.preset("paper").at_budget(0.5)
    with pytest.raises(ValueError, match="fractions"):
        sweep_budget(run, Config.preset("cpu"), (0, 1))

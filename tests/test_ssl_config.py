"""YAML method configs: every shipped config loads into its method, overrides fit TrainConfig, and
bad files fail with errors that name the field."""

import pytest

from patchnb.ssl import METHODS, Augment, MoCoV2, available_configs, load_method_config
from patchnb.ssl.config import MethodConfigError, read_method_config
from patchnb.train import TrainConfig


def test_every_shipped_config_loads():
    names = available_configs()
    assert {"simclr", "mocov2", "hcl", "deepcluster", "context_encoder", "detcon"} <= set(names)
    for name in names:
        method, train = load_method_config(name)
        assert isinstance(method, METHODS[name]) and method.name == name
        assert isinstance(method.augment, Augment)
        cfg = TrainConfig(**train, epochs=1)
        assert cfg.batch_size >= 2
        assert read_method_config(name)["paper"]


def test_values_are_applied():
    method, train = load_method_config("mocov2")
    assert isinstance(method, MoCoV2) and method.mochi and method.eqco_alpha == 256
    assert method.effective_margin() != 0.0
    assert method.augment.crop_scale == (0.2, 1.0) and isinstance(method.augment.crop_scale, tuple)
    assert train["optimizer"] == "sgd"
    dc, _ = load_method_config("deepcluster")
    assert dc.augment.jitter_prob == 0.0 and dc.n_clusters == 100


def test_path_and_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("method: simclr\nparams: {temperature: 0.3}\ntrain: {lr: 0.01}\n")
    method, train = load_method_config(good)
    assert method.temperature == 0.3 and train == {"lr": 0.01}
    with pytest.raises(MethodConfigError, match="available"):
        load_method_config("no_such_method")
    with pytest.raises(MethodConfigError, match="does not exist"):
        load_method_config(tmp_path / "missing.yaml")
    cases = {
        "method: byol\n": "not one of",
        "method: simclr\nparams: {temprature: 0.1}\n": "temprature",
        "method: simclr\naugment: {crop_prob: 2.0}\n": "crop_prob",
        "method: simclr\ntrain: {optimizer: rmsprop}\n": "optimizer",
        "method: simclr\ntrain: {epochs: 3}\n": "epochs",
        "method: simclr\nextra: 1\n": "unknown section",
        "- a list\n": "mapping",
        "method: simclr\nparams: [1, 2]\n": "mapping",
    }
    for i, (text, msg) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.yaml"
        bad.write_text(text)
        with pytest.raises(MethodConfigError, match=msg):
            load_method_config(bad)

"""The frozen-encoder protocol (patchnb.eval.protocol) on a tiny encoder: its keys, their ranges, that two
calls agree exactly, that the result can be cached, and that bad settings fail naming the parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from patchnb.cache import check_plain
from patchnb.data import Normalization, Splits, make_synthetic
from patchnb.eval import FeatureMap, evaluate_encoder, features, knn_classify, linear_probe

KEYS = {"probe_accuracy", "probe_val_accuracy", "probe_weight_decay", "probe_precision", "probe_recall", "probe_f1",
        "probe_grid", "confusion", "knn_accuracy", "knn_val_accuracy", "alignment", "uniformity", "n_geometry",
        "feature_dim", "n_train", "seconds"}


@pytest.fixture(scope="module")
def splits() -> Splits:
    data = make_synthetic(300, n_classes=3, shape=(1, 8, 8), seed=1)
    test = make_synthetic(90, n_classes=3, shape=(1, 8, 8), seed=2)
    return Splits("synthetic", data.subset(torch.arange(200)), data.subset(torch.arange(200, 300)), test,
                  Normalization((0.35,), (0.3,)))


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


def test_keys_ranges_and_plain(splits):
    out = evaluate_encoder(tiny_encoder(), splits, n_geometry=50)
    assert set(out) == KEYS
    check_plain(out)
    for k in ("probe_accuracy", "probe_val_accuracy", "probe_precision", "probe_recall", "probe_f1", "knn_accuracy",
              "knn_val_accuracy"):
        assert 0.0 <= out[k] <= 1.0, k
    assert out["alignment"] >= 0.0 and out["uniformity"] <= 0.0 and out["n_geometry"] == 50
    assert out["feature_dim"] == 16 and out["n_train"] == 200
    cm = torch.tensor(out["confusion"])
    assert cm.shape == (3, 3) and int(cm.sum()) == len(splits.test)
    assert out["probe_accuracy"] == pytest.approx(float(cm.diag().sum()) / len(splits.test))


def test_matches_the_probes_it_is_made_of(splits):
    enc = tiny_encoder()
    out = evaluate_encoder(enc, splits, n_geometry=None, knn_k=5, knn_temperature=0.1)
    (ftr, ytr), (fva, yva), (fte, yte) = (features(enc, d, splits) for d in (splits.train, splits.val, splits.test))
    probe = linear_probe(ftr, ytr, fva, yva, fte, yte, n_classes=3)
    assert out["probe_accuracy"] == probe.test["accuracy"] and out["probe_weight_decay"] == probe.weight_decay
    assert out["knn_accuracy"] == knn_classify(ftr, ytr, fte, yte, k=5, temperature=0.1).accuracy
    assert out["alignment"] is None and out["uniformity"] is None


def test_deterministic(splits):
    a = evaluate_encoder(tiny_encoder(), splits, n_geometry=40)
    b = evaluate_encoder(tiny_encoder(), splits, n_geometry=40)
    for k in KEYS - {"seconds"}:
        assert a[k] == b[k], k


def test_subset_feature_map_and_test_features(splits):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_encoder()

        def forward(self, x):  # a head the probes must not see
            return self.body(x)[:, :2]

        def bottleneck(self, x):
            return self.body(x)

    out = evaluate_encoder(FeatureMap(Net(), "bottleneck"), splits, n_geometry=None, probe_subset=50,
                           return_test_features=True)
    assert out["n_train"] == 50 and out["feature_dim"] == 16
    assert out["test_features"].shape == (len(splits.test), 16) and torch.equal(out["test_labels"], splits.test.labels)
    with pytest.raises(ValueError, match="method='nope'"):
        FeatureMap(Net(), "nope")


def test_features_fn_is_used(splits):
    seen = []

    def fn(encoder, data, s, name):
        seen.append(name)
        return features(encoder, data, s)

    evaluate_encoder(tiny_encoder(), splits, n_geometry=None, features_fn=fn)
    assert seen == ["train", "val", "test"]


@pytest.mark.parametrize("kw, name", [({"knn_k": 0}, "knn_k"), ({"knn_temperature": 0.0}, "knn_temperature"),
                                      ({"n_geometry": 1}, "n_geometry"), ({"probe_subset": 0}, "probe_subset"),
                                      ({"batch_size": 0}, "batch_size")])
def test_bad_settings_name_the_parameter(splits, kw, name):
    with pytest.raises(ValueError, match=name):
        evaluate_encoder(tiny_encoder(), splits, **kw)

"""EMP-SSL's patch-averaged features, per-epoch checkpointing and the SupCon checkpoint sweep on an ImageFolder."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from patchnb.data import load_splits, make_synthetic
from patchnb.eval import sweep_checkpoints
from patchnb.metrics import circle_projection, vmf_concentration
from patchnb.ssl import Augment, Checkpointing, ResNet18, SupCon, checkpoint_meta, pretrain_with_checkpoints
from patchnb.ssl.augment import normalize
from patchnb.ssl.emp import EMPSSL, patch_averaged_features
from patchnb.train import TrainConfig


@pytest.fixture(scope="module")
def splits():
    return load_splits("synthetic", train_size=96, val_size=48, test_size=64)


def test_patch_averaged_features_equal_hand_computed_mean(splits):
    torch.manual_seed(0)
    enc = ResNet18(splits.shape[0], 4).eval()
    data = splits.test.subset(torch.arange(6))
    aug = Augment.emp_ssl()
    got, labels = patch_averaged_features(enc, data, splits, n_patches=5, seed=3, augment=aug, batch_size=6)
    # by hand: the same crops (same generator draws), every patch through the encoder alone, then the mean
    g = torch.Generator().manual_seed(3)
    p = aug.patches(data.images.float() / 255, 5, g)
    with torch.no_grad():
        per = torch.stack([torch.stack([enc(normalize(p[i, b:b + 1], splits.norm))[0] for b in range(6)])
                           for i in range(5)])
    np.testing.assert_allclose(got.numpy(), per.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert torch.equal(labels, data.labels) and got.shape == (6, enc.out_dim)
    again, _ = patch_averaged_features(enc, data, splits, n_patches=5, seed=3, augment=aug, batch_size=6)
    assert torch.equal(got, again)  # seeded
    other, _ = patch_averaged_features(enc, data, splits, n_patches=5, seed=4, augment=aug, batch_size=6)
    assert not torch.equal(got, other)


def test_bad_parameters_raise(splits):
    enc = ResNet18(splits.shape[0], 4)
    with pytest.raises(ValueError, match="n_patches"):
        patch_averaged_features(enc, splits.test, splits, n_patches=1)
    with pytest.raises(ValueError, match="n_patches"):
        EMPSSL(n_patches=1)
    with pytest.raises(ValueError, match="eps"):
        EMPSSL(eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        EMPSSL(eps=-0.1)
    with pytest.raises(ValueError, match="eval_patches"):
        EMPSSL(eval_patches=1)
    with pytest.raises(ValueError, match="every"):
        Checkpointing("x", every=0)


def test_vmf_and_circle():
    g = torch.Generator().manual_seed(0)
    uniform = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    clustered = torch.tensor([1.0] + [0.0] * 7, dtype=torch.float64) + 0.05 * torch.randn(4000, 8, generator=g,
                                                                                            dtype=torch.float64)
    assert vmf_concentration(uniform)["kappa"] < 0.5 < 100 < vmf_concentration(clustered)["kappa"]
    labels = torch.arange(4000) % 2
    two = torch.where(labels[:, None] == 0, clustered, -clustered)
    assert vmf_concentration(two)["kappa"] < 1 < 100 < vmf_concentration(two, labels)["kappa"]
    c = circle_projection(uniform)
    assert c.shape == (4000, 2) and torch.allclose(c.norm(dim=1), torch.ones(4000), atol=1e-5)


def test_checkpointing_saves_every_epoch_and_resumes(tmp_path, splits):
    cfg = TrainConfig(epochs=4, batch_size=16, optimizer="sgd", lr=0.01, schedule="constant",
                      max_steps_per_epoch=1)
    method = EMPSSL(n_patches=2, eval_patches=2, knn_bank_size=32)
    torch.manual_seed(0)
    res, paths = pretrain_with_checkpoints(method.make_model(splits.shape[0], 4, 32, 16), splits, cfg, method,
                                           tmp_path / "run", every=2, progress=False)
    assert [p.name for p in paths] == ["epoch_002.pt", "epoch_004.pt"]
    metas = [checkpoint_meta(p) for p in paths]
    assert [m["epoch"] for m in metas] == [2, 4]
    assert 0 < metas[0]["train_seconds"] < metas[1]["train_seconds"]
    cfg = TrainConfig(**{**cfg.__dict__, "epochs": 3})
    assert 0 <= res.test["score"] <= 1
    # killed during epoch 3, then resumed by fit from last.pt: numbering and seconds continue
    run2 = tmp_path / "run2"
    m2 = SupCon(knn_bank_size=32)
    real_step, count = m2.step, {"n": 0}

    def dying_step(*a):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*a)

    m2.step = dying_step  # an instance attribute: not part of repr(m2), so not of fit's fingerprint
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        pretrain_with_checkpoints(m2.make_model(splits.shape[0], 4, 32, 16), splits, cfg, m2, run2, progress=False)
    assert sorted(p.name for p in (run2 / "checkpoints").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    del m2.step
    torch.manual_seed(0)
    _, paths2 = pretrain_with_checkpoints(m2.make_model(splits.shape[0], 4, 32, 16), splits, cfg, m2, run2,
                                          progress=False)
    assert [p.name for p in paths2] == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    metas = [checkpoint_meta(p) for p in paths2]
    assert [m["epoch"] for m in metas] == [1, 2, 3] and metas[2]["train_seconds"] > metas[1]["train_seconds"]


def _write_tree(root, n_per_class=12, size=12):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("test", n_per_class // 2)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def test_supcon_sweep_on_image_folder(tmp_path):
    """The seed-001 protocol end to end on a tiny ImageFolder with user mean/std: SupCon pre-training with
    a checkpoint per epoch, a corrupt checkpoint skipped with a warning, an interrupted sweep resumed, one test
    table. (Resume of the sweep is also covered by tests/test_eval.py::test_sweep_resumes_and_skips_corrupt.)"""
    _write_tree(tmp_path / "data")
    splits = load_splits("imagefolder", root=tmp_path / "data", val_fraction=0.25, mean=(0.4, 0.4, 0.4),
                         std=(0.3, 0.3, 0.3))
    assert splits.norm.mean == (0.4, 0.4, 0.4) and splits.shape == (3, 12, 12)
    method = SupCon(knn_bank_size=64)
    cfg = TrainConfig(epochs=3, batch_size=9, optimizer="sgd", lr=0.05, schedule="cosine")
    torch.manual_seed(0)
    _, paths = pretrain_with_checkpoints(method.make_model(3, 4, 32, 16), splits, cfg, method, tmp_path / "run",
                                         progress=False)
    folder = tmp_path / "run" / "checkpoints"
    assert len(paths) == 3
    (folder / "epoch_002.pt").write_bytes(b"not a checkpoint")  # corrupt

    calls = {"n": 0}

    def interrupting():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while scoring the second checkpoint
        return ResNet18(3, 4)

    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sweep_checkpoints(folder, interrupting, splits, weight_decays=(1e-2,), progress=False)
    state = json.loads((folder / "sweep.json").read_text())
    assert list(state["checkpoints"]) == ["epoch_001.pt"]

    built = {"n": 0}

    def build():
        built["n"] += 1
        return ResNet18(3, 4)

    with pytest.warns(UserWarning, match="epoch_002.pt"):
        res = sweep_checkpoints(folder, build, splits, weight_decays=(1e-2,), progress=False)
    assert built["n"] == 3  # the corrupt one (fails), epoch_003, then the selected one on test; epoch_001 reused
    status = {r["checkpoint"]: r["status"] for r in res.rows}
    assert status == {"epoch_001.pt": "done", "epoch_002.pt": "skipped", "epoch_003.pt": "done"}
    table = res.test_table()
    assert list(table.columns) == ["checkpoint", "epoch", "accuracy", "precision", "recall", "f1"]
    assert res.best in ("epoch_001.pt", "epoch_003.pt") and 0 <= res.test["accuracy"] <= 1
    assert np.array(res.test["confusion"]).sum() == len(splits.test)


def test_synthetic_make():  # the fixture's data are what the tests assume
    d = make_synthetic(10, seed=0)
    assert d.images.dtype == torch.uint8

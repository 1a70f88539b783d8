"""EMP-SSL's recipe against its code (tsb0601/EMP-SSL: fixed 0.25-area crops, solarize 0.1, the 4096-d
pre_feature layer that is evaluated, the 4096-4096-1024 projection, LARS wrapper), patch-averaged features,
per-epoch checkpointing and the SupCon checkpoint sweep on an ImageFolder."""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from patchnb.data import load_splits, make_synthetic
from patchnb.eval import load_backbone, sweep_checkpoints
from patchnb.metrics import circle_projection, vmf_concentration
from patchnb.optim import make_optimizer
from patchnb.ssl import (
    Augment,
    Checkpointing,
    ResNet18,
    SupCon,
    checkpoint_meta,
    pretrain_with_checkpoints,
    read_method_config,
    save_backbone,
)
from patchnb.ssl.augment import normalize
from patchnb.ssl.config import build_method
from patchnb.ssl.emp import EMPSSL, EMPEncoder, make_emp_model, patch_averaged_features
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
    p = aug.patches(data.images.float() / 255, 5, g, (0.25, 0.25))  # the code's fixed crop area, the default
    with torch.no_grad():
        per = torch.stack([torch.stack([enc(normalize(p[i, b:b + 1], splits.norm))[0] for b in range(6)])
                           for i in range(5)])
    np.testing.assert_allclose(got.numpy(), per.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert torch.equal(labels, data.labels) and got.shape == (6, enc.out_dim)
    again, _ = patch_averaged_features(enc, data, splits, n_patches=5, seed=3, augment=aug, batch_size=6)
    assert torch.equal(got, again)  # seeded
    other, _ = patch_averaged_features(enc, data, splits, n_patches=5, seed=4, augment=aug, batch_size=6)
    assert not torch.equal(got, other)


def test_yaml_and_defaults_are_the_codes_recipe():
    # dataset/aug.py: RandomResizedCrop(32, scale=(0.25, 0.25), ratio=(1, 1)), flip 0.5, ColorJitter(0.4, 0.4,
    # 0.4, 0.2) p 0.8, grayscale 0.2, GBlur p 0.1 (sigma 0.1-2), solarize p 0.1; model/model.py: 4096 / 1024;
    # main.py: SGD(lr 0.3, momentum 0.9, wd 1e-4, nesterov) in LARSWrapper(eta 0.005, clip, exclude_bias_n_norm)
    cfg = read_method_config("emp_ssl")
    m = build_method(cfg)
    for method in (m, EMPSSL()):
        a = method.augment
        assert method.patch_scale == (0.25, 0.25) and a.crop_ratio == (1.0, 1.0)
        assert (a.flip_prob, a.jitter_prob, a.brightness, a.contrast, a.saturation, a.hue) == (0.5, 0.8, 0.4, 0.4,
                                                                                               0.4, 0.2)
        assert (a.grayscale_prob, a.blur_prob, a.blur_sigma, a.solarize_prob) == (0.2, 0.1, (0.1, 2.0), 0.1)
        assert (method.hidden_dim, method.out_dim, method.eps, method.invariance_weight) == (4096, 1024, 0.2, 200.0)
    assert m.augment == Augment.emp_ssl() and m.n_patches == 200
    t = TrainConfig(**cfg["train"])
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule, t.warmup_epochs, t.batch_size) == (
        "lars_solo", 0.3, 0.9, 1e-4, "cosine", 0, 100)
    group = make_optimizer(torch.nn.Linear(2, 2).parameters(), t).param_groups[0]
    assert {k: group[k] for k in ("eta", "trust", "clip", "exclude_1d", "nesterov", "momentum", "weight_decay")} == \
        dict(eta=0.005, trust="eq6", clip=True, exclude_1d=True, nesterov=True, momentum=0.9, weight_decay=1e-4)


def test_training_crops_cover_a_quarter_of_the_image():
    # A ramp image (channel 0 = column / (W - 1), channel 1 = row / (H - 1)): after a crop of relative size
    # cw x ch resized to the image, the sampled ramp spans cw (resp. ch), up to the border clamp of half a pixel
    # at each end. With the colour operations off, the crops of the YAML's method have cw = ch = 0.5: area 0.25
    # (the 0.25-1 scale used before gave areas up to 1, mean 0.625).
    m = build_method(read_method_config("emp_ssl"))
    aug = dataclasses.replace(m.augment, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
    h = w = 32
    x = torch.zeros(1, 3, h, w)
    x[0, 0] = torch.arange(w).float().div(w - 1).expand(h, w)
    x[0, 1] = torch.arange(h).float().div(h - 1)[:, None].expand(h, w)
    p = aug.patches(x, 64, torch.Generator().manual_seed(0), m.patch_scale)[:, 0]  # (64, 3, h, w)
    span_x = p[:, 0].amax((1, 2)) - p[:, 0].amin((1, 2))
    span_y = p[:, 1].amax((1, 2)) - p[:, 1].amin((1, 2))
    tol = 1.0 / (w - 1)
    assert torch.all((span_x > 0.5 - tol) & (span_x <= 0.5 + 1e-5)) and torch.all((span_y > 0.5 - tol) &
                                                                                    (span_y <= 0.5 + 1e-5))
    np.testing.assert_allclose((span_x * span_y).numpy(), 0.25, atol=0.02)
    assert len({round(float(v), 3) for v in p[:, 0, 0, 0]}) > 10  # the crops are at random places


def test_network_has_the_codes_shape_and_evaluates_its_pre_feature_layer(splits, tmp_path):
    # model/model.py: backbone (512) -> pre_feature Linear(512, 4096)-BN-ReLU -> projection Linear(4096, 4096)-BN-
    # ReLU-Linear(4096, 1024); evaluate.py averages the pre_feature output over patches
    model = EMPSSL().make_model(3, 64)
    enc = model.backbone
    assert isinstance(enc, EMPEncoder) and enc.feature_dim == 512 and enc.out_dim == 4096
    assert [type(layer).__name__ for layer in enc.pre_feature] == ["Linear", "BatchNorm1d", "ReLU"]
    assert (enc.pre_feature[0].in_features, enc.pre_feature[0].out_features) == (512, 4096)
    head = [layer for layer in model.projector.net]
    assert [type(layer).__name__ for layer in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[3].in_features, head[3].out_features) == (4096, 4096,
                                                                                                     4096, 1024)
    # the method's evaluation (whole images and patch-averaged) reads the encoder's output, not the ResNet's
    small = EMPSSL(n_patches=2, hidden_dim=24, out_dim=8, knn_bank_size=32)  # eval_patches 0: whole images
    torch.manual_seed(0)
    net = small.make_model(splits.shape[0], 4).eval()
    data = splits.test.subset(torch.arange(8))
    whole = small.features(net, data, splits)
    with torch.no_grad():
        x = splits.norm(data.images, "cpu")  # the pixels of patchnb.train.features
        direct = net.backbone.pre_feature(ResNet18.forward(net.backbone, x))
    assert whole.shape == (8, 24) and torch.allclose(whole, direct, atol=1e-5) and bool((whole >= 0).all())
    assert EMPSSL(n_patches=2, eval_patches=2, hidden_dim=24, out_dim=8).features(net, data, splits).shape == (8, 24)
    with torch.no_grad():
        assert net(x, project=True).shape == (8, 8)
    # a saved encoder loads into an EMPEncoder and, its ResNet part, into a plain ResNet18
    path = save_backbone(net, tmp_path / "e.pt")
    again = load_backbone(path, EMPEncoder(splits.shape[0], 4, 24)).eval()
    with torch.no_grad():
        assert torch.allclose(again(x), direct, atol=1e-6)
        res = load_backbone(path, ResNet18(splits.shape[0], 4)).eval()
        assert torch.allclose(res(x), ResNet18.forward(net.backbone, x), atol=1e-6)
    with pytest.raises(ValueError, match="hidden_dim"):
        EMPSSL(hidden_dim=0)
    with pytest.raises(ValueError, match="out_dim"):
        make_emp_model(1, 4, 16, 0)
    with pytest.raises(ValueError, match="batchnorm"):
        EMPSSL().make_model(1, 4, batchnorm=False)


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


def test_one_epoch_schedule_against_the_codes_two_epoch_cosine():
    """Issue 20 §6.2. tsb0601/EMP-SSL main.py: CosineAnnealingLR(opt, T_max=(50000 // bs) * args.epoch,
    eta_min=0) stepped after every batch, the encoder saved after every epoch (0.pt, 1.pt); the README's
    one-epoch command is --epoch 2. Hand case, bs 100 on CIFAR-10's 50,000 images: 500 steps an epoch,
    T_max 1000, so after the first epoch (0.pt) lr = 0.3 * (1 + cos(pi / 2)) / 2 = 0.15."""
    import math

    lr, per_epoch = 0.3, 50000 // 100
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch * 2, eta_min=0)
    code = []
    for _ in range(2 * per_epoch + 1):
        code.append(opt.param_groups[0]["lr"])  # the lr the step uses
        opt.step()
        sched.step()
    assert code[0] == pytest.approx(0.3) and code[per_epoch] == pytest.approx(0.15) and code[-1] == pytest.approx(0)
    assert code[per_epoch] == pytest.approx(lr * (1 + math.cos(math.pi / 2)) / 2)
    from patchnb.optim import lr_factor

    train = read_method_config("emp_ssl")["train"]
    assert train["schedule"] == "cosine" and train["warmup_epochs"] == 0 and train["lr"] == lr
    # an epochs=2 run of patchnb has the code's lr at every step (fit: LambdaLR of lr_factor(cfg, step / per_epoch)),
    # so its epoch-1 checkpoint is the code's one-epoch encoder (0.pt)
    two = TrainConfig(**train, epochs=2)
    ours = [lr * lr_factor(two, s / per_epoch) for s in range(2 * per_epoch + 1)]
    np.testing.assert_allclose(ours, code, rtol=1e-6, atol=1e-9)
    # the named deviation: a one-epoch run (epochs=1) anneals to 0 within its epoch, where the code is at 0.15
    one = TrainConfig(**train, epochs=1)
    assert lr * lr_factor(one, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr * lr_factor(one, 0.5) == pytest.approx(0.15) and code[per_epoch // 2] > 0.15  # 0.256 in the code

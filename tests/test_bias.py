"""Shape vs texture bias: stimuli, the metric (hand-made decisions), the 16-category ImageNet mapping,
the Geirhos loader and ImageNet evaluation on test-written files, the vision models and freezing."""

import sys
import time
import types

import numpy as np
import pytest
import torch
from PIL import Image

from patchnb.bias.geirhos import evaluate_imagenet_classifier, load_cue_conflict, parse_stimulus_name
from patchnb.bias.metrics import (
    IMAGENET_16_CATEGORIES,
    IMAGENET_16_INDICES,
    imagenet_16_decisions,
    imagenet_shape_bias,
    imagenet_to_16,
    shape_bias,
)
from patchnb.bias.stimuli import TEXTURES, bias_splits, make_stimuli, make_textures, slug, synthetic_masks
from patchnb.bias.transfer import transfer
from patchnb.cache import check_plain
from patchnb.data import DataError
from patchnb.models.vision import MODELS, VisionModel, freeze_backbone, make_vision_model
from patchnb.train import TrainConfig, fit

from .conftest import needs_fmnist


@pytest.fixture(scope="module")
def masks():
    return synthetic_masks(n_classes=10, size=16, n_per_class=6, seed=0)


# ----------------------------------------------------------------------------- metric


def test_shape_bias_hand_made():
    shape = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0])
    texture = torch.tensor([1, 2, 0, 1, 0, 1, 3, 0])  # the last two agree: excluded
    pred = torch.tensor([0, 2, 0, 9, 2, 2, 3, 1])
    # image: 0 shape, 1 texture, 2 texture, 3 excluded, 4 shape, 5 shape, 6 excluded, 7 excluded
    texture[3] = 1
    r = shape_bias(pred, shape, texture, n_classes=4)
    assert r.n_excluded == 3 and r.n_total == 8
    assert (r.n_shape, r.n_texture, r.n_other) == (3, 2, 0)
    assert r.shape_bias == pytest.approx(3 / 5)
    assert r.per_class[0] == {"shape_bias": 0.5, "n_shape": 1, "n_texture": 1}
    assert r.per_class[1] == {"shape_bias": 0.0, "n_shape": 0, "n_texture": 1}
    assert r.per_class[2]["shape_bias"] == 1.0 and r.per_class[2]["n_shape"] == 2
    assert np.isnan(r.per_class[3]["shape_bias"])
    assert r.per_texture_class[0] == {"shape_bias": 0.5, "n_shape": 1, "n_texture": 1}
    assert "excluded" in r.describe()


def test_shape_bias_neither_cue_and_scores():
    shape, texture = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    r = shape_bias(torch.tensor([2, 1, 1]), shape, texture)  # neither, shape, neither
    assert (r.n_shape, r.n_texture, r.n_other, r.n_excluded) == (1, 0, 2, 0) and r.shape_bias == 1.0
    logits = torch.eye(3)[torch.tensor([1, 2, 0])]  # all texture decisions
    assert shape_bias(logits, shape, texture).shape_bias == 0.0
    assert np.isnan(shape_bias(torch.tensor([5, 5, 5]), shape, texture).shape_bias)


def test_shape_bias_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        shape_bias(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="pred"):
        shape_bias(torch.zeros(2, 2, 2), torch.tensor([0, 1]), torch.tensor([1, 0]))


def test_imagenet_16_mapping_structure():
    assert IMAGENET_16_CATEGORIES == tuple(sorted(IMAGENET_16_CATEGORIES)) and len(IMAGENET_16_CATEGORIES) == 16
    assert set(IMAGENET_16_INDICES) == set(IMAGENET_16_CATEGORIES)
    flat = [i for c in IMAGENET_16_CATEGORIES for i in IMAGENET_16_INDICES[c]]
    assert len(flat) == len(set(flat)) == 207  # disjoint
    assert all(0 <= i < 1000 for i in flat)
    counts = {c: len(v) for c, v in IMAGENET_16_INDICES.items()}
    assert counts == {"airplane": 1, "bear": 4, "bicycle": 2, "bird": 49, "boat": 5, "bottle": 7, "car": 3,
                      "cat": 6, "chair": 4, "clock": 3, "dog": 109, "elephant": 2, "keyboard": 2, "knife": 1,
                      "oven": 1, "truck": 8}
    assert all(list(v) == sorted(v) for v in IMAGENET_16_INDICES.values())


def test_imagenet_protocol_averages_probabilities():
    p = torch.zeros(2, 1000)
    dog, knife = IMAGENET_16_CATEGORIES.index("dog"), IMAGENET_16_CATEGORIES.index("knife")
    p[0, list(IMAGENET_16_INDICES["dog"])] = 0.5 / 109  # more mass in total, less on average
    p[0, 499] = 0.02  # knife
    p[0, 0] = 1 - p[0].sum()
    p[1, 385] = 0.9  # elephant
    p[1, 0] = 0.1
    q = imagenet_to_16(p, probabilities=True)
    assert q.shape == (2, 16)
    assert q[0, dog].item() == pytest.approx(0.5 / 109) and q[0, knife].item() == pytest.approx(0.02)
    assert imagenet_16_decisions(p, probabilities=True).tolist() == [knife, IMAGENET_16_CATEGORIES.index("elephant")]
    # logits: softmax first, same decisions
    assert imagenet_16_decisions(torch.log(p.clamp_min(1e-12))).tolist() == [knife, 11]
    r = imagenet_shape_bias(p.log(), torch.tensor([knife, 0]), torch.tensor([dog, 11]))
    assert (r.n_shape, r.n_texture) == (1, 1)
    with pytest.raises(ValueError, match="1000-class"):
        imagenet_to_16(torch.zeros(2, 10))


# ----------------------------------------------------------------------------- stimuli


def test_stimuli_deterministic_and_labels(masks):
    m, y, classes = masks
    a = make_stimuli("conflict", 300, m, y, classes, image_size=16, texture_strength=0.5, noise=0.05, seed=3)
    b = make_stimuli("conflict", 300, m, y, classes, image_size=16, texture_strength=0.5, noise=0.05, seed=3)
    c = make_stimuli("conflict", 300, m, y, classes, image_size=16, texture_strength=0.5, noise=0.05, seed=4)
    assert torch.equal(a.data.images, b.data.images) and torch.equal(a.texture_labels, b.texture_labels)
    assert not torch.equal(a.data.images, c.data.images)
    assert a.data.images.dtype == torch.uint8 and a.data.images.shape == (300, 1, 16, 16)
    assert (a.shape_labels != a.texture_labels).all() and torch.equal(a.data.labels, a.shape_labels)
    assert torch.bincount(a.shape_labels).tolist() == [30] * 10  # balanced shapes
    assert set(a.texture_labels.tolist()) == set(range(10))
    cons = make_stimuli("consistent", 100, m, y, classes, image_size=16, seed=0)
    assert torch.equal(cons.shape_labels, cons.texture_labels)
    sty = make_stimuli("stylized", 2000, m, y, classes, image_size=16, seed=0)
    agree = (sty.shape_labels == sty.texture_labels).float().mean().item()
    assert 0.05 < agree < 0.15  # texture independent of shape: about 1/10
    assert torch.equal(sty.relabel("texture").labels, sty.texture_labels)


def test_stimuli_pixels_follow_the_cues(masks):
    m, y, classes = masks
    flat = make_stimuli("consistent", 50, m, y, classes, image_size=16, texture_strength=0.0, seed=0)
    inside = flat.data.images[flat.data.images > 0]
    assert set(inside.unique().tolist()) == {153}  # 0.6 * 255: flat silhouette, no texture
    full = make_stimuli("consistent", 50, m, y, classes, image_size=16, texture_strength=1.0, seed=0)
    assert full.data.images.float().std() > flat.data.images.float().std()
    assert ((full.data.images > 0) == (flat.data.images > 0)).all()  # same silhouettes (texture never below 0.3)
    t = make_textures(torch.arange(len(TEXTURES)).repeat(3), 16, torch.Generator().manual_seed(0))
    assert t.shape == (30, 16, 16) and t.min() >= -1 and t.max() <= 1
    means = [t[i::10].flatten(1) for i in range(10)]
    assert all(x.std() > 0.2 for x in means)


def test_stimuli_bad_inputs(masks):
    m, y, classes = masks
    with pytest.raises(ValueError, match="kind"):
        make_stimuli("cartoon", 10, m, y)
    with pytest.raises(ValueError, match="texture_strength"):
        make_stimuli("conflict", 10, m, y, texture_strength=2.0)
    with pytest.raises(ValueError, match="texture classes"):
        make_stimuli("conflict", 10, *synthetic_masks(12, 16, 1)[:2])
    with pytest.raises(ValueError, match="no mask"):
        make_stimuli("conflict", 10, m[y != 3], y[y != 3])


def test_stimuli_speed(masks):
    m, y, classes = masks
    t0 = time.perf_counter()
    s = make_stimuli("conflict", 10_000, m, y, classes, image_size=32, noise=0.05, seed=0)
    seconds = time.perf_counter() - t0
    assert len(s) == 10_000 and seconds < 10, f"10,000 stimuli took {seconds:.1f} s"


@needs_fmnist
def test_fashion_mnist_masks():
    from patchnb.bias.stimuli import fashion_mnist_masks

    m, y, classes = fashion_mnist_masks("test", n_per_class=5)
    assert m.shape == (50, 28, 28) and m.dtype == torch.bool and torch.bincount(y).tolist() == [5] * 10
    assert 0.2 < m.float().mean() < 0.8 and classes[0] == "T-shirt/top"
    s = make_stimuli("conflict", 20, m, y, classes, image_size=32)
    assert s.data.shape == (1, 32, 32)


# ----------------------------------------------------------------------------- Geirhos loader + ImageNet evaluation


def _write_stimuli(root, categories=IMAGENET_16_CATEGORIES, size=32):
    rng = np.random.default_rng(0)
    for i, cat in enumerate(categories):
        (root / cat).mkdir(parents=True)
        for j, tex in enumerate((categories[(i + 1) % len(categories)], cat)):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cat / f"{cat}{j + 1}-{tex}{j + 2}.png")


def test_load_cue_conflict(tmp_path):
    _write_stimuli(tmp_path / "stim")
    s = load_cue_conflict(tmp_path / "stim", image_size=16)
    assert len(s) == 32 and s.images.shape == (32, 3, 16, 16) and s.classes == IMAGENET_16_CATEGORIES
    assert s.shape_labels[:2].tolist() == [0, 0] and s.texture_labels[:2].tolist() == [1, 0]
    assert (s.shape_labels == s.texture_labels).sum() == 16
    assert parse_stimulus_name("0002_s5n_s01_0_bird_00_bird2-clock3.png") == ("bird", "clock")
    with pytest.raises(DataError, match="cannot read shape and texture"):
        parse_stimulus_name("airplane.png")


def test_load_cue_conflict_errors(tmp_path):
    _write_stimuli(tmp_path / "a", IMAGENET_16_CATEGORIES[:15])
    with pytest.raises(DataError, match="lacks the category folders"):
        load_cue_conflict(tmp_path / "a")
    _write_stimuli(tmp_path / "b")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "b" / "dog" / "dog_photo.png")
    with pytest.raises(DataError, match="dog_photo.png"):
        load_cue_conflict(tmp_path / "b")
    _write_stimuli(tmp_path / "c")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "c" / "dog" / "cat1-dog2.png")
    with pytest.raises(DataError, match="folder 'dog'"):
        load_cue_conflict(tmp_path / "c")
    with pytest.raises(DataError, match="does not exist"):
        load_cue_conflict(tmp_path / "nowhere")


def test_evaluate_imagenet_classifier(tmp_path):
    import torchvision

    _write_stimuli(tmp_path / "stim")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    r = evaluate_imagenet_classifier("resnet18", tmp_path / "w.pt", tmp_path / "stim", image_size=32)
    assert r.n_total == 32 and r.n_excluded == 16 and r.n_shape + r.n_texture + r.n_other == 16
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, tmp_path / "ck.pt")
    r2 = evaluate_imagenet_classifier("resnet18", tmp_path / "ck.pt", tmp_path / "stim", image_size=32)
    assert (r2.n_shape, r2.n_texture) == (r.n_shape, r.n_texture)
    with pytest.raises(ValueError, match="not a torchvision"):
        evaluate_imagenet_classifier("resnet_nine", tmp_path / "w.pt", tmp_path / "stim")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "ten.pt")
    with pytest.raises(ValueError, match="does not hold weights"):
        evaluate_imagenet_classifier("resnet18", tmp_path / "ten.pt", tmp_path / "stim", image_size=32)


def test_write_image_folder_round_trip(tmp_path, masks):
    m, y, classes = masks
    s = make_stimuli("conflict", 40, m, y, classes, image_size=16, seed=0)
    s.write_image_folder(tmp_path / "st")
    back = load_cue_conflict(tmp_path / "st", categories=tuple(slug(c) for c in classes), channels=1)
    pairs = sorted(zip(back.shape_labels.tolist(), back.texture_labels.tolist()))
    assert pairs == sorted(zip(s.shape_labels.tolist(), s.texture_labels.tolist()))
    assert back.images.shape == (40, 1, 16, 16)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODELS)
def test_model_shapes_and_training(name, masks):
    m, y, classes = masks
    model = make_vision_model(name, in_channels=1, n_classes=10, image_size=16, width=16)
    assert isinstance(model, VisionModel)
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, 10)
    assert model.features(torch.zeros(3, 1, 16, 16)).shape == (3, model.out_dim)
    s = make_stimuli("consistent", 64, m, y, classes, image_size=16, seed=0)
    x = (s.data.images.float() / 255 - 0.3) / 0.3
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(x), s.data.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_model_bad_inputs():
    with pytest.raises(ValueError, match="patch_size=5 must divide image_size=32"):
        make_vision_model("vit", image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="model='alexnet' is not supported"):
        make_vision_model("alexnet")
    with pytest.raises(ValueError, match="width"):
        make_vision_model("resnet", width=0)
    with pytest.raises(ValueError, match="heads"):
        make_vision_model("vit", width=30, heads=4)


def test_timm_names(monkeypatch):
    class Net(torch.nn.Module):
        num_features = 7

        def __init__(self, in_chans):
            super().__init__()
            self.conv = torch.nn.Conv2d(in_chans, 7, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    fake = types.SimpleNamespace(list_models=lambda: ["tiny_net"],
                                 create_model=lambda name, pretrained, num_classes, in_chans, **kw: Net(in_chans))
    monkeypatch.setitem(sys.modules, "timm", fake)
    model = make_vision_model("timm:tiny_net", in_channels=2, n_classes=4, image_size=16)
    assert model(torch.zeros(2, 2, 16, 16)).shape == (2, 4)
    assert make_vision_model("tiny_net", 1, 3).head.out_features == 3


def test_freeze_backbone_keeps_bn_statistics_and_transfer(masks):
    m, y, classes = masks
    splits = bias_splits("stylized", masks, masks, 96, 32, 32, image_size=16, seed=0)
    assert splits.train.shape == (1, 16, 16) and len(splits.test) == 32
    model = make_vision_model("resnet", 1, 10, 16, width=4)
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=1e-3, schedule="constant", patience=1)
    fit(model, splits, cfg, progress=False)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    # second task: texture classification of the same images, 10 classes -> 3 classes head
    second = bias_splits("consistent", masks, masks, 96, 32, 32, image_size=16, seed=1)
    for part in (second.train, second.val, second.test):
        part.labels = part.labels % 3
    second.train.classes = second.val.classes = second.test.classes = ("a", "b", "c")
    frozen, res = transfer(model, second, cfg, mode="frozen", progress=False)
    after = frozen.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running_mean / running_var
    assert frozen.head.out_features == 3 and 0 <= res.test["score"] <= 1
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())  # input untouched
    tuned, _ = transfer(model, second, cfg, mode="finetune", progress=False)
    assert not all(torch.equal(before[k], v) for k, v in tuned.backbone.state_dict().items())
    frozen.train()
    assert not frozen.backbone.training and frozen.head.training
    freeze_backbone(frozen, False)
    frozen.train()
    assert frozen.backbone.training
    with pytest.raises(ValueError, match="mode"):
        transfer(model, second, cfg, mode="partial")
    with pytest.raises(TypeError, match="VisionModel"):
        freeze_backbone(torch.nn.Linear(2, 2))


def test_bias_run_with_the_patch_network(masks):
    """The Phi_full patch network takes part in the comparison: its dictionary comes from the training stimuli."""
    from patchnb.bias.experiment import BIAS_MODELS, bias_run
    from patchnb.train import TrainConfig

    assert "patch" in BIAS_MODELS
    r = bias_run("patch", "consistent", masks, masks, n_train=128, n_val=32, n_test=64, n_conflict=64, image_size=16,
                 width=16, cfg=TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, schedule="constant"))
    assert r["model"] == "patch" and 0 <= r["shape_bias"] <= 1 and 0 <= r["accuracy"] <= 1
    assert any(k.startswith("embedding.") for k in r["state"])  # a patch network was trained, not a CNN
    check_plain(r)  # the record is cached as is: tensors and plain values only
    assert r["norm"]["mean"] and r["classes"] == list(masks[2])


def test_transfer_head_depends_only_on_the_seed(masks):
    """The new head is drawn from cfg.seed, not from whatever ran before in the process."""
    splits = bias_splits("consistent", masks, masks, 64, 16, 16, image_size=16, seed=0)
    model = make_vision_model("resnet", 1, 10, 16, width=4)
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, schedule="constant", seed=3)
    heads = []
    for draws in (0, 5):
        torch.manual_seed(123)
        torch.rand(draws)  # a different random state before each call
        tuned, _ = transfer(model, splits, cfg, mode="frozen", progress=False)
        heads.append(tuned.head.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])

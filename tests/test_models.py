"""Shapes, bad inputs and trainability of the patch networks (Brutzkus et al. 2022)."""

import pytest
import torch

from patchnb import data, train
from patchnb.embedding import PatchEmbedding, build_dictionary
from patchnb.models import LocallyLinearNetwork, VGGLike, train_layerwise, vanilla_cnn


def _dict(c=1, p=5, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = c * p * p
    return {"centroids": torch.randn(n, d, generator=g), "whitening": torch.eye(d), "patch_size": p, "channels": c}


@pytest.mark.parametrize("mode", ["hard", "full", "triangle", "kth"])
@pytest.mark.parametrize("head", [{}, {"use_pool": False, "use_batch_norm": False, "use_bottleneck": False},
                                  {"use_pool": True, "use_bottleneck": False}, {"relu_after_bottleneck": True}])
def test_locally_linear_shapes(mode, head):
    emb = PatchEmbedding.from_dictionary(_dict(), 8, mode)
    net = LocallyLinearNetwork(emb, (1, 16, 16), 10, **head)
    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 10)


def test_baselines_shapes():
    assert vanilla_cnn((3, 12, 12), 7, channels=16)(torch.randn(2, 3, 12, 12)).shape == (2, 7)
    for depth in (1, 2, 3, 4):
        net = VGGLike((1, 16, 16), 10, depth=depth, channels=8, kernel_sizes=[5, 3, 3, 3][:depth], padding=0,
                      use_batch_norm=[True] + [False] * (depth - 1), mlp_hidden_layers=depth % 2)
        assert net(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="k="):
        PatchEmbedding.from_dictionary(_dict(), 33)
    with pytest.raises(ValueError, match="k="):
        PatchEmbedding.from_dictionary(_dict(), 0)
    with pytest.raises(ValueError, match="patch size or channel"):
        PatchEmbedding(_dict()["centroids"], torch.eye(25), 3, 1, 4)
    emb = PatchEmbedding.from_dictionary(_dict(c=3), 4)
    with pytest.raises(ValueError, match="3-channel"):
        LocallyLinearNetwork(emb, (1, 16, 16))
    net = LocallyLinearNetwork(PatchEmbedding.from_dictionary(_dict(), 4), (1, 16, 16))
    with pytest.raises(ValueError, match="input must be"):
        net(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="depth"):
        VGGLike((1, 16, 16), depth=2, kernel_sizes=[5, 3, 3])
    with pytest.raises(ValueError, match="depth"):
        train_layerwise(torch.randn(4, 1, 16, 16), lambda m: None, depth=2, ks=(4, 4, 4))
    with pytest.raises(ValueError, match="k="):
        train_layerwise(torch.randn(4, 1, 16, 16), lambda m: None, depth=1, ks=(64,), n_centroids=32,
                        kernel_sizes=(5,), use_pool=(True,), use_batch_norm=(True,))


def test_phi_full_trains_with_fit():
    splits = data.load_splits("synthetic", train_size=256, val_size=64, test_size=64)
    x = splits.norm(splits.train.images)
    d = build_dictionary(x, 5, 2000, 32, "pca", seed=0, n_iter=5)
    torch.manual_seed(0)
    net = LocallyLinearNetwork(PatchEmbedding.from_dictionary(d, 8, "full"), (1, 16, 16))
    cfg = train.TrainConfig(epochs=4, batch_size=32, lr=0.01, schedule="constant")
    res = train.fit(net, splits, cfg, train.Classification(pad=0, flip=False), progress=False)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]


def test_layerwise_two_layers():
    x = torch.randn(40, 1, 16, 16)
    seen = []

    def train_fn(model):
        seen.append(model(x[:3]).shape)
        return len(seen)

    out = train_layerwise(x, train_fn, depth=2, kernel_sizes=(5, 3), ks=(8, 4), n_centroids=(16, 8),
                          n_patches=(500, 300), n_iter=3)
    assert [r for _, r in out] == [1, 2] and seen == [(3, 10), (3, 10)]
    frozen = [p.requires_grad for p in out[1][0].prefix.parameters()]
    assert frozen and not any(frozen)
    cnn = train_layerwise(x, lambda m: None, depth=2, kernel_sizes=(5, 3), n_centroids=(8, 8), vanilla=True)
    assert cnn[1][0](x[:2]).shape == (2, 10)


def test_one_resnet18_for_ssl_and_vision():
    """patchnb.models.ResNet18 is the backbone of the SSL methods and of the shape-bias `resnet`, with
    PyTorch's default initialisation (convolutions in U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN at 1 / 0)."""
    from patchnb import ssl
    from patchnb.models import ResNet18
    from patchnb.models.vision import ResNet, make_vision_model

    assert ssl.ResNet18 is ResNet18
    torch.manual_seed(0)
    net = ResNet18(in_channels=3, width=4)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 32) and net.out_dim == 32
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            bound = 1 / (m.weight[0].numel() ** 0.5)
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.5 * bound
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
    vision = make_vision_model("resnet", 1, 10, 16, width=4)
    assert isinstance(vision, ResNet) and isinstance(vision.backbone, ResNet18)
    assert vision(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    torch.manual_seed(1)
    a = ResNet(1, 10, 16, 4)
    torch.manual_seed(1)
    b = ResNet18(1, 4)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.backbone.state_dict().items())  # seed fixes the weights
    with pytest.raises(ValueError, match="width"):
        ResNet18(1, 0)
    with pytest.raises(ValueError, match="blocks"):
        ResNet18(1, 4, blocks=(2, 0))

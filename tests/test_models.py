"""Shapes, bad inputs and trainability of the patch networks (Brutzkus et al. 2022)."""

import pytest
import torch

from patchnb import data, train
from patchnb.embedding import PatchEmbedding, build_dictionary
from patchnb.models import LocallyLinearNetwork, VGGLike, train_layerwise, vanilla_cnn
from patchnb.models.patch import patch_layer, seeded_init
from patchnb.models.simple import SimpleNetwork, simple_parameters


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


def _simple(n=8, k=3, p=3, shape=(2, 7, 7), classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = shape[0] * p * p
    emb = PatchEmbedding(torch.randn(n, d, generator=g), torch.eye(d), p, shape[0], k, "hard")
    with seeded_init(seed):
        return SimpleNetwork(emb, shape, classes)


def test_simple_network_is_one_linear_layer_over_the_full_embedding():
    """Table 2's Simple model (original ``--full_embedding True``): its logits and weight gradients are
    those of one linear layer over the flattened (B, N*D, H', W') embedding, computed here directly
    (materialised, the original's order), also in the chunked evaluation path."""
    net = _simple()
    x = torch.randn(5, 2, 7, 7)
    full = net.full_embedding(x)
    assert full.shape == (5, 8 * 18, 5, 5)
    mask = net.embedding.mask(x)  # block q of a position is its patch where q is a neighbour, else 0
    patch = torch.nn.functional.unfold(x, 3).view(5, 18, 5, 5)
    assert torch.equal(full.view(5, 8, 18, 5, 5), mask[:, :, None] * patch[:, None])
    ref = full.flatten(1) @ net.linear_weight().T + net.bias
    ref.square().sum().backward()
    g_ref = net.weight.grad.clone()
    net.weight.grad = None
    out = net(x)
    out.square().sum().backward()
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(net.weight.grad, g_ref, atol=1e-4)
    net.CHUNK_FLOATS = 1  # one image per chunk without gradients
    with torch.no_grad():
        assert torch.allclose(net(x), ref, atol=1e-5)


def test_simple_network_size_and_init():
    """N*D*H'*W'*classes + classes parameters, as the docstring states for the cpu and paper presets,
    initialised as nn.Linear over the whole embedding (uniform in +-1/sqrt(features))."""
    cpu = patch_layer(PatchEmbedding.from_dictionary(_dict(n=64), 16, "hard"), (1, 28, 28), 10, simple=True,
                      use_pool=False, use_batch_norm=False, use_bottleneck=False)
    assert isinstance(cpu, SimpleNetwork) and sum(p.numel() for p in cpu.parameters()) == 64 * 25 * 24 * 24 * 10 + 10
    assert sum(p.numel() for p in cpu.parameters()) == 9_216_010
    bound = 1 / (64 * 25 * 24 * 24) ** 0.5
    assert cpu.weight.abs().max() <= bound and cpu.weight.abs().max() > 0.99 * bound
    emb, emb3 = (PatchEmbedding.from_dictionary(_dict(c=c, n=256), 64, "hard") for c in (1, 3))
    with torch.device("meta"):  # Table 2's cpu and paper presets (N = 256) without allocating them
        cpu256, paper = SimpleNetwork(emb, (1, 28, 28), 10), SimpleNetwork(emb3, (3, 32, 32), 10)
    assert sum(p.numel() for p in cpu256.parameters()) == 256 * 25 * 24 * 24 * 10 + 10 == 36_864_010
    assert sum(p.numel() for p in paper.parameters()) == 256 * 75 * 28 * 28 * 10 + 10 == 150_528_010
    assert [simple_parameters(*a) for a in (((1, 28, 28), 64), ((1, 28, 28), 256), ((3, 32, 32), 256))] == [
        9_216_010, 36_864_010, 150_528_010]
    # the factorised variant (a 1x1 conv N*D -> N, then the head) is a different, smaller-rank model
    fact = LocallyLinearNetwork(PatchEmbedding.from_dictionary(_dict(n=64), 16, "simple"), (1, 28, 28), 10,
                                use_pool=False, use_batch_norm=False, use_bottleneck=False)
    assert sum(p.numel() for p in fact.parameters()) == (64 * 25 * 64 + 64) + (64 * 24 * 24 * 10 + 10)


def test_simple_network_bad_options():
    with pytest.raises(ValueError, match="mode 'hard'"):
        SimpleNetwork(PatchEmbedding.from_dictionary(_dict(), 4, "full"), (1, 16, 16))
    with pytest.raises(ValueError, match="use_pool"):
        patch_layer(PatchEmbedding.from_dictionary(_dict(), 4, "hard"), (1, 16, 16), simple=True)
    with pytest.raises(ValueError, match="depth=2"):
        train_layerwise(torch.randn(8, 1, 16, 16), lambda m: None, depth=2, mode="simple", n_centroids=8, ks=(2, 2),
                        n_patches=100)
    with pytest.raises(ValueError, match="input must be"):
        _simple()(torch.randn(2, 1, 7, 7))
    with pytest.raises(ValueError, match="dictionary"):
        train_layerwise(torch.randn(8, 1, 16, 16), lambda m: None, depth=1, dictionary="uniform")


def test_layerwise_simple_and_dictionaries():
    """mode='simple' builds the SimpleNetwork at depth 1; dictionary='gaussian' (the original's random
    patches) and 'gaussian_centroids' (the earlier variant) both build a layer of N centroids."""
    x = torch.randn(40, 1, 12, 12)
    (net, _), = train_layerwise(x, lambda m: None, depth=1, kernel_sizes=(5,), ks=(4,), n_centroids=(16,),
                                n_patches=(500,), n_iter=3, mode="simple", use_pool=(False,),
                                use_batch_norm=(False,), use_bottleneck=False)
    assert isinstance(net, SimpleNetwork) and net(x[:3]).shape == (3, 10)
    for dictionary in ("gaussian", "gaussian_centroids"):
        out = train_layerwise(x, lambda m: None, depth=2, kernel_sizes=(5, 3), ks=(4, 2), n_centroids=(16, 8),
                              n_patches=(500, 300), n_iter=3, dictionary=dictionary)
        assert out[1][0](x[:2]).shape == (2, 10) and out[1][0].top.embedding.n == 8

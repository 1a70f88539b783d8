"""Hand-worked checks of the patch network of Brutzkus et al. (ICML 2022, Sec. 5): a forward of the head,
of the locally linear network and of Table 2's Simple model on tiny inputs, computed by hand; the
dictionary (``build_dictionary``: whitening + k-means of patches) on data whose clusters are known; and
Table 1's random-patch dictionary (whitened by the random patches' own covariance, as the original)."""

import pytest
import torch

from patchnb import patches
from patchnb.embedding import PatchEmbedding, build_dictionary
from patchnb.models.patch import Head, LocallyLinearNetwork, SimpleNetwork, make_dictionary, random_patch_dictionary


def _set(param: torch.nn.Parameter | torch.Tensor, values) -> None:
    with torch.no_grad():
        param.copy_(torch.tensor(values, dtype=torch.float32).view_as(param))


def test_head_forward_by_hand():
    """AvgPool(2, 2) -> BatchNorm (eval, eps 0) -> 1x1 bottleneck -> ReLU -> linear on one 2-channel 2x2 map.

    pool: channel means 4 and 0.5; BN: (4 - 1) / sqrt(4) * 1 + 0 = 1.5 and (0.5 - 0) / 1 * 2 + 1 = 2;
    bottleneck: 1.5 + 2 + 0.25 = 3.75 and -2 * 1.5 + 0.5 * 2 = -2, ReLU -> (3.75, 0);
    linear: (3.75, 0 + 1, 2 * 3.75 - 0 - 1) = (3.75, 1, 6.5)."""
    head = Head(2, (2, 2), n_classes=3, pool_size=2, pool_stride=2, bottleneck=2, relu_after_bottleneck=True)
    head.eval()
    head.bn.eps = 0.0
    _set(head.bn.running_mean, [1, 0])
    _set(head.bn.running_var, [4, 1])
    _set(head.bn.weight, [1, 2])
    _set(head.bn.bias, [0, 1])
    _set(head.bottleneck.weight, [[1, 1], [-2, 0.5]])
    _set(head.bottleneck.bias, [0.25, 0])
    _set(head.linear.weight, [[1, 0], [0, 1], [2, -1]])
    _set(head.linear.bias, [0, 1, -1])
    x = torch.tensor([[[[1, 3], [5, 7]], [[0, 1], [2, -1]]]], dtype=torch.float32)
    assert head(x)[0].tolist() == pytest.approx([3.75, 1.0, 6.5])
    assert head.features(x).flatten().tolist() == pytest.approx([3.75, 0.0])


# A 3x3 image, 2x2 patches (4 positions), a dictionary of two centroids with identity whitening, k = 1.
# Patches (row-major): (0,0) [1,1,1,1], (0,1) [1,0,1,0], (1,0) [1,1,0,0], (1,1) [1,0,0,0].
# Scores s_q = -<x, c_q> + |c_q|^2 / 2 with c_0 = [1,1,1,1] (|c|^2/2 = 2), c_1 = [1,0,0,0] (1/2):
# s_0 = -2, 0, 0, 1 and s_1 = -0.5 at every position, so the nearest centroid is c_0 at (0,0), c_1 elsewhere.
IMAGE = torch.tensor([[[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]], dtype=torch.float32)
CENTROIDS = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)


def _network(mode: str, use_pool: bool) -> LocallyLinearNetwork:
    emb = PatchEmbedding(CENTROIDS, torch.eye(4), patch_size=2, channels=1, k=1, mode=mode)
    net = LocallyLinearNetwork(emb, (1, 3, 3), n_classes=1, use_pool=use_pool, pool_size=2, pool_stride=2,
                               use_batch_norm=False, use_bottleneck=False)
    if mode == "full":  # the learnable map of Phi_full: the sum of the patch, for both centroids
        _set(net.embedding.conv.weight, torch.ones(2, 1, 2, 2).tolist())
        _set(net.embedding.conv.bias, [0, 0])
    n_features = 2 if use_pool else 8
    _set(net.head.linear.weight, [list(range(1, n_features + 1))])
    _set(net.head.linear.bias, [0.5])
    return net.eval()


def test_phi_hard_mask_and_forward_by_hand():
    """Phi_hard's mask: channel 0 = [[1,0],[0,0]], channel 1 = [[0,1],[1,1]]; the linear head (weights
    1..8 over the flattened (channel, row, col) features, bias 0.5): 1 + 6 + 7 + 8 + 0.5 = 22.5."""
    net = _network("hard", use_pool=False)
    assert net.embedding.mask(IMAGE)[0].tolist() == [[[1, 0], [0, 0]], [[0, 1], [1, 1]]]
    assert net(IMAGE).item() == pytest.approx(22.5)
    # with AvgPool(2, 2) over the 2x2 map: channel means 0.25, 0.75 -> 1 * 0.25 + 2 * 0.75 + 0.5 = 2.25
    assert _network("hard", use_pool=True)(IMAGE).item() == pytest.approx(2.25)


def test_phi_full_forward_by_hand():
    """Phi_full: the mask times the patch sums (4, 2, 2, 1): channel 0 = [[4,0],[0,0]], channel 1 =
    [[0,2],[2,1]]; linear: 4 * 1 + 2 * 6 + 2 * 7 + 1 * 8 + 0.5 = 38.5; pooled: (1, 1.25) -> 1 + 2.5 + 0.5 = 4."""
    with torch.no_grad():
        assert _network("full", use_pool=False)(IMAGE).item() == pytest.approx(38.5)
        assert _network("full", use_pool=True)(IMAGE).item() == pytest.approx(4.0)


def _clustered(centers: torch.Tensor, n: int, noise: float = 0.05) -> torch.Tensor:
    """``n`` 1-channel 2x2 images (one 2x2 patch each) around ``centers`` (rows of 4 pixels), in turn."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % len(centers)
    return (centers[labels] + noise * torch.randn(n, 4, generator=g)).view(n, 1, 2, 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dictionary_recovers_known_clusters(seed):
    """Without whitening, k-means of the patches of images drawn around two centres finds the centres
    (to about the noise over sqrt(100 images per cluster), whatever the random initial points)."""
    centers = torch.tensor([[3.0, 1, 0, 0], [0, 0, 2, 3]])
    d = build_dictionary(_clustered(centers, 200), 2, 200, 2, "none", seed=seed)
    assert d["centroids"].shape == (2, 4) and torch.equal(d["whitening"], torch.eye(4))
    assert (d["patch_size"], d["channels"]) == (2, 1)
    nearest = torch.cdist(centers, d["centroids"])
    assert sorted(nearest.argmin(1).tolist()) == [0, 1]  # one centroid per cluster
    assert nearest.min(1).values.max() < 0.05


def test_whitened_dictionary_recovers_whitened_clusters():
    """With PCA whitening W, the whitened patches have identity covariance, ``mean`` is the patch mean and
    the centroids are the whitened centres: un-whitened (c W^-1) they are the three centres."""
    centers = torch.tensor([[4.0, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 4]])
    images = _clustered(centers, 300)
    d = build_dictionary(images, 2, 300, 3, "pca", seed=0)
    patches = images.view(300, 4)
    assert d["mean"].tolist() == pytest.approx(patches.mean(0).tolist(), abs=1e-5)
    assert torch.allclose(torch.cov((patches @ d["whitening"]).T), torch.eye(4), atol=0.06)
    nearest = torch.cdist(centers, d["centroids"] @ torch.linalg.inv(d["whitening"]))
    assert sorted(nearest.argmin(1).tolist()) == [0, 1, 2]
    assert nearest.min(1).values.max() < 0.05


def test_simple_network_forward_by_hand():
    """Table 2's Simple model (the original's ``--full_embedding True``): the full embedding of IMAGE is
    2 blocks x 4 patch values x 2x2 positions = 32 features, block 0 holding the patch [1,1,1,1] at (0,0)
    only (its nearest centroid is c_0) and block 1 the patches [1,0,1,0], [1,1,0,0], [1,0,0,0] at (0,1),
    (1,0), (1,1); ONE linear layer over the 32 features: 2*4*2*2*1 + 1 = 33 parameters. With weights
    1..32 in the (block, value, row, col) order and bias 0.5: block 0 adds weights 1, 5, 9, 13 (= 28),
    block 1 weights 18 + 26 (= 44), 19 + 23 (= 42) and 20: 28 + 44 + 42 + 20 + 0.5 = 134.5."""
    emb = PatchEmbedding(CENTROIDS, torch.eye(4), patch_size=2, channels=1, k=1, mode="hard")
    net = SimpleNetwork(emb, (1, 3, 3), n_classes=1)
    assert sum(p.numel() for p in net.parameters()) == 2 * 4 * 2 * 2 * 1 + 1
    full = torch.zeros(2, 4, 2, 2)  # (block q, patch value d, row, col)
    full[0, :, 0, 0] = torch.tensor([1.0, 1, 1, 1])
    full[1, :, 0, 1] = torch.tensor([1.0, 0, 1, 0])
    full[1, :, 1, 0] = torch.tensor([1.0, 1, 0, 0])
    full[1, :, 1, 1] = torch.tensor([1.0, 0, 0, 0])
    assert torch.equal(net.full_embedding(IMAGE)[0], full.view(8, 2, 2))
    with torch.no_grad():  # the original's nn.Linear weight (1, 32) in its flatten order, written through our layout
        net.weight.copy_(torch.arange(1.0, 33).view(1, 2, 4, 4).permute(3, 1, 0, 2))
        net.bias.fill_(0.5)
        assert net.linear_weight()[0].tolist() == list(range(1, 33))
        assert net(IMAGE).item() == pytest.approx(134.5)
        assert net(IMAGE.repeat(3, 1, 1, 1)).flatten().tolist() == pytest.approx([134.5] * 3)


def test_random_patch_dictionary_whitens_by_its_own_patches():
    """Table 1's random patches as the original (``--random_gaussian_patches True``): gaussian patches
    whitened with THEIR covariance. Four 2-value patches with n_patches = n_centroids are used as they
    are (no k-means, as the original), so the centroids are the whitened patches; W is the PCA whitening
    of the patches' own covariance (centred, / n) by hand, U diag(1 / (sqrt(lambda) + eps)), so the
    centroids' covariance is diag(lambda / (sqrt(lambda) + eps)^2), the identity but for eps. The images
    play no part: two data sets give one dictionary."""
    d = random_patch_dictionary(channels=2, patch_size=1, n_patches=4, n_centroids=4, seed=3, eps=1e-3)
    pts = patches.gaussian_patches(4, 2, 1, seed=3).flatten(1).double()
    centred = pts - pts.mean(0)
    lam, u = torch.linalg.eigh(centred.T @ centred / 4)
    w = u / (lam.sqrt() + 1e-3)
    assert torch.allclose(d["whitening"].double().abs(), w.abs(), atol=1e-5)  # eigenvector signs are free
    assert torch.allclose(d["centroids"].double(), pts @ d["whitening"].double(), atol=1e-5)
    c = d["centroids"].double()
    cov = (c - c.mean(0)).T @ (c - c.mean(0)) / 4
    assert torch.allclose(cov, torch.diag(lam / (lam.sqrt() + 1e-3) ** 2), atol=1e-5)
    assert torch.allclose(d["mean"].double(), pts.mean(0), atol=1e-6)
    a = make_dictionary(torch.randn(5, 2, 4, 4), 1, 4, 4, "gaussian", seed=3)
    b = make_dictionary(10 * torch.rand(7, 2, 6, 6), 1, 4, 4, "gaussian", seed=3)
    assert all(torch.equal(a[key], b[key]) for key in ("centroids", "whitening"))
    assert torch.equal(a["centroids"], d["centroids"])

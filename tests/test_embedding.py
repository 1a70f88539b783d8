"""knn_mask / knn_pool against a stable-sort reference (ties included), and the distance conv."""

import pytest
import torch
import torch.nn.functional as F

from patchnb import embedding
from patchnb.embedding import PatchEmbedding, knn_mask, knn_mask_reference, knn_pool


def reference(scores, k):  # independent of the package: rank by a stable sort, keep ranks < k
    b, n, h, w = scores.shape
    rows = scores.permute(0, 2, 3, 1).reshape(-1, n).tolist()
    out = torch.zeros(len(rows), n)
    for r, row in enumerate(rows):
        for j in sorted(range(n), key=lambda q: (row[q], q))[:k]:
            out[r, j] = 1
    return out.view(b, h, w, n).permute(0, 3, 1, 2)


@pytest.fixture(params=["c", "torch"])
def backend(request, monkeypatch):
    if request.param == "c" and embedding.kernel_backend() != "c":
        pytest.skip("no C compiler")
    monkeypatch.setenv("PATCHNB_KNN_BACKEND", request.param)
    return request.param


@pytest.mark.parametrize("k", [1, 3, 20, 37])
def test_knn_mask_ties(backend, k):
    g = torch.Generator().manual_seed(k)
    s = torch.randint(0, 4, (2, 37, 5, 6), generator=g).float()  # many ties
    ref = reference(s, k)
    assert torch.equal(knn_mask_reference(s, k), ref)
    for x in (s, s.contiguous(memory_format=torch.channels_last), s.transpose(2, 3)):
        m = knn_mask(x, k)
        assert m.dtype == torch.float32 and m.shape == x.shape
        assert torch.equal(m, reference(x, k))
        assert (m.sum(1) == k).all()


def test_knn_mask_continuous_and_inf(backend):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 300, 4, 3, generator=g)
    s[0, :5, 0, 0] = float("inf")
    s[1, 7:200, 1, 1] = -float("inf")
    for k in (1, 64, 150, 299, 300):
        assert torch.equal(knn_mask(s, k), knn_mask_reference(s, k))


@pytest.mark.parametrize("size,stride,ceil", [(4, 4, True), (3, 2, True), (2, 3, False), (5, 5, True)])
def test_knn_pool_equals_mask_then_pool(backend, size, stride, ceil):
    g = torch.Generator().manual_seed(size)
    s = torch.randint(0, 6, (3, 50, 9, 7), generator=g).float().contiguous(memory_format=torch.channels_last)
    out = knn_pool(s, 13, size, stride, ceil)
    assert torch.equal(out, F.avg_pool2d(reference(s, 13), size, stride, ceil_mode=ceil))


def test_knn_mask_errors():
    s = torch.randn(1, 8, 3, 3)
    for k in (0, -1, 9, 2.0):
        with pytest.raises(ValueError, match="k="):
            knn_mask(s, k)
    with pytest.raises(ValueError, match="4-D"):
        knn_mask(torch.randn(8, 3, 3), 2)
    bad = s.clone()
    bad[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        knn_mask(bad, 2)


def _embedding(mode="hard", c=2, p=3, n=40, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = c * p * p
    w = torch.randn(d, d, generator=g) / d ** 0.5
    return PatchEmbedding(torch.randn(n, d, generator=g), w, p, c, k, mode), w


def test_scores_rank_like_whitened_distances():
    emb, w = _embedding()
    x = torch.randn(2, 2, 6, 7)
    s = emb.scores(x)
    assert torch.allclose(s, F.conv2d(x, emb.kernel, emb.bias), atol=1e-4)
    patches = F.unfold(x, 3).transpose(1, 2)  # (B, L, D)
    c = -(emb.kernel.flatten(1))  # W c_q as rows -> recover c from W
    cent = torch.linalg.solve(w, c.T).T  # (N, D): W c_q = kernel row
    d2 = ((patches @ w)[:, :, None, :] - cent[None, None]).pow(2).sum(-1)  # (B, L, N)
    d2 = d2.transpose(1, 2).reshape(s.shape)
    const = (s - 0.5 * d2)  # constant over q at each position
    assert torch.allclose(const, const[:, :1].expand_as(const), atol=1e-3)
    assert torch.equal(s.argsort(1), d2.argsort(1))


@pytest.mark.parametrize("mode,channels", [("hard", 40), ("full", 40), ("simple", 40), ("triangle", 40), ("kth", 40)])
def test_modes_shapes(mode, channels):
    emb, _ = _embedding(mode)
    y = emb(torch.randn(2, 2, 8, 8))
    assert y.shape == (2, channels, 6, 6)
    if mode == "kth":
        assert (y.sum(1) == 1).all()


def test_hard_pooled_fused_equals_unfused():
    emb, _ = _embedding()
    emb.CHUNK_ROWS = 30  # several chunks
    x = torch.randn(5, 2, 11, 9)
    fused = emb(x, pool=(4, 4, True))
    assert torch.equal(fused, F.avg_pool2d(knn_mask(emb.scores(x), 7), 4, 4, ceil_mode=True))


def test_embedding_errors():
    with pytest.raises(ValueError, match="patch size or channel"):
        PatchEmbedding(torch.randn(10, 12), torch.eye(12), 3, 2, 2)
    with pytest.raises(ValueError, match="k="):
        PatchEmbedding(torch.randn(10, 18), torch.eye(18), 3, 2, 11)
    with pytest.raises(ValueError, match="mode"):
        PatchEmbedding(torch.randn(10, 18), torch.eye(18), 3, 2, 2, mode="soft")
    emb, _ = _embedding()
    with pytest.raises(ValueError, match="2-channel"):
        emb(torch.randn(1, 3, 8, 8))


def test_build_dictionary():
    x = torch.randn(20, 1, 10, 10)
    d = embedding.build_dictionary(x, 3, 500, 16, "pca", seed=0)
    assert d["centroids"].shape == (16, 9) and d["whitening"].shape == (9, 9)
    r = embedding.build_dictionary(x, 3, 500, 16, "zca", seed=0, random_gaussian=True)
    assert r["centroids"].shape == (16, 9)
    emb = PatchEmbedding.from_dictionary(d, 4)
    assert emb(x[:2]).sum(1).eq(4).all()


@pytest.mark.parametrize("channels,size,pool,chunk", [(1, 12, (4, 4, True), 60), (3, 11, (3, 2, True), 50),
                                                      (2, 9, None, 1000), (1, 14, (4, 4, True), 10 ** 6)])
def test_phi_full_fused_equals_autograd(backend, channels, size, pool, chunk):
    """The fused Phi_full (hand-written backward, bool mask, chunks) equals the plain autograd path
    avg_pool2d(mask * conv(x)) in values and in the gradients of x, the conv weight and bias."""
    from patchnb.embedding import phi_full_pooled

    torch.manual_seed(channels + size)
    d = channels * 9
    emb = PatchEmbedding(torch.randn(40, d), torch.eye(d), 3, channels, 7, mode="full")
    x = torch.randn(5, channels, size, size, requires_grad=True)
    out = phi_full_pooled(x, emb, pool, chunk_rows=chunk)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, emb.conv.weight, emb.conv.bias), g)
    ref = emb.mask(x) * emb.conv(x)
    if pool:
        ref = F.avg_pool2d(ref, pool[0], pool[1], ceil_mode=pool[2])
    want = torch.autograd.grad(ref, (x, emb.conv.weight, emb.conv.bias), g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    emb.fused = False  # the module switch: both paths through forward()
    plain = emb(x.detach(), pool=pool)
    emb.fused = True
    torch.testing.assert_close(emb(x.detach(), pool=pool), plain, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="mode 'full'"):
        phi_full_pooled(x, PatchEmbedding(torch.randn(40, d), torch.eye(d), 3, channels, 7), pool)


# ----------------------------------------------------------------------------- bit-packed mask, caches (issue 12)


def test_pack_bits_is_numpys_little_endian_packbits():
    import numpy as np

    g = torch.Generator().manual_seed(0)
    m = torch.rand(5, 37, generator=g) < 0.3
    bits = embedding.pack_bits(m)
    assert bits.dtype == torch.uint8 and bits.shape == (5, 5)
    assert np.array_equal(bits.numpy(), np.packbits(m.numpy(), axis=1, bitorder="little"))
    assert torch.equal(embedding.unpack_bits(bits, 37), m)


def test_knn_bits_is_the_mask(backend):
    emb, _ = _embedding(mode="full", n=48)
    emb.CHUNK_ROWS = 40  # several chunks
    x = torch.randn(3, 2, 7, 8)
    bits = embedding.knn_bits(emb, x)
    assert bits.shape == (3, 5 * 6, 6)
    mask = knn_mask(emb.scores(x), 7).permute(0, 2, 3, 1).reshape(-1, 48)
    assert torch.equal(embedding.unpack_bits(bits.reshape(-1, 6), 48), mask.bool())


@pytest.mark.parametrize("channels,size,pool,rg", [(1, 12, (4, 4, True), False), (3, 11, (3, 2, True), False),
                                                   (2, 9, None, False), (2, 10, (2, 3, False), False),
                                                   (1, 12, (4, 4, True), True)])
def test_phi_full_one_pass_equals_autograd(backend, channels, size, pool, rg):
    """N a multiple of 16: the C path fuses the conv into the masked pooling and its backward
    (conv_mask_pool_cl); values and gradients match the plain autograd path."""
    torch.manual_seed(channels + size)
    d = channels * 9
    emb = PatchEmbedding(torch.randn(48, d), torch.eye(d), 3, channels, 7, mode="full")
    x = torch.randn(5, channels, size, size, requires_grad=rg)
    params = (x, emb.conv.weight, emb.conv.bias) if rg else (emb.conv.weight, emb.conv.bias)
    out = embedding.phi_full_pooled(x, emb, pool, chunk_rows=50)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, params, g)
    ref = emb.mask(x) * emb.conv(x)
    if pool:
        ref = F.avg_pool2d(ref, pool[0], pool[1], ceil_mode=pool[2])
    want = torch.autograd.grad(ref, params, g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _step(net, x, y):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):  # the first step fills a cache, the second reads it
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("mode,n", [("hard", 40), ("hard", 48), ("full", 48), ("full", 40)])
def test_cached_model_equals_end_to_end(backend, mode, n):
    """A model whose embedding caches (Phi_hard pooled features as counts, the Phi_full mask as bits)
    gives exactly the end-to-end logits, and SGD steps from the cache exactly its parameters."""
    import copy

    from patchnb.models import LocallyLinearNetwork

    torch.manual_seed(n)
    emb, _ = _embedding(mode=mode, n=n)
    a = LocallyLinearNetwork(emb, (2, 11, 11), n_classes=3, bottleneck=4)
    b = copy.deepcopy(a)
    (cache,) = embedding.cache_embeddings(b)
    assert b.embedding.cache is cache and a.embedding.cache is None
    x, y = torch.randn(6, 2, 11, 11), torch.tensor([0, 1, 2, 0, 1, 2])
    _step(a, x, y)
    _step(b, x, y)
    assert cache.hits == 6 and cache.misses == 6 and cache.nbytes > 0
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        mixed = torch.cat([x[[4, 0]], torch.randn(3, 2, 11, 11)])  # hits in other places, and new images
        assert torch.equal(a(mixed), b(mixed))
    assert cache.hits == 14 and cache.misses == 9


def test_hard_cache_stores_counts():
    emb, _ = _embedding()
    cache = embedding.EmbeddingCache()
    emb.cache = cache
    x = torch.randn(4, 2, 10, 10)  # 8x8 positions, AvgPool(3, 3, ceil): windows of 9, 6 and 4
    first = emb(x, pool=(3, 3, True))
    again = emb(x, pool=(3, 3, True))
    assert torch.equal(first, again) and again.stride() == first.stride()
    memo = cache._memo
    assert memo.data.dtype == torch.uint8 and memo.n == 4 and cache.nbytes == 4 * 3 * 3 * 40
    # the counts of the k nearest per window, summed independently of the kernel
    counts = F.avg_pool2d(knn_mask(emb.scores(x), 7), 3, 3, ceil_mode=True, divisor_override=1)
    assert torch.equal(memo.data[:4].permute(0, 3, 1, 2).float(), counts)
    area = torch.tensor([3.0, 3.0, 2.0])  # rows/columns per window: 0-2, 3-5, 6-7
    assert torch.equal(first, counts / (area[:, None] * area[None, :]))


def test_cache_follows_the_dictionary_and_its_budget():
    emb, _ = _embedding(mode="full", n=48)
    emb.cache = embedding.EmbeddingCache()
    x = torch.randn(3, 2, 8, 8)
    with torch.no_grad():
        emb(x, pool=(2, 2, True))
        other = PatchEmbedding(torch.randn(48, 18), torch.eye(18), 3, 2, 7, mode="full")
        emb.load_state_dict(other.state_dict())  # a new dictionary (and conv): the cached masks are stale
        got = emb(x, pool=(2, 2, True))
        emb.k = 9
        got9 = emb(x, pool=(2, 2, True))
        emb.cache, emb.k = None, 7
        assert torch.equal(got, emb(x, pool=(2, 2, True)))
        emb.k = 9
        assert torch.equal(got9, emb(x, pool=(2, 2, True)))
    full = embedding.EmbeddingCache(max_bytes=0)  # nothing fits: computed as without a cache
    emb.cache = full
    with torch.no_grad():
        assert torch.equal(emb(x, pool=(2, 2, True)), got9)
    assert full.nbytes == 0 and full.misses == 3
    with pytest.raises(ValueError, match="max_bytes"):
        embedding.EmbeddingCache(max_bytes=-1)


# ----------------------------------------------------------------------------- FLOP counts (rooflines)


def test_flop_counts_hand_worked():
    """A 3x3 one-channel image, 2x2 patches, N = 2 centroids: L = 4 positions, D = 4 values per patch.
    Distances: 4 positions x 2 centroids x (4 multiply-adds = 8 FLOP + 1 bias) = 72. Phi_full with
    AvgPool(2, 2) on the 2x2 map (one cell holding the 4 positions): 72 (distances) + 72 (conv) + 4 x 2
    window additions + 1 x 2 divisions = 154; backward adds grad_W + grad_b (72) and the spread-back
    gradient (a division and an addition per position and centroid: 2 x 4 x 2 = 16): 242."""
    from patchnb.embedding import flops_distance, flops_head, flops_phi_full

    assert flops_distance(1, 3, 3, 2, 2) == 72
    assert flops_phi_full(1, 3, 3, 2, 2, pool=(2, 2)) == 154
    assert flops_phi_full(1, 3, 3, 2, 2, pool=(2, 2), backward=True) == 242
    assert flops_phi_full(1, 3, 3, 2, 2, pool=None) == 144  # no pooling: the two GEMMs and their biases
    # head on 2 x 1 x 1 pooled features, BatchNorm, bottleneck 4, 3 classes: BN 7 x 2 = 14, bottleneck
    # 2 x 2 x 4 + 4 = 20, linear 2 x 4 x 3 + 3 = 27 -> 61; backward: 8 x 2 + (4 x 2 x 4 + 4) + (4 x 4 x 3 + 3) = 103
    assert flops_head(2, 1, 1, 3, batch_norm=True, bottleneck=4) == 61
    assert flops_head(2, 1, 1, 3, batch_norm=True, bottleneck=4, backward=True) == 164
    assert flops_head(2, 1, 1, 3, batch_norm=False, bottleneck=None) == 2 * 2 * 3 + 3


def test_flop_counts_match_torch_counter_and_pool_windows():
    """The GEMM part of the distance count against torch's own FLOP counter on the same GEMM, and the
    (window, position) pairs of a clipped, overlapping pooling against avg_pool2d's window sums."""
    from torch.utils.flop_counter import FlopCounterMode

    from patchnb.embedding import flops_distance, flops_phi_full

    c, h, w, p, n = 3, 11, 9, 3, 20
    L, D = (h - p + 1) * (w - p + 1), c * p * p
    with FlopCounterMode(display=False) as counter:
        torch.mm(torch.randn(L, D), torch.randn(D, n))
    assert flops_distance(c, h, w, p, n) - L * n == counter.get_total_flops()
    ho, wo = h - p + 1, w - p + 1
    size, stride = 4, 3
    windows = F.avg_pool2d(torch.ones(1, 1, ho, wo), size, stride, ceil_mode=True, divisor_override=1)
    pairs, cells = int(windows.sum()), windows.numel()
    no_pool = flops_phi_full(c, h, w, p, n, pool=None)
    assert flops_phi_full(c, h, w, p, n, pool=(size, stride)) == no_pool + pairs * n + cells * n


@pytest.mark.parametrize("kw, name", [(dict(patch_size=0), "patch_size"), (dict(n_centroids=1.5), "n_centroids"),
                                      (dict(height=2), "patch_size")])
def test_flop_counts_bad_input(kw, name):
    from patchnb.embedding import flops_distance

    args = dict(channels=1, height=28, width=28, patch_size=5, n_centroids=256) | kw
    with pytest.raises(ValueError, match=name):
        flops_distance(**args)

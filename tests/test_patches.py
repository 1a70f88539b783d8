import numpy as np
import pytest
import torch
import torch.nn.functional as F

from patchnb import patches


def test_sample_patches_are_real_windows():
    x = torch.randn(4, 2, 9, 9)
    p = patches.sample_patches(x, 50, 3, seed=1)
    assert p.shape == (50, 2, 3, 3)
    windows = F.unfold(x, 3).transpose(1, 2).reshape(-1, 18)
    for row in p.flatten(1)[:10]:
        assert (windows - row).abs().sum(1).min() == 0
    assert torch.equal(p, patches.sample_patches(x, 50, 3, seed=1))  # seeded


def test_bad_patch_size_and_counts():
    x = torch.randn(2, 1, 6, 6)
    with pytest.raises(ValueError, match="patch size=7.*1..6"):
        patches.sample_patches(x, 10, 7)
    with pytest.raises(ValueError, match="n_patches must be positive"):
        patches.sample_patches(x, 0, 3)
    with pytest.raises(ValueError, match="too many"):
        patches.dictionary_patches(torch.zeros(2, 1, 6, 6), 10, 3)


def test_dictionary_patches_drop_low_norms():
    x = torch.zeros(10, 1, 8, 8)
    x[:5] = torch.randn(5, 1, 8, 8)
    p = patches.dictionary_patches(x, 100, 3, min_norm=0.01)
    assert len(p) == 100 and (p.flatten(1).norm(dim=1) >= 0.01).all()


def test_patch_moments_match_float64_reference():
    x = torch.randn(37, 3, 10, 10) * 2 + 5
    m, c = patches.patch_moments(x, 4, batch_size=8)
    p = F.unfold(x.double(), 4).transpose(1, 2).reshape(-1, 48)
    np.testing.assert_allclose(m.numpy(), p.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(c.numpy(), np.cov(p.numpy().T, bias=True), atol=1e-4)


def test_patch_moments_covariance_is_exactly_symmetric():
    # by construction, on any BLAS: the 9 x 9 float32 product p @ p.T was measured asymmetric by 6.8e-5 on an
    # AMD EPYC host (Fashion-MNIST, patch size 3), which a check meant for bad input rejected
    x = torch.rand(64, 1, 28, 28)
    for size in (3, 5):
        _, c = patches.patch_moments(x, size, batch_size=16)
        assert torch.equal(c, c.T)


def test_from_covariance_tells_rounding_from_bad_input():
    cov = torch.eye(9, dtype=torch.float64) + 0.1
    rounded = cov.clone()
    rounded[3, 0] *= 1 + 6.8e-5  # the measured float32 asymmetry: within float32's 9.8e-4, far beyond float64's
    assert patches.symmetry_tolerance(torch.float32) == 4 * 2 ** 12 * 2 ** -24  # 4 sqrt(2^24) u, u = 2^-24
    w = patches.Whitening.from_covariance(torch.zeros(9), rounded.float())
    sym = (rounded + rounded.T) / 2
    ref = patches.Whitening.from_covariance(torch.zeros(9), sym)
    assert torch.allclose(w.eigenvalues, ref.eigenvalues, rtol=1e-6)  # the symmetrised matrix is whitened
    with pytest.raises(ValueError, match=r"1\.82e-12 that float64 rounding"):
        patches.Whitening.from_covariance(torch.zeros(9), rounded)
    assert patches.symmetry_tolerance(torch.int64) == 0.0


def test_whitening_makes_identity_covariance():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(25, 25, generator=g)
    pts = torch.randn(20000, 25, generator=g) @ a
    mean, cov = pts.double().mean(0), torch.cov(pts.double().T, correction=0)
    for kind in ("pca", "zca"):
        w = patches.Whitening.from_covariance(mean, cov, kind, eps=1e-6)
        cw = torch.cov(w(pts).T.double())
        assert torch.allclose(cw, torch.eye(25, dtype=torch.float64), atol=1e-2)
    zca = patches.Whitening.from_covariance(mean, cov, "zca").matrix
    assert torch.allclose(zca, zca.T, atol=1e-4)  # ZCA = W U^T is symmetric
    with pytest.raises(ValueError, match="allowed values"):
        patches.Whitening.from_covariance(mean, cov, "bogus")


def test_pca_whitening_formula_with_eps():
    cov = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    w = patches.Whitening.from_covariance(torch.zeros(2), cov, "pca", eps=1e-3).matrix
    expected = torch.tensor([1 / (1 + 1e-3), 1 / (2 + 1e-3)])  # 1/(sqrt(lambda)+eps), eigenvalues ascending
    assert torch.allclose(w.abs().sum(0), expected, atol=1e-6)


def test_figure5_variants_and_unit_normalize():
    x = torch.randn(1000, 1, 5, 5)
    x[:30] = 0
    cov = torch.eye(25, dtype=torch.float64)
    v = patches.figure5_variants(x, patches.Whitening.from_covariance(torch.zeros(25), cov), seed=0)
    assert set(v) == set(patches.FIGURE5_VARIANTS) and all(t.shape == (1000, 25) for t in v.values())
    # shuffling permutes each patch's own values
    assert torch.allclose(v["shuffled"].sort(1).values, v["original"].sort(1).values)
    u, dropped = patches.unit_normalize(v["original"])
    assert dropped["zero_norm"] == 30 and torch.isfinite(u).all()
    assert torch.allclose(u.norm(dim=1), torch.ones(len(u)), atol=1e-5)


def test_gaussian_patches_as_the_original_draws_them():
    """ceil(1.01 n) standard gaussian patches, low norms dropped, the first n kept; seeded; no images."""
    p = patches.gaussian_patches(100, 3, 5, seed=4)
    g = torch.Generator().manual_seed(4)
    assert p.shape == (100, 3, 5, 5) and torch.equal(p, torch.randn(101, 3, 5, 5, generator=g)[:100])
    assert torch.equal(p, patches.gaussian_patches(100, 3, 5, seed=4))
    with pytest.raises(ValueError, match="channels"):
        patches.gaussian_patches(10, 0, 5)


def test_whitening_from_a_sample_of_patches_by_hand():
    """Patches (1, 0), (-1, 0), (0, 2), (0, -2) (as (n, C, p, p) = (4, 2, 1, 1)): mean 0, covariance
    (/ n) diag(1/2, 2); PCA whitening 1 / (sqrt(lambda) + eps) per eigenvector: 1/(sqrt(0.5)+eps) and
    1/(sqrt(2)+eps), eigenvalues ascending."""
    pts = torch.tensor([[1.0, 0], [-1, 0], [0, 2], [0, -2]]).view(4, 2, 1, 1)
    w = patches.Whitening.from_patches(pts, "pca", eps=1e-3)
    assert w.mean.tolist() == [0, 0] and w.eigenvalues.tolist() == pytest.approx([0.5, 2.0])
    expected = torch.tensor([1 / (0.5 ** 0.5 + 1e-3), 1 / (2 ** 0.5 + 1e-3)])
    assert torch.allclose(w.matrix.abs().max(0).values, expected, atol=1e-6)
    with pytest.raises(ValueError, match="patches"):
        patches.Whitening.from_patches(torch.tensor([1.0, 2.0]))


def test_unfold_is_f_unfold():
    x = torch.randn(3, 2, 9, 7)
    for size in (1, 3, 7):
        assert torch.equal(patches.unfold(x, size), F.unfold(x, size))

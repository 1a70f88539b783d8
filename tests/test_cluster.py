import pytest
import torch

from patchnb import cluster

BACKENDS = ["torch", "sklearn"] + (["faiss"] if cluster.have_faiss() else [])


def blobs(n=600, k=4, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 20
    labels = torch.arange(n) % k
    return centers[labels] + torch.randn(n, d, generator=g) * 0.1, labels


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_backends_agree_on_blobs(backend):
    x, labels = blobs()
    r = cluster.kmeans(x, 4, n_iter=20, seed=0, backend=backend)
    assert r.centroids.shape == (4, 3) and r.assignments.shape == (600,) and r.distances.shape == (600,)
    # assignments, distances and centroids are consistent with each other, in input order
    d = (x - r.centroids[r.assignments]).norm(dim=1)
    assert torch.allclose(d, r.distances, atol=1e-3)
    # the blobs are recovered (one cluster per blob), unless a random init merged two
    pairs = set(zip(labels.tolist(), r.assignments.tolist()))
    assert len(pairs) == 4 or r.inertia > 1000


def test_bad_k_and_points():
    x, _ = blobs(n=10)
    with pytest.raises(ValueError, match="k=11 must be between 1 and the number of points"):
        cluster.kmeans(x, 11)
    with pytest.raises(ValueError, match="NaN"):
        cluster.kmeans(torch.full((5, 2), float("nan")), 2)
    with pytest.raises(ValueError, match="backend='x'"):
        cluster.kmeans(x, 2, backend="x")


def test_farthest_point_is_greedy():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0], [10.0, 1.0]])
    assert cluster.farthest_point(x, 3).tolist() == [0, 4, 3]  # farthest from 0 is (10,1); then (5,0)


def test_intrinsic_dimension_of_a_line_and_a_plane():
    g = torch.Generator().manual_seed(0)
    line = torch.rand(20000, 1, generator=g) @ torch.randn(1, 8, generator=g)
    plane = torch.rand(20000, 2, generator=g) @ torch.randn(2, 8, generator=g)
    ks = [8, 16, 32, 64]
    d1 = cluster.dimension_from_curve(cluster.intrinsic_dimension_curve(line, ks, seed=0, backend="torch"))
    d2 = cluster.dimension_from_curve(cluster.intrinsic_dimension_curve(plane, ks, seed=0, backend="torch"))
    assert 0.7 < d1 < 1.4 and 1.5 < d2 < 2.8

"""Dictionaries of patches: k-means (faiss, torch or sklearn behind one interface), the paper's
greedy farthest-point "Clustering" (Algorithm 1), and intrinsic-dimension curves (Figure 5).

Brutzkus et al., ICML 2022: Algorithm 1 selects N patches greedily, each the farthest from those
already chosen; the paper's code uses k-means instead. Both are offered here so they can be compared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_choice, check_int
from .distributed import resolve_device

BACKENDS = ("auto", "faiss", "torch", "sklearn")


@dataclass
class KMeansResult:
    """Centroids ``(k, D)``, each point's nearest centroid and Euclidean distance to it, in input order."""

    centroids: torch.Tensor
    assignments: torch.Tensor
    distances: torch.Tensor
    backend: str
    seconds: float

    @property
    def inertia(self) -> float:
        """Sum of squared distances to the nearest centroid (k-means' objective)."""
        return float((self.distances.double() ** 2).sum())


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _check(x: torch.Tensor, k: int, name: str = "k") -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"points must be a 2-D (n, D) array, got shape {tuple(x.shape)}")
    check_int(name, k)
    if not 1 <= k <= len(x):
        raise ValueError(f"{name}={k} must be between 1 and the number of points ({len(x)})")
    if not torch.isfinite(x).all():
        raise ValueError("points contain NaN or inf (e.g. unit-normalised zero patches); drop them first")
    return x.float().contiguous()


@torch.no_grad()
def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and Euclidean distance to the nearest centroid for each row of ``x`` (chunked).

    The nearest index comes from the expanded form ``||c||^2 - 2 <x, c>`` (one GEMM); the distance
    is then recomputed directly, since the expansion loses precision when ||x|| >> distance."""
    c = centroids.to(x.device, torch.float32)
    cn = (c * c).sum(1)
    idx, dist = [], []
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        j = (cn - 2 * xb @ c.T).argmin(1)  # ||x||^2 is constant per row
        idx.append(j)
        dist.append((xb - c[j]).norm(dim=1))  # exact, no cancellation of the expanded form
    return torch.cat(idx), torch.cat(dist)


def kmeans(x: torch.Tensor, k: int, n_iter: int = 20, seed: int = 0, backend: str = "auto",
           device: str | torch.device = "cpu", verbose: bool = False) -> KMeansResult:
    """Lloyd's k-means with ``n_iter`` iterations from ``k`` randomly chosen points.

    ``backend``: ``faiss`` (CPU, or GPU when ``device`` is cuda and faiss has GPUs), ``torch``
    (any device), ``sklearn`` (``init='random'``, one run, for parity with faiss), or ``auto``
    (faiss if installed and the device is the CPU, else torch). Every backend returns its
    assignments and distances recomputed exactly against the final centroids, so results compare.
    """
    check_choice("backend", backend, BACKENDS)
    check_int("n_iter", n_iter, 1)
    check_int("seed", seed)
    x = _check(x, k)
    device = resolve_device(device)  # a device that exists, else a ValueError saying what to use
    if backend == "auto":
        backend = "faiss" if have_faiss() and device.type == "cpu" else "torch"
    t0 = time.perf_counter()
    if backend == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=seed, verbose=verbose,
                          max_points_per_centroid=max(256, len(x) // k + 1),
                          gpu=device.type == "cuda" and faiss.get_num_gpus() > 0)
        km.train(x.numpy())
        centroids = torch.from_numpy(km.centroids.copy())
    elif backend == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(k, init="random", n_init=1, max_iter=n_iter, tol=0.0, random_state=seed,
                    algorithm="lloyd", verbose=int(verbose)).fit(x.numpy())
        centroids = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    else:
        centroids = _torch_kmeans(x.to(device), k, n_iter, seed)
    idx, dist = nearest(x.to(device), centroids.to(device))
    seconds = time.perf_counter() - t0
    return KMeansResult(centroids.cpu(), idx.cpu(), dist.cpu(), backend, seconds)


def _torch_kmeans(x: torch.Tensor, k: int, n_iter: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = x[torch.randperm(len(x), generator=g)[:k].to(x.device)].clone()
    for _ in range(n_iter):
        idx, _ = nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # re-seed empty clusters on random points, as faiss does by splitting
            c[empty] = x[torch.randint(0, len(x), (int(empty.sum()),), generator=g).to(x.device)]
    return c


@torch.no_grad()
def farthest_point(x: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Algorithm 1 of the paper ("Clustering"): greedy farthest-point selection of ``n`` rows.

    Starts at row ``start``, then repeatedly adds the point whose distance to the chosen set is
    largest. Returns the indices of the chosen rows, in order of selection.
    """
    x = _check(x, n, "n")
    check_int("start", start)
    if not 0 <= start < len(x):
        raise ValueError(f"start={start} must index a point: 0 <= start < {len(x)} (the number of points)")
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = start
    d = ((x - x[start]) ** 2).sum(1)
    for i in range(1, n):
        j = int(d.argmax())
        chosen[i] = j
        d = torch.minimum(d, ((x - x[j]) ** 2).sum(1))
    return chosen


def intrinsic_dimension_curve(x: torch.Tensor, ks=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                              n_iter: int = 20, seed: int = 0, backend: str = "auto",
                              progress: bool = False) -> dict[int, float]:
    """Mean Euclidean distance from each point to the nearest of k k-means centroids, per k.

    Figure 5 of the paper (its code averaged the faiss *indices* by mistake; this averages the
    distances). For points of intrinsic dimension d the distortion decays as k^(-1/d).
    """
    from tqdm.auto import tqdm

    ks = list(ks)
    if not ks:
        raise ValueError("ks must list at least one number of centroids, got none")
    for k in ks:
        check_int("ks", k, 1)
    out = {}
    for k in tqdm(ks, desc="k-means per k", disable=not progress):
        out[int(k)] = float(kmeans(x, int(k), n_iter=n_iter, seed=seed, backend=backend).distances.mean())
    return out


def dimension_from_curve(curve: dict[int, float]) -> float:
    """Intrinsic dimension d from a curve mean_distance(k) ~ k^(-1/d): d = -1 / slope (log-log fit)."""
    ks = np.array(sorted(curve), dtype=float)
    if len(ks) < 2:
        raise ValueError("need the curve at two or more k to fit a slope")
    ys = np.array([curve[int(k)] for k in ks])
    slope = np.polyfit(np.log(ks), np.log(ys), 1)[0]
    return float(-1.0 / slope) if slope < 0 else float("inf")

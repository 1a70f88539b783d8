"""Patches of images: seeded sampling, norm filtering, gaussian random patches (Table 1's ablation),
streamed moments and PCA/ZCA whitening (from all patches' moments or from a sample's own covariance).

Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features", ICML 2022, Sec. 5 and
App. C.4. All functions work on images already in the normalisation the model sees.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .checks import check_choice, check_finite, check_float, check_int

WHITENINGS = ("none", "pca", "zca")


def _check_size(images: torch.Tensor, size: int) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be (N, C, H, W), got shape {shape}")
    check_int("size", size)
    h, w = images.shape[-2:]
    if not 1 <= size <= min(h, w):
        raise ValueError(f"patch size={size} does not fit images of {h}x{w}; allowed: 1..{min(h, w)}")


def unfold(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.unfold(x, size)`` (stride 1, no padding), (B, C*size*size, L), the same values in the same
    order, copied from a strided view: im2col's threads are ~100x slower on a busy 2-core CPU here."""
    b, c = x.shape[:2]
    v = x.unfold(2, size, 1).unfold(3, size, 1)  # (B, C, H', W', size, size)
    return v.permute(0, 1, 4, 5, 2, 3).reshape(b, c * size * size, -1)


def sample_patches(images: torch.Tensor, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` patches of ``size x size`` drawn uniformly over images and positions (stride 1, no padding).

    Returns ``(n, C, size, size)`` in the dtype of ``images``. Seeded and deterministic.
    """
    _check_size(images, size)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_patches must be positive, got n={n!r} (an integer >= 1)")
    check_int("seed", seed)
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = images.shape
    img = torch.randint(0, b, (n,), generator=g)
    y = torch.randint(0, h - size + 1, (n,), generator=g)
    x = torch.randint(0, w - size + 1, (n,), generator=g)
    r = torch.arange(size)
    return images[img[:, None, None, None], torch.arange(c)[None, :, None, None],
                  (y[:, None] + r)[:, None, :, None], (x[:, None] + r)[:, None, None, :]]


def drop_low_norm(patches: torch.Tensor, min_norm: float = 0.01) -> torch.Tensor:
    """Keep the rows of ``patches`` (n, ...) whose L2 norm is at least ``min_norm``."""
    norms = patches.flatten(1).norm(dim=1)
    return patches[norms >= min_norm]


def dictionary_patches(images: torch.Tensor, n: int, size: int, seed: int = 0,
                       min_norm: float = 0.01) -> torch.Tensor:
    """The paper's sampling for the dictionary: draw ~1.01 n, drop norms < ``min_norm``, keep n.

    When more than 1% of patches fall below ``min_norm`` (e.g. background in [0, 1] pixels), more
    rounds are drawn (new seeds) until n remain; an error if fewer than 1 in 1000 patches qualify.
    """
    check_int("n", n, 1)
    check_float("min_norm", min_norm, 0.0)
    kept, have, drawn, rounds = [], 0, 0, 0
    while have < n and drawn <= 1000 * n:
        rate = have / drawn if drawn else 1.0  # the first round draws 1.01 n, as the paper's code
        m = math.ceil(1.01 * (n - have) / max(rate, 1e-3))
        new = drop_low_norm(sample_patches(images, m, size, seed + 7919 * rounds), min_norm)[: n - have]
        kept.append(new)
        have, drawn, rounds = have + len(new), drawn + m, rounds + 1
    if have < n:
        raise ValueError(f"only {have} of {drawn} sampled patches have norm >= {min_norm}; "
                         f"n_patches={n} is too many for these images (lower n_patches or min_norm)")
    return torch.cat(kept)


def gaussian_patches(n: int, channels: int, size: int, seed: int = 0, min_norm: float = 0.01) -> torch.Tensor:
    """The random patches of Table 1's ablation as the paper's code draws them (``sample_random_patches``
    with ``random_gaussian_patches=True``): ``ceil(1.01 n)`` standard gaussian patches ``N(0, I_D)`` in the
    pixel frame (no image is read), those of norm below ``min_norm`` dropped, the first ``n`` kept.

    Returns ``(n, channels, size, size)`` float32. Seeded (the paper's code is not)."""
    check_int("n", n, 1)
    check_int("channels", channels, 1)
    check_int("size", size, 1)
    check_int("seed", seed)
    check_float("min_norm", min_norm, 0.0)
    g = torch.Generator().manual_seed(seed)
    drawn = torch.randn(math.ceil(1.01 * n), channels, size, size, generator=g)
    kept = drop_low_norm(drawn, min_norm)[:n]
    if len(kept) < n:  # about never: a 1-d gaussian patch falls below 0.01 with probability 0.008
        raise ValueError(f"only {len(kept)} of {len(drawn)} gaussian patches have norm >= {min_norm}; lower min_norm")
    return kept


@torch.no_grad()
def patch_moments(images: torch.Tensor, size: int, batch_size: int = 128, transform=None,
                  progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of *all* ``size x size`` patches (stride 1).

    Streams over ``images`` in batches: one pass of sums and second moments of patches shifted by
    the first batch's channel means (for stability), each batch's product in float32 and the
    running totals in float64. ``transform`` maps
    a batch before patches are taken (e.g. uint8 -> normalised float, or a frozen earlier layer).
    """
    check_int("batch_size", batch_size, 1)
    _check_size(images if transform is None else transform(images[:1]), size)
    total, s1, s2, shift = 0, None, None, None
    for i in tqdm(range(0, len(images), batch_size), desc="patch moments", disable=not progress):
        x = images[i:i + batch_size]
        x = transform(x) if transform is not None else x.float()
        if shift is None:  # per-channel pixel mean of the first batch: centres patches for stability
            shift = x.mean((0, 2, 3), keepdim=True)
        u = unfold(x - shift, size)  # (B, D, L)
        p = u.transpose(0, 1).reshape(u.shape[1], -1)  # (D, B*L)
        if s1 is None:
            s1 = torch.zeros(len(p), dtype=torch.float64)
            s2 = torch.zeros(len(p), len(p), dtype=torch.float64)
        s1 += p.sum(1, dtype=torch.float64)
        g = (p @ p.T).double()  # float32 within a batch, float64 across batches
        s2 += (g + g.T) / 2  # a BLAS may round (i, j) and (j, i) differently: symmetric by construction
        total += p.shape[1]
    m = s1 / total
    cov = s2 / total - torch.outer(m, m)
    shift_patch = shift.double().flatten().repeat_interleave(size * size)
    return m + shift_patch, cov


SUM_TERMS = 2 ** 24  # more terms than any one product a covariance of this package sums


def symmetry_tolerance(dtype: torch.dtype, terms: int = SUM_TERMS) -> float:
    """The largest ``max|C - C^T| / max|C|`` that rounding can explain in a (D, D) Gram or covariance
    matrix ``C`` computed in ``dtype`` by sums of up to ``terms`` products: ``4 sqrt(n) u``, with ``u`` the
    unit roundoff of ``dtype`` (the probabilistic bound of Higham and Mary, "A New Approach to Probabilistic
    Rounding Error Analysis", SIAM J. Sci. Comput. 2019: ``sqrt(n) u`` with high probability, applied to
    ``C[i, j]`` and ``C[j, i]``, both bounded by ``max|C|`` by Cauchy-Schwarz, and doubled for margin).
    Exact (integer) dtypes get 0. float32: 9.8e-4, float64: 1.8e-12."""
    if dtype.is_floating_point:
        return 4.0 * math.sqrt(terms) * torch.finfo(dtype).eps / 2
    return 0.0


@dataclass
class Whitening:
    """PCA or ZCA whitening from a patch covariance (App. C.4; the eps placement of the paper's code).

    PCA: ``W = U diag(1 / (sqrt(lambda) + eps))``; ZCA: ``W U^T``. Whitened patches are
    ``x @ W`` (row vectors). As in the paper's code, patches are *not* centred before ``W``: the
    dictionary then lives in the same affine frame as the image patches the embedding compares.
    """

    mean: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    kind: str = "pca"
    eps: float = 1e-3

    def __post_init__(self) -> None:
        check_choice("whitening", self.kind, WHITENINGS)
        check_float("eps", self.eps, 0.0, strict_min=True)  # eps <= 0 divides by sqrt(0) for a flat direction
        d = len(self.eigenvalues)
        if self.eigenvectors.shape != (d, d) or self.mean.shape != (d,):
            raise ValueError(f"mean {tuple(self.mean.shape)}, eigenvalues {tuple(self.eigenvalues.shape)} and "
                             f"eigenvectors {tuple(self.eigenvectors.shape)} must be (D,), (D,) and (D, D)")
        for name in ("mean", "eigenvalues", "eigenvectors"):
            check_finite(name, getattr(self, name))

    @classmethod
    def from_covariance(cls, mean: torch.Tensor, cov: torch.Tensor, kind: str = "pca",
                        eps: float = 1e-3) -> Whitening:
        """The whitening of the (D, D) covariance ``cov`` of patches whose mean is ``mean`` (D,):
        ``cov`` must be square, finite and symmetric up to its dtype's rounding
        (:func:`symmetry_tolerance`); it is then symmetrised, so the result does not depend on which
        triangle a BLAS rounded differently."""
        check_choice("whitening", kind, WHITENINGS)
        check_float("eps", eps, 0.0, strict_min=True)
        cov, mean = torch.as_tensor(cov), torch.as_tensor(mean).double()
        dtype = str(cov.dtype).removeprefix("torch.")
        rtol = symmetry_tolerance(cov.dtype)
        cov = cov.double()
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError(f"cov must be a square (D, D) covariance, got shape {tuple(cov.shape)}")
        if mean.shape != (cov.shape[0],):
            raise ValueError(f"mean must be ({cov.shape[0]},) for a {tuple(cov.shape)} cov, got shape "
                             f"{tuple(mean.shape)}")
        check_finite("cov", cov)
        check_finite("mean", mean)
        scale = float(cov.abs().max()) if cov.numel() else 0.0
        asym = float((cov - cov.T).abs().max()) if cov.numel() else 0.0
        if asym > rtol * scale:
            raise ValueError(f"cov must be symmetric (a covariance), but max|cov - cov^T| = {asym:.3g} is "
                             f"{asym / scale:.3g} of max|cov|, above the {rtol:.3g} that {dtype} rounding of sums of "
                             f"up to {SUM_TERMS:,} terms can explain (4 sqrt(n) u); pass a covariance, e.g. from "
                             "patches.patch_moments")
        lam, u = torch.linalg.eigh((cov + cov.T) / 2)
        return cls(mean, lam.clamp_min(0), u, kind, eps)

    @classmethod
    def from_patches(cls, patches: torch.Tensor, kind: str = "pca", eps: float = 1e-3) -> Whitening:
        """The whitening of a *sample* of patches ``(n, D)`` or ``(n, C, p, p)``: their own mean and covariance
        (centred on the sample mean, divided by n; the paper's ``calc_covariance``). The paper's code
        whitens its random gaussian patches this way (Table 1), not with the data's covariance."""
        t = torch.as_tensor(patches)
        if t.ndim < 2 or len(t) < 1:
            raise ValueError(f"patches must be (n, D) or (n, C, p, p) with n >= 1, got shape {tuple(t.shape)}")
        x = t.flatten(1).double()
        check_finite("patches", x)
        mean = x.mean(0)
        centred = x - mean
        return cls.from_covariance(mean, centred.T @ centred / len(x), kind, eps)

    @property
    def matrix(self) -> torch.Tensor:
        """The (D, D) float32 matrix W applied on the right of row-vector patches."""
        d = len(self.eigenvalues)
        if self.kind == "none":
            return torch.eye(d)
        w = self.eigenvectors / (self.eigenvalues.sqrt() + self.eps)
        if self.kind == "zca":
            w = w @ self.eigenvectors.T
        return w.float()

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """Whiten ``(n, D)`` or ``(n, C, p, p)`` patches; returns ``(n, D)``."""
        return patches.flatten(1).float() @ self.matrix


FIGURE5_VARIANTS = ("original", "whitened", "shuffled", "whitened_shuffled", "gaussian")


def figure5_variants(patches: torch.Tensor, whitening: Whitening, seed: int = 0) -> dict[str, torch.Tensor]:
    """The five point sets of Figure 5 (Brutzkus et al. 2022), each ``(n, D)``.

    original; whitened (``patches @ W``, no centring, as in the paper's code); shuffled (each
    patch's own values permuted independently, which keeps its norm and value histogram but
    destroys spatial structure); whitened then shuffled; a standard gaussian of the same size.
    """
    g = torch.Generator().manual_seed(seed)
    x = patches.flatten(1).float()
    w = whitening(x)

    def shuffle(a: torch.Tensor) -> torch.Tensor:
        order = torch.rand(a.shape, generator=g).argsort(1)
        return a.gather(1, order)

    return {"original": x, "whitened": w, "shuffled": shuffle(x), "whitened_shuffled": shuffle(w),
            "gaussian": torch.randn(x.shape, generator=g)}


def unit_normalize(points: torch.Tensor, drop_fraction: float = 0.01) -> tuple[torch.Tensor, dict]:
    """Figure 5's preprocessing: drop zero-norm points (their direction is undefined; the paper's
    "lowest 1%" alone keeps them when more than 1% are zero, e.g. Fashion-MNIST background in
    [0, 1] pixels), then the lowest ``drop_fraction`` of norms, then scale rows to unit norm.
    Returns the points and the counts dropped."""
    check_float("drop_fraction", drop_fraction, 0.0, 1.0)
    norms = points.norm(dim=1)
    nonzero = norms > 0
    kept, kept_norms = points[nonzero], norms[nonzero]
    threshold = torch.quantile(kept_norms, drop_fraction) if len(kept) else 0.0
    low = kept_norms < threshold
    kept, kept_norms = kept[~low], kept_norms[~low]
    return kept / kept_norms[:, None], {"zero_norm": int((~nonzero).sum()), "low_norm": int(low.sum())}

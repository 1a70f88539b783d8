"""Per-image caches of the kNN patch embedding, for training without augmentation (issue 12, sec. 4).

Phi_hard has nothing to learn and the k-nearest mask of Phi_full depends only on the frozen
dictionary (Brutzkus et al., ICML 2022, Sec. 5), so without augmentation both are the same for an
image at every epoch. :class:`EmbeddingCache` keeps them per image, keyed by a 128-bit BLAKE2b hash
of the image's bytes (the float input the embedding sees, so any transform before it, e.g. a frozen
prefix, is covered), and computed on first sight in the batch the image first comes in:

* Phi_hard + AvgPool: the pooled features are ``count / area`` (``count`` of the window's positions
  where the centroid is among the k nearest, ``area`` the clipped window size), stored as uint8
  counts (int16 for windows over 255 positions); decoding divides by the same ``area`` in float32,
  the division the kernel does, so the values are the computed ones bit for bit (checked when
  stored: a value that does not decode exactly is not cached) and are laid out like them
  (channels-last on the C path), so the head gives exactly the end-to-end logits;
* Phi_full: the k-nearest mask, bit-packed (ceil(N / 8) bytes per position), which
  :func:`~patchnb.embedding.phi_full_pooled` then uses instead of distances + selection.

The cache is emptied when the dictionary buffers, ``k``, the pooling or the image shape change; it
stops growing at ``max_bytes`` (images beyond are computed, not stored). An image's entry is what
the model computed for it the first time; recomputing it in another batch gives the same values
as long as the distance GEMM of a row does not depend on the other rows of its chunk.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_int
from . import _load_lib, _threads, kernel_backend
from .fused import knn_bits

DEFAULT_MAX_BYTES = 2 * 1024 ** 3


def image_keys(x: torch.Tensor) -> list[bytes]:
    """A 128-bit BLAKE2b digest of each image's bytes (CPU tensor (B, ...))."""
    rows = x.detach().reshape(len(x), -1).contiguous().numpy()
    return [hashlib.blake2b(r, digest_size=16).digest() for r in rows]


class _Memo:
    """Rows of one shape and dtype keyed by image digests, in one growing tensor."""

    def __init__(self, row_shape: tuple, dtype: torch.dtype, max_bytes: int) -> None:
        self.row_shape, self.dtype = tuple(row_shape), dtype
        self.row_bytes = math.prod(row_shape) * torch.empty(0, dtype=dtype).element_size()
        self.max_rows = max_bytes // max(self.row_bytes, 1)
        self.index: dict[bytes, int] = {}
        self.data = torch.empty(0, *row_shape, dtype=dtype)
        self.n = 0

    def find(self, keys: list[bytes]) -> torch.Tensor:
        return torch.tensor([self.index.get(k, -1) for k in keys], dtype=torch.long)

    def fits(self, n: int) -> bool:
        return self.n + n <= self.max_rows

    def add(self, keys: list[bytes], rows: torch.Tensor) -> None:
        need = self.n + len(rows)
        if need > len(self.data):
            grown = torch.empty(min(max(need, 2 * len(self.data), 64), self.max_rows), *self.row_shape,
                                dtype=self.dtype)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:need] = rows
        for i, key in enumerate(keys):
            self.index[key] = self.n + i
        self.n = need


class EmbeddingCache:
    """The pooled Phi_hard features or the Phi_full bit-packed mask of each image seen (module
    docstring). Set on a :class:`~patchnb.embedding.PatchEmbedding` as ``embedding.cache`` (or with
    :func:`cache_embeddings`); CPU float32 inputs only (others are computed as usual). ``hits`` and
    ``misses`` count images."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        check_int("max_bytes", max_bytes, 0)
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._memo: _Memo | None = None
        self._tag = self._version = self._fingerprint = None
        self._channels_last, self._exact = True, True
        self._poolings: dict = {}

    @property
    def nbytes(self) -> int:
        return self._memo.n * self._memo.row_bytes if self._memo is not None else 0

    def _memo_for(self, emb, x: torch.Tensor, what: tuple, row_shape: tuple, dtype: torch.dtype) -> _Memo:
        version = (emb.kernel._version, emb.bias._version, emb.kernel.data_ptr(), emb.bias.data_ptr())
        if version != self._version:  # buffers replaced or written to: compare their contents
            data = emb.kernel.detach().cpu().contiguous().numpy().tobytes() + emb.bias.detach().cpu().numpy().tobytes()
            self._version, self._fingerprint = version, hashlib.blake2b(data, digest_size=16).digest()
        tag = (self._fingerprint, emb.k, emb.mode, tuple(x.shape[1:]), what)
        if tag != self._tag:
            self._tag, self._memo, self._exact = tag, _Memo(row_shape, dtype, self.max_bytes), True
        return self._memo

    def _lookup(self, memo: _Memo, x: torch.Tensor):
        keys = image_keys(x)
        idx = memo.find(keys)
        miss = (idx < 0).nonzero().flatten()
        self.misses += len(miss)
        self.hits += len(x) - len(miss)
        return keys, idx, miss

    def _pooling(self, ho: int, wo: int, pool: tuple) -> tuple:
        """(Hp, Wp, the clipped window sizes (Hp, Wp, 1), the dtype of the counts) of ``pool`` on Ho x Wo."""
        key = (ho, wo, pool)
        if key not in self._poolings:
            size, stride, ceil = pool
            area = F.avg_pool2d(torch.ones(1, 1, ho, wo), size, stride, ceil_mode=ceil, divisor_override=1)
            dtype = torch.uint8 if size * size <= 255 else torch.int16 if size * size <= 32767 else torch.int32
            self._poolings[key] = (*area.shape[2:], area[0, 0, :, :, None].contiguous(), dtype)
        return self._poolings[key]

    def hard_pooled(self, emb, x: torch.Tensor, pool: tuple[int, int, bool]) -> torch.Tensor:
        """``emb._hard_pooled(x, *pool)`` (Phi_hard then AvgPool), from the cache where it holds the image."""
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return emb._hard_pooled(x, *pool)
        emb._check_input(x)
        hp, wp, area, dtype = self._pooling(x.shape[2] - emb.patch_size + 1, x.shape[3] - emb.patch_size + 1, pool)
        memo = self._memo_for(emb, x, ("hard", pool), (hp, wp, emb.n), dtype)
        if not self._exact:
            return emb._hard_pooled(x, *pool)
        keys, idx, miss = self._lookup(memo, x)
        if len(miss):
            if not memo.fits(len(miss)):
                return emb._hard_pooled(x, *pool)
            v = emb._hard_pooled(x if len(miss) == len(x) else x[miss], *pool)
            rows = v.permute(0, 2, 3, 1)
            counts = torch.round(rows * area).to(dtype)
            if not torch.equal(counts / area, rows):  # not count / area bit for bit: do not cache
                self._exact = False
                return v if len(miss) == len(x) else emb._hard_pooled(x, *pool)
            self._channels_last = rows.is_contiguous()
            memo.add([keys[i] for i in miss.tolist()], counts)
            if len(miss) == len(x):
                return v
            idx = memo.find(keys)
        out = torch.empty(len(x), hp, wp, emb.n)
        if dtype == torch.uint8 and kernel_backend(out) == "c":  # gather + divide in one pass
            _load_lib().decode_counts_u8(memo.data.data_ptr(), idx.data_ptr(), len(x), hp * wp, emb.n,
                                         area.data_ptr(), out.data_ptr(), _threads())
        else:
            torch.div(memo.data[idx], area, out=out)
        out = out.permute(0, 3, 1, 2)
        return out if self._channels_last else out.contiguous()

    def mask_bits(self, emb, x: torch.Tensor) -> torch.Tensor | None:
        """The bit-packed k-nearest mask of ``x`` (B, H' W', ceil(N / 8)) for
        :func:`~patchnb.embedding.phi_full_pooled`, from the cache where it holds the image; ``None``
        (compute it as usual) for inputs it does not serve or when it is full."""
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return None
        emb._check_input(x)
        L = (x.shape[2] - emb.patch_size + 1) * (x.shape[3] - emb.patch_size + 1)
        memo = self._memo_for(emb, x, ("full",), (L, (emb.n + 7) // 8), torch.uint8)
        keys, idx, miss = self._lookup(memo, x)
        if len(miss):
            if not memo.fits(len(miss)):
                return None
            bits = knn_bits(emb, x if len(miss) == len(x) else x[miss])
            memo.add([keys[i] for i in miss.tolist()], bits)
            if len(miss) == len(x):
                return bits
            idx = memo.find(keys)
        return memo.data[idx]


def cache_embeddings(model: nn.Module, max_bytes: int = DEFAULT_MAX_BYTES) -> list:
    """Give every Phi_hard / Phi_full :class:`~patchnb.embedding.PatchEmbedding` in ``model`` (itself
    included) an :class:`EmbeddingCache` of ``max_bytes`` (one it already has is kept). Only for
    training without augmentation: with augmentation every image is new and the cache only costs
    memory and hashing. Returns the caches."""
    from .module import PatchEmbedding

    caches = []
    for m in model.modules():
        if isinstance(m, PatchEmbedding) and m.mode in ("hard", "full"):
            if m.cache is None:
                m.cache = EmbeddingCache(max_bytes)
            caches.append(m.cache)
    return caches

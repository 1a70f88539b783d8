"""Phi_full (Brutzkus et al., ICML 2022, Sec. 5) fused with its AvgPool, on a bit-packed mask.

``avg_pool2d(knn_mask(scores(x)) * conv(x))`` in chunks of images with a hand-written backward.
The k-nearest mask is kept bit-packed (one bit per centroid and position: ``knn_bits``), the form
the mask cache stores (:mod:`.cache`): given the bits, the forward skips the distances and the
selection. On the C path (:mod:`patchnb.embedding`) the selection writes the bits and one kernel
pools the masked conv rows (``mask_pool_cl``) and another gives their gradient
(``mask_pool_backward_cl``); the torch path unpacks the bits and uses ``avg_pool2d``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..patches import unfold
from . import _load_lib, _threads, kernel_backend
from .knn import _knn_mask_torch, pooled_size

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(R, N) 0/1 (bool or float) -> (R, ceil(N / 8)) uint8; bit j is bit ``j % 8`` of byte ``j // 8``
    (numpy's ``packbits(bitorder="little")``)."""
    r, n = mask.shape
    nb = (n + 7) // 8
    m = torch.zeros(r, nb * 8, dtype=torch.uint8)
    m[:, :n] = mask != 0
    return (m.view(r, nb, 8) << _SHIFTS).sum(-1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: (R, ceil(n / 8)) uint8 -> (R, n) bool."""
    return ((bits.unsqueeze(-1) >> _SHIFTS) & 1).view(len(bits), -1)[:, :n].bool()


def _select_bits(s: torch.Tensor, k: int, out: torch.Tensor) -> None:
    """The k-nearest mask of the contiguous score rows ``s`` (R, N), bit-packed into ``out``."""
    if kernel_backend(s) == "c":
        if _load_lib().knn_bits_rows(s.data_ptr(), out.data_ptr(), s.shape[0], s.shape[1], k, _threads()):
            raise ValueError("scores contain NaN")
    else:
        out.copy_(pack_bits(_knn_mask_torch(s.T[None, :, :, None], k)[0, :, :, 0].T))


def _masked_pool(y, bits, b, ho, wo, pool, out) -> None:
    """``out`` (b, Hp, Wp, N) = avg_pool2d(mask * y) of the channels-last rows ``y`` (b Ho Wo, N)."""
    n = y.shape[1]
    if kernel_backend(y) == "c":
        _load_lib().mask_pool_cl(y.data_ptr(), bits.data_ptr(), out.data_ptr(), b, ho, wo, n, pool[0], pool[1],
                                 out.shape[1], out.shape[2], _threads())
        return
    m = (y * unpack_bits(bits, n)).view(b, ho, wo, n).permute(0, 3, 1, 2)
    out.copy_(F.avg_pool2d(m, pool[0], pool[1], ceil_mode=pool[2]).permute(0, 2, 3, 1))


def _masked_pool_backward(go, bits, b, ho, wo, pool, out) -> torch.Tensor:
    """The gradient of :func:`_masked_pool` with respect to ``y``, into ``out`` (b Ho Wo, N)."""
    n = out.shape[1]
    if kernel_backend(go) == "c":
        _load_lib().mask_pool_backward_cl(go.data_ptr(), bits.data_ptr(), out.data_ptr(), b, ho, wo, n, pool[0],
                                          pool[1], go.shape[1], go.shape[2], _threads())
        return out
    like = torch.empty(b, ho, wo, n).permute(0, 3, 1, 2)  # only its shape/format is read
    g = torch.ops.aten.avg_pool2d_backward(go.permute(0, 3, 1, 2), like, [pool[0]] * 2, [pool[1]] * 2, [0, 0],
                                           pool[2], True, None)
    return torch.mul(g.permute(0, 2, 3, 1).reshape(-1, n), unpack_bits(bits, n), out=out)


def _one_pass(x: torch.Tensor, n: int) -> bool:
    """Whether the C kernels that fuse the conv with the masked pooling serve (N a multiple of 16)."""
    return n % 16 == 0 and kernel_backend(x) == "c"


def _rows(x: torch.Tensor, p: int) -> torch.Tensor:
    return unfold(x, p).transpose(1, 2).reshape(-1, x.shape[1] * p * p).contiguous()


class _PhiFullPooled(torch.autograd.Function):
    """``avg_pool2d(knn_mask(scores(x)) * conv(x))`` in chunks of images, with a hand-written backward.

    The plain autograd path materialises the float mask, the conv output, their product and the
    gradients of each (4 x 150 MB per batch of 64 at N = 1024 on 28x28 inputs; fresh allocations of
    that size are dominated by page faults). Here every chunk's scores and conv output live in two
    reused buffers of ``CHUNK_ROWS`` x N floats (channels-last rows, the GEMM's natural output); the
    mask is kept for the backward bit-packed (1/32 of the floats). ``bits`` given (the mask cache)
    skips the distances and the selection. Backward (the mask is a constant): grad_conv = mask *
    avg_pool2d_backward(grad_out), grad_W = grad_conv^T @ patches, grad_b = sum grad_conv,
    grad_x = fold(grad_conv @ W). No pooling is the window (1, 1).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, kernel, sbias, k, pool, chunk_rows, bits):
        b, c, h, w = x.shape
        n, p = weight.shape[0], weight.shape[-1]
        ho, wo = h - p + 1, w - p + 1
        L = ho * wo
        chunk = max(1, chunk_rows // L)
        hp, wp = pooled_size(ho, pool[0], pool[1], pool[2]), pooled_size(wo, pool[0], pool[1], pool[2])
        rows_n = min(chunk, b) * L
        c_buf, s_buf = None if _one_pass(x, n) else torch.empty(rows_n, n), None
        if bits is None:
            bits, s_buf = torch.empty(b * L, (n + 7) // 8, dtype=torch.uint8), torch.empty(rows_n, n)
        out = torch.empty(b, hp, wp, n)
        kt, wt = kernel.reshape(n, -1).T, weight.reshape(n, -1).T
        one_pass = _one_pass(x, n)  # conv + mask + pool in one C pass: the conv output is never stored
        wtc = wt.contiguous() if one_pass else None
        for i in range(0, b, chunk):
            xi = x[i:i + chunk]
            r = len(xi) * L
            rows, bi = _rows(xi, p), bits[i * L:i * L + r]
            if s_buf is not None:
                _select_bits(torch.addmm(sbias, rows, kt, out=s_buf[:r]), k, bi)
            if one_pass:
                _load_lib().conv_mask_pool_cl(rows.data_ptr(), wtc.data_ptr(), bias.data_ptr(), bi.data_ptr(),
                                              out[i:i + chunk].data_ptr(), len(xi), ho, wo, n, rows.shape[1],
                                              pool[0], pool[1], hp, wp, _threads())
            else:
                y = torch.addmm(bias, rows, wt, out=c_buf[:r])
                _masked_pool(y, bi, len(xi), ho, wo, pool, out[i:i + chunk])
        ctx.save_for_backward(x, weight, bits)
        ctx.pool, ctx.chunk = pool, chunk
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bits = ctx.saved_tensors
        pool, chunk = ctx.pool, ctx.chunk
        b, c, h, w = x.shape
        n, p = weight.shape[0], weight.shape[-1]
        ho, wo = h - p + 1, w - p + 1
        L = ho * wo
        wflat = weight.reshape(n, -1)
        gw, gb = torch.zeros(n, wflat.shape[1]), torch.zeros(n)
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        go = grad_out.permute(0, 2, 3, 1).contiguous()  # (B, Hp, Wp, N): small
        hp, wp = go.shape[1:3]
        one_pass = _one_pass(x, n) and gx is None
        gwt = torch.zeros(wflat.shape[1], n) if one_pass else None
        g_buf = None if one_pass else torch.empty(min(chunk, b) * L, n)
        for i in range(0, b, chunk):
            xi = x[i:i + chunk]
            r = len(xi) * L
            rows, bi = _rows(xi, p), bits[i * L:i * L + r]
            if one_pass:  # grad_W and grad_b straight from grad_out and the mask
                _load_lib().conv_mask_pool_backward_cl(rows.data_ptr(), go[i:i + chunk].data_ptr(), bi.data_ptr(),
                                                       gwt.data_ptr(), gb.data_ptr(), len(xi), ho, wo, n,
                                                       rows.shape[1], pool[0], pool[1], hp, wp, _threads())
                continue
            g = _masked_pool_backward(go[i:i + chunk], bi, len(xi), ho, wo, pool, g_buf[:r])
            gw.addmm_(g.T, rows)
            gb += g.sum(0)
            if gx is not None:
                gr = (g @ wflat).view(len(xi), L, -1).transpose(1, 2)
                gx[i:i + chunk] = F.fold(gr, (h, w), p)
        if one_pass:
            gw = gwt.T.contiguous()
        return gx, gw.view_as(weight), gb, None, None, None, None, None, None


def knn_bits(embedding: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The k-nearest mask of ``embedding`` (a PatchEmbedding) on the images ``x`` (CPU float32), bit-packed: (B, H' W',
    ceil(N / 8)) uint8 (positions row-major, bit q of a row: centroid q among the k nearest), the
    mask :class:`_PhiFullPooled` computes, in chunks of ``CHUNK_ROWS`` rows."""
    embedding._check_input(x)
    b, _, h, w = x.shape
    p, n = embedding.patch_size, embedding.n
    L = (h - p + 1) * (w - p + 1)
    chunk = max(1, embedding.CHUNK_ROWS // L)
    bits = torch.empty(b * L, (n + 7) // 8, dtype=torch.uint8)
    kt = embedding.kernel.reshape(n, -1).T
    buf = torch.empty(min(chunk, b) * L, n)
    with torch.no_grad():
        for i in range(0, b, chunk):
            rows = _rows(x[i:i + chunk].contiguous(), p)
            _select_bits(torch.addmm(embedding.bias, rows, kt, out=buf[:len(rows)]), embedding.k,
                         bits[i * L:i * L + len(rows)])
    return bits.view(b, L, -1)


def phi_full_pooled(x: torch.Tensor, embedding: nn.Module, pool: tuple[int, int, bool] | None,
                    chunk_rows: int | None = None) -> torch.Tensor:
    """Phi_full (Brutzkus et al. 2022, Sec. 5) then ``avg_pool2d(*pool)`` (or no pooling with ``None``),
    equal in values and gradients (up to float rounding) to ``avg_pool2d(embedding.mask(x) *
    embedding.conv(x))`` but without the full-size float intermediates (:class:`_PhiFullPooled`).
    With ``embedding.cache`` set (:func:`~patchnb.embedding.cache_embeddings`) the mask of an image
    seen before is read from the cache (exactly the same result). CPU float32 only; elsewhere the
    plain path."""
    if embedding.mode != "full":
        raise ValueError(f"phi_full_pooled needs an embedding in mode 'full', got mode={embedding.mode!r}")
    embedding._check_input(x)
    conv = embedding.conv
    if x.device.type != "cpu" or x.dtype != torch.float32 or conv.weight.dtype != torch.float32 \
            or conv.padding != (0, 0) or conv.stride != (1, 1):
        out = embedding.mask(x) * conv(x)
        return F.avg_pool2d(out, pool[0], pool[1], ceil_mode=pool[2]) if pool else out
    x = x.contiguous()
    cache = getattr(embedding, "cache", None)
    bits = cache.mask_bits(embedding, x) if cache is not None else None
    if bits is not None:
        bits = bits.reshape(-1, bits.shape[-1])
    return _PhiFullPooled.apply(x, conv.weight, conv.bias, embedding.kernel, embedding.bias, embedding.k,
                                tuple(pool) if pool else (1, 1, False), chunk_rows or embedding.CHUNK_ROWS, bits)

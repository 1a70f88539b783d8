"""The kNN patch embedding of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features", ICML 2022, Sec. 5 (Phi_hard, Phi_full) and its ablations, plus the fast selection kernel.

Distances as one convolution: for a patch x (row vector, D = C p p) and a centroid c_q of the
whitened dictionary, ||x W - c_q||^2 = ||x W||^2 - 2 <x, W c_q> + ||c_q||^2, so up to the
per-position constant ||x W||^2 / 2 the score is s_q = -<x, W c_q> + 1/2 ||c_q||^2: a conv2d with
kernel -c_q W^T (reshaped to (N, C, p, p)) and bias 1/2 ||c_q||^2. Phi_hard marks the k smallest
scores at each position; Phi_full multiplies that mask by a learnable conv of the raw patch.

The selection (not the convolution) is the cost. :func:`knn_mask` and :func:`knn_pool` use a small
C kernel (``patchnb/_knn.c``, with ``patchnb/_phi_full.c`` for the fused Phi_full; compiled with
the system C compiler on first use and cached; counting passes on contiguous rows, exact ties by
index), and fall back to torch (``kthvalue`` + exact tie fix-up) on GPUs, without a compiler, or
with ``PATCHNB_KNN_BACKEND=torch``.

The package: this file loads the C kernel (its state ``_LIB`` lives here) and re-exports the public
names; :mod:`.knn` the selection, :mod:`.fused` the fused Phi_full, :mod:`.dictionary` the
unsupervised stage, :mod:`.flops` the FLOP counts of the kernels (rooflines), :mod:`.module`
:class:`PatchEmbedding`, :mod:`.cache` the per-image caches used
when augmentation is off (issue 12, sec. 4).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import stat
import subprocess
import tempfile
from pathlib import Path

import torch

from ..checks import check_choice, check_not_link, private_dir

MODES = ("hard", "full", "simple", "triangle", "kth")
BACKENDS = ("auto", "c", "torch")
#: the kernel's C sources (package data of patchnb), compiled together into one library
_SOURCES = tuple(Path(__file__).resolve().parent.parent / name for name in ("_knn.c", "_phi_full.c"))
_LIB: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable


def _cpu_tag() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return hashlib.sha1(f"{platform.machine()}{flags}".encode()).hexdigest()[:10]


class KernelError(RuntimeError):
    """The compiled kernel in the cache folder is not safe to load (owned by another user, or
    writable by others): loading it would run whatever code it holds."""


def _check_private(path: Path, what: str) -> None:
    """Refuse ``path`` unless it belongs to this user and only this user can write it."""
    st = os.stat(path)
    uid = os.getuid()
    problem = None
    if st.st_uid != uid:
        problem = f"is owned by uid {st.st_uid}, not by you (uid {uid})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else \
            "group" if st.st_mode & stat.S_IWGRP else "others"
        problem = f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        raise KernelError(f"refusing to load the compiled kNN kernel: {what} {path} {problem}, so someone else could "
                          f"have replaced the code it runs. The patchnb cache folder ($PATCHNB_CACHE, default "
                          f"~/.cache/patchnb) must be private to you: delete {path} (the kernel is rebuilt) and "
                          f"`chmod go-w` the cache folders, or set PATCHNB_KNN_BACKEND=torch")


def _load_lib() -> ctypes.CDLL | None:
    """Compile ``_knn.c`` and ``_phi_full.c`` once per source version and CPU (``-O3 -march=native``)
    into the patchnb cache (``kernels/``, created private), then load it; ``None`` when no compiler is
    available (the torch path is used). The cache folder must be private: a kernel file owned by another user or
    writable by group/others raises :class:`KernelError` instead of being loaded; a cache folder that is not
    private, or a ``kernels/`` folder or kernel file that is a link, raises
    :class:`patchnb.checks.UnsafePathError` (:func:`patchnb.checks.private_dir`)."""
    global _LIB
    if _LIB is not None:
        return _LIB or None
    try:
        from ..data import cache_dir

        src = b"".join(path.read_bytes() for path in _SOURCES)
        tag = hashlib.sha1(src).hexdigest()[:12] + "-" + _cpu_tag()
        out = private_dir(cache_dir(), "kernels") / f"knn-{tag}.so"  # no link followed, private
        check_not_link(out)
        _check_private(out.parent, "its folder")
        if not out.is_file():
            cc = os.environ.get("CC", "cc")
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                tmp_so = Path(tmp) / out.name
                flags = ["-O3", "-march=native", "-shared", "-fPIC", "-pthread"]
                subprocess.run([cc, *flags, "-o", str(tmp_so), *map(str, _SOURCES), "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.chmod(tmp_so, 0o755)  # whatever the umask: writable by its owner only
                os.replace(tmp_so, out)
        _check_private(out, "the file")
        lib = ctypes.CDLL(str(out))
        i64, vp, ci = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.knn_mask_strided.argtypes = [vp, vp] + [i64] * 9 + [ci, ci]
        lib.knn_pool_cl.argtypes = [vp, vp, i64, i64, i64, i64, ci, ci, ci, i64, i64, ci]
        lib.knn_bits_rows.argtypes = [vp, vp, i64, i64, ci, ci]
        lib.mask_pool_cl.argtypes = lib.mask_pool_backward_cl.argtypes = [vp, vp, vp] + [i64] * 4 + [ci, ci, i64,
                                                                                                     i64, ci]
        lib.conv_mask_pool_cl.argtypes = lib.conv_mask_pool_backward_cl.argtypes = [vp] * 5 + [i64] * 5 + [
            ci, ci, i64, i64, ci]
        lib.decode_counts_u8.argtypes = [vp, vp, i64, i64, i64, vp, vp, ci]
        lib.knn_mask_strided.restype = lib.knn_pool_cl.restype = lib.knn_bits_rows.restype = ci
        lib.decode_counts_u8.restype = None
        lib.conv_mask_pool_cl.restype = lib.conv_mask_pool_backward_cl.restype = None
        lib.mask_pool_cl.restype = lib.mask_pool_backward_cl.restype = None
        _LIB = lib
    except (OSError, subprocess.SubprocessError, FileNotFoundError):
        _LIB = False
    return _LIB or None


def kernel_backend(scores: torch.Tensor | None = None) -> str:
    """``"c"`` when the compiled kernel serves ``scores`` (CPU float32), else ``"torch"``."""
    want = os.environ.get("PATCHNB_KNN_BACKEND", "auto")
    check_choice("PATCHNB_KNN_BACKEND", want, BACKENDS)
    if want == "torch":
        return "torch"
    ok = scores is None or (scores.device.type == "cpu" and scores.dtype == torch.float32)
    if ok and _load_lib() is not None:
        return "c"
    if want == "c":
        raise RuntimeError("PATCHNB_KNN_BACKEND=c but the C kernel is unavailable (no C compiler, or the "
                           "scores are not float32 on the CPU)")
    return "torch"


def _threads() -> int:
    return max(1, torch.get_num_threads())


# the public names (and the helpers the tests reach), from the submodules: these import the kernel
# loader above, so they come last
from .cache import EmbeddingCache, cache_embeddings  # noqa: E402
from .dictionary import build_dictionary  # noqa: E402
from .flops import flops_distance, flops_head, flops_phi_full  # noqa: E402
from .fused import _PhiFullPooled, knn_bits, pack_bits, phi_full_pooled, unpack_bits  # noqa: E402
from .knn import (  # noqa: E402
    _check_out,
    _check_scores,
    _knn_mask_torch,
    _overlaps,
    _position_strides,
    _self_overlapping,
    knn_mask,
    knn_mask_reference,
    knn_pool,
    kth_neighbour_mask,
    pooled_size,
    triangle_encoding,
)
from .module import PatchEmbedding  # noqa: E402

__all__ = ["BACKENDS", "MODES", "EmbeddingCache", "KernelError", "PatchEmbedding", "build_dictionary",
           "cache_embeddings", "flops_distance", "flops_head", "flops_phi_full", "kernel_backend",
           "knn_bits", "knn_mask", "knn_mask_reference", "knn_pool",
           "kth_neighbour_mask", "pack_bits", "phi_full_pooled", "pooled_size", "triangle_encoding", "unpack_bits",
           "_PhiFullPooled", "_check_out", "_check_scores", "_knn_mask_torch", "_overlaps", "_position_strides",
           "_self_overlapping"]

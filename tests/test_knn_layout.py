"""The selection kernel never reads or writes out of bounds, whatever the layout (issue 13, part 2).

A layout fuzz compares :func:`knn_mask` / :func:`knn_pool` with the reference on random shapes
(size-1 dimensions included), permutations, strided slices, channels-last tensors, size-1
dimensions with arbitrary strides and ``out=`` tensors of all these layouts. It runs in a
subprocess so that a crash of the C kernel fails the test instead of killing pytest.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from patchnb import embedding

ROOT = Path(__file__).resolve().parents[1]


def _odd_strides(shape, gen, dtype=torch.float32) -> torch.Tensor:
    """A (B, N, H, W) tensor in a random layout: a random order of the dimensions in memory, gaps
    between them, and arbitrary (large) strides on the dimensions of size 1."""
    order = torch.randperm(4, generator=gen).tolist()  # memory order, innermost last
    strides, step = [0] * 4, 1
    for d in reversed(order):
        gap = int(torch.randint(1, 3, (1,), generator=gen))  # 2: every other element
        strides[d] = step * gap
        step *= shape[d] * gap
    for d in range(4):
        if shape[d] == 1 and torch.rand(1, generator=gen) < 0.7:
            strides[d] = int(torch.randint(1, 100_000, (1,), generator=gen))
    need = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    return torch.empty(need, dtype=dtype).as_strided(shape, strides)


def random_layout(shape, gen, dtype=torch.float32) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` in one of many layouts."""
    kind = int(torch.randint(0, 6, (1,), generator=gen))
    b, n, h, w = shape
    if kind == 0:
        return torch.empty(shape, dtype=dtype)
    if kind == 1:
        return torch.empty(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    if kind == 2:  # a permuted buffer
        perm = torch.randperm(4, generator=gen).tolist()
        return torch.empty([shape[p] for p in perm], dtype=dtype).permute(*[perm.index(i) for i in range(4)])
    if kind == 3:  # a strided slice of a bigger tensor
        return torch.empty(b, n + 1, 2 * h, 2 * w + 1, dtype=dtype)[:, 1:, ::2, 1::2]
    if kind == 4:  # the channels-last rows of a (B, H, W, N) buffer, as the fused Phi_full uses
        return torch.empty(b, h, w, n, dtype=dtype).permute(0, 3, 1, 2)
    return _odd_strides(shape, gen, dtype)


def random_scores(shape, gen) -> torch.Tensor:
    s = random_layout(shape, gen)
    kind = int(torch.randint(0, 3, (1,), generator=gen))
    values = torch.randn(shape, generator=gen)
    if kind == 1:  # many exact ties
        values = torch.randint(0, 3, shape, generator=gen).float()
    elif kind == 2:  # infinities and a constant row
        values[values > 1.5] = float("inf")
        values[..., 0, 0] = -1.0
    return s.copy_(values)


SIZES = (1, 1, 2, 3, 5, 8)
CENTROIDS = (1, 2, 3, 7, 16, 17, 33, 64, 70)


def fuzz(cases: int, seed: int = 0) -> int:
    """Run ``cases`` random layouts through knn_mask (with and without out=) and knn_pool; raise
    AssertionError on the first mismatch with the reference. Returns the number of cases checked."""
    gen = torch.Generator().manual_seed(seed)
    pick = lambda xs: xs[int(torch.randint(0, len(xs), (1,), generator=gen))]  # noqa: E731
    for case in range(cases):
        shape = (pick((1, 1, 2, 3)), pick(CENTROIDS), pick(SIZES), pick(SIZES))
        k = int(torch.randint(1, shape[1] + 1, (1,), generator=gen))
        scores = random_scores(shape, gen)
        ref = embedding.knn_mask_reference(scores.contiguous(), k)
        where = f"case {case}: shape {shape} strides {scores.stride()} k={k}"
        got = embedding.knn_mask(scores, k)
        assert got.shape == shape and torch.equal(got, ref), where
        out = random_layout(shape, gen).fill_(7.0)
        res = embedding.knn_mask(scores, k, out=out)
        assert res is out and torch.equal(out, ref), f"{where} out strides {out.stride()}"
        size = pick(tuple(range(1, min(4, shape[2], shape[3]) + 1)))  # a window inside the image
        stride = pick((1, 2, size))
        for cl in (False, True):
            x = scores.contiguous(memory_format=torch.channels_last) if cl else scores
            pooled = embedding.knn_pool(x, k, size, stride)
            want = F.avg_pool2d(ref, size, stride, ceil_mode=True)
            assert torch.allclose(pooled, want, atol=1e-6), f"{where} pool {size}/{stride} channels_last={cl}"
    return cases


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    env.pop("PATCHNB_KNN_BACKEND", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _assert_ok(proc: subprocess.CompletedProcess) -> None:
    what = f"the kernel crashed (signal {-proc.returncode})" if proc.returncode < 0 else "failed"
    assert proc.returncode == 0, f"{what}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def test_size_one_dimension_with_an_arbitrary_stride():
    """The case of the issue: a size-1 W whose stride .contiguous() keeps (4096); it crashed, and gave
    wrong masks for W = 5 and 64."""
    code = """
import torch
from patchnb import embedding
assert embedding.kernel_backend(torch.zeros(1, dtype=torch.float32)) == "c", "no C kernel"
for w in (5, 64, 4096):
    s = torch.randn(1, 8, 1, w).transpose(2, 3)
    assert torch.equal(embedding.knn_mask(s, 3), embedding.knn_mask_reference(s.contiguous(), 3)), w
print("ok")
"""
    proc = _run(code)
    if "no C kernel" in proc.stderr:
        pytest.skip("no C compiler: only the torch path runs")
    _assert_ok(proc)


@pytest.mark.slow
def test_layout_fuzz_against_the_reference():
    proc = _run("from tests.test_knn_layout import fuzz\nprint(fuzz(400, seed=1))")
    _assert_ok(proc)
    assert proc.stdout.strip() == "400"


def test_layout_fuzz_quick():
    proc = _run("from tests.test_knn_layout import fuzz\nprint(fuzz(60, seed=2))")
    _assert_ok(proc)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_out_is_honoured_by_both_paths(monkeypatch, backend):
    monkeypatch.setenv("PATCHNB_KNN_BACKEND", backend)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 9, 4, 5, generator=gen)
    ref = embedding.knn_mask_reference(scores, 4)
    for out in (torch.empty(2, 9, 4, 5), torch.empty(2, 4, 5, 9).permute(0, 3, 1, 2),
                torch.empty(2, 9, 8, 5)[:, :, ::2]):
        assert embedding.knn_mask(scores, 4, out=out) is out and torch.equal(out, ref)


def test_bad_out_is_a_clear_error():
    scores = torch.randn(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"out must be a float32 tensor of shape \(1, 4, 3, 3\)"):
        embedding.knn_mask(scores, 2, out=torch.empty(1, 4, 3, 2))
    with pytest.raises(ValueError, match="out must be a float32"):
        embedding.knn_mask(scores, 2, out=torch.empty(1, 4, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="overlapping memory"):
        embedding.knn_mask(scores, 2, out=torch.empty(1, 4, 3, 1).expand(1, 4, 3, 3))
    with pytest.raises(ValueError, match="out must be a tensor"):
        embedding.knn_mask(scores, 2, out=[0.0])


def test_out_aliasing_the_scores_is_safe():
    """out= the scores themselves: the kernel never reads what it has already overwritten."""
    scores = torch.randint(0, 3, (2, 6, 3, 3)).float()
    ref = embedding.knn_mask_reference(scores, 2)
    assert torch.equal(embedding.knn_mask(scores, 2, out=scores), ref) and torch.equal(scores, ref)


def fuzz_phi_full(cases: int, seed: int = 0) -> int:
    """Random shapes, dictionary sizes (multiples of 16 take the one-pass C kernels, others the
    masked-pool kernel), pools (overlapping, gapped, ceil or not) and chunks through the fused
    Phi_full: the C path against the torch path (values and weight gradients), and the mask cache
    against no cache (exactly). Returns the number of cases checked."""
    import copy

    gen = torch.Generator().manual_seed(seed)
    pick = lambda xs: xs[int(torch.randint(0, len(xs), (1,), generator=gen))]  # noqa: E731
    for case in range(cases):
        c, p, n = pick((1, 2)), pick((1, 2, 3)), pick((8, 16, 17, 32, 40, 48))
        h, w = p + pick((0, 1, 3, 6)), p + pick((0, 2, 5))
        k = int(torch.randint(1, n + 1, (1,), generator=gen))
        size = pick(tuple(range(1, min(4, h - p + 1, w - p + 1) + 1)))
        pool = pick((None, (size, pick((1, 2, size, size + 1)), pick((True, False)))))
        d = c * p * p
        emb = embedding.PatchEmbedding(torch.randn(n, d, generator=gen), torch.eye(d), p, c, k, mode="full")
        x = torch.randn(pick((1, 2, 3)), c, h, w, generator=gen)
        chunk = pick((1, 10, 10 ** 6))
        where = f"case {case}: x {tuple(x.shape)} p={p} N={n} k={k} pool {pool} chunk {chunk}"
        outs = {}
        for backend in ("auto", "torch"):
            os.environ["PATCHNB_KNN_BACKEND"] = backend
            out = embedding.phi_full_pooled(x, emb, pool, chunk_rows=chunk)
            outs[backend] = (out, *torch.autograd.grad(out.square().sum(), (emb.conv.weight, emb.conv.bias)))
        os.environ.pop("PATCHNB_KNN_BACKEND")
        for a, b in zip(*outs.values()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), where
        cached = copy.deepcopy(emb)
        cached.cache = embedding.EmbeddingCache()
        with torch.no_grad():
            for _ in range(2):  # fill, then read
                assert torch.equal(embedding.phi_full_pooled(x, cached, pool, chunk_rows=chunk), outs["auto"][0]), where
    return cases


def test_phi_full_kernels_fuzz_quick():
    proc = _run("from tests.test_knn_layout import fuzz_phi_full\nprint(fuzz_phi_full(40, seed=3))")
    _assert_ok(proc)
    assert proc.stdout.strip() == "40"

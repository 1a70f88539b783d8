"""Roofline of the patch network's hot paths (Brutzkus et al., ICML 2022, Sec. 5) on this host.

Shared helper of the benchmarks: :func:`gemm_peak` measures this host's float32 GEMM peak in the same
run (square ``torch.mm`` of 1024 and 2048, median of repeats, at the thread count in use), and
:func:`print_roofline` prints, per hot path, images/s, the achieved GFLOP/s (from the FLOP counts written
next to the kernels: :mod:`patchnb.embedding.flops`) and the fraction of that peak. Run alone, it times
the hot paths of Table 1's Phi_full experiment at the cpu scale (N = 256, k = 64, 5x5 patches,
AvgPool 4/4, BatchNorm, bottleneck 32, batch 64, 28x28x1):

* distances + k-nearest selection (bit-packed, :func:`patchnb.embedding.knn_bits`);
* Phi_hard + AvgPool forward (fused);
* Phi_full + AvgPool forward, and forward + backward (:func:`patchnb.embedding.phi_full_pooled`);
* the Table 3 head (AvgPool'd features -> BatchNorm -> bottleneck -> linear) forward + backward;
* the whole SGD step of the network (embedding + head + update).

    .venv/bin/python benchmarks/roofline.py [--threads 2] [--repeats 7] [--n 256] [--k 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F


def gemm_peak(sizes=(1024, 2048), repeats: int = 5) -> float:
    """This host's float32 GEMM GFLOP/s at the current thread count: for each square size the median of
    ``repeats`` ``torch.mm`` calls after one warm-up; the best size's."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            ts.append(time.perf_counter() - t0)
        best = max(best, 2 * n ** 3 / statistics.median(ts) / 1e9)
    return best


def print_roofline(rows, peak: float, title: str = "hot path") -> None:
    """``rows``: (name, images/s, FLOP per image or None); prints images/s, GFLOP/s and % of ``peak``."""
    print(f"\n{title:>40} | {'images/s':>9} | {'MFLOP/img':>9} | {'GFLOP/s':>8} | {'of GEMM peak':>12}")
    for name, ips, flop in rows:
        if flop is None:
            print(f"{name:>40} | {ips:>9.0f} | {'-':>9} | {'-':>8} | {'-':>12}")
            continue
        g = ips * flop / 1e9
        print(f"{name:>40} | {ips:>9.0f} | {flop / 1e6:>9.2f} | {g:>8.1f} | {100 * g / peak:>11.1f}%")
    print(f"(GEMM peak {peak:.1f} GFLOP/s: float32 torch.mm 1024..2048 in this run, {torch.get_num_threads()} "
          f"threads; FLOP counts from patchnb.embedding.flops, selection counted 0 FLOP)")


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each of ``fns``, called in turn ``repeats`` times after one warm-up each."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def patch_hot_paths(batch: int = 64, n: int = 256, k: int = 64, repeats: int = 7, seed: int = 0) -> list:
    """(name, images/s, FLOP per image) of the patch network's hot paths, measured side by side."""
    from patchnb.embedding import PatchEmbedding, flops_distance, flops_head, flops_phi_full, knn_bits
    from patchnb.models import LocallyLinearNetwork

    torch.manual_seed(seed)
    c, s, p, pool = 1, 28, 5, (4, 4, True)
    ho = s - p + 1
    hp = -(-ho // 4)
    x = torch.randn(batch, c, s, s)
    y = torch.randint(0, 10, (batch,))
    centroids, white = torch.randn(n, c * p * p), torch.eye(c * p * p) / p
    full = PatchEmbedding(centroids, white, p, c, k, mode="full")
    hard = PatchEmbedding(centroids, white, p, c, k, mode="hard")
    net = LocallyLinearNetwork(PatchEmbedding(centroids, white, p, c, k, mode="full"), (c, s, s))
    opt = torch.optim.SGD(net.parameters(), lr=0.003, momentum=0.9)
    head = net.head
    feats = torch.randn(batch, n, hp, hp)

    def phi_full_fb():
        full.zero_grad(set_to_none=True)
        full(x, pool=pool).sum().backward()

    def head_fb():
        head.zero_grad(set_to_none=True)
        F.cross_entropy(head(feats, pooled=True), y).backward()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    fns = {"distances + k-nearest selection": no_grad(lambda: knn_bits(full, x)),
           "Phi_hard + AvgPool forward": no_grad(lambda: hard(x, pool=pool)),
           "Phi_full + AvgPool forward": no_grad(lambda: full(x, pool=pool)),
           "Phi_full + AvgPool forward + backward": phi_full_fb,
           "head (BN, bottleneck 32) fwd + bwd": head_fb,
           "network SGD step (fwd + bwd + update)": step}
    t = interleaved(fns, repeats)
    dist = flops_distance(c, s, s, p, n)
    fwd, fb = flops_phi_full(c, s, s, p, n, pool[:2]), flops_phi_full(c, s, s, p, n, pool[:2], backward=True)
    hflop = flops_head(n, hp, hp, 10, True, 32, backward=True)
    # Phi_hard: the distances, then per pooled cell and centroid one addition per (window, position) pair
    # and one division (Phi_full's forward less the conv GEMM and its bias)
    hard_flop = fwd - dist
    flop = {"distances + k-nearest selection": dist, "Phi_hard + AvgPool forward": hard_flop,
            "Phi_full + AvgPool forward": fwd, "Phi_full + AvgPool forward + backward": fb,
            "head (BN, bottleneck 32) fwd + bwd": hflop, "network SGD step (fwd + bwd + update)": fb + hflop}
    return [(name, batch / t[name], flop[name]) for name in fns]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--k", type=int, default=64)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; N={args.n}, k={args.k}, 5x5, batch {args.batch}, 28x28x1; "
          f"median of {args.repeats} interleaved repeats")
    peak = gemm_peak()
    rows = patch_hot_paths(args.batch, args.n, args.k, args.repeats)
    peak_after = gemm_peak()
    print_roofline(rows, (peak + peak_after) / 2, "Table 1 Phi_full hot path")
    print(f"(GEMM peak measured before / after the hot paths: {peak:.1f} / {peak_after:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()

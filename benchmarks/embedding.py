"""Benchmark: the kNN patch embedding (Brutzkus et al., ICML 2022, Sec. 5) on the CPU.

Prints one table measured side by side in this run, for N = 1024 centroids, k = 256, 5x5 patches,
batch 64, on random 28x28x1 and 32x32x3 inputs: images/s of the full Phi_hard forward (distances
+ mask + AvgPool(4, 4, ceil)) with patchnb's kernel, the same with a plain ``torch.kthvalue``
threshold, the distance convolution alone (the lower bound), and the ratios. Then training
throughput (forward + backward + SGD step) of Phi_full depth 1, plain autograd (float mask and conv
output materialised) and fused (:func:`patchnb.embedding.phi_full_pooled`), next to the vanilla
1-hidden-layer CNN.

    .venv/bin/python benchmarks/embedding.py [--repeats 3] [--device cuda]

The last CPU run is recorded in ``benchmarks/embedding.results.txt``.
"""

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F

from patchnb.embedding import PatchEmbedding, kernel_backend
from patchnb.models import LocallyLinearNetwork, vanilla_cnn


def best_time(fn, repeats, device="cpu"):
    """Minimum wall-clock of ``repeats`` calls after one warm-up (CUDA work is waited for)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    backend = kernel_backend(torch.empty(0, device=dev))
    print(f"# {where}, torch {torch.__version__}, kernel backend: {backend}; min of {args.repeats} runs; "
          f"N={args.n}, k={args.k}, 5x5 patches, batch {args.batch}")
    b = args.batch

    def timed(fn):
        return best_time(fn, args.repeats, dev)
    rows = []
    for c, s in ((1, 28), (3, 32)):
        d = c * 25
        emb = PatchEmbedding(torch.randn(args.n, d), torch.eye(d) / d ** 0.5, 5, c, args.k).to(dev)
        x = torch.randn(b, c, s, s, device=dev)

        def kth(x=x, emb=emb):
            sc = F.conv2d(x, emb.kernel, emb.bias)
            t = sc.kthvalue(args.k, dim=1, keepdim=True).values
            return F.avg_pool2d((sc <= t).float(), 4, 4, ceil_mode=True)

        with torch.no_grad():
            fused = emb(x, pool=(4, 4, True))
            agree = float((fused == kth()).float().mean())
            t_ours = timed(lambda x=x, emb=emb: emb(x, pool=(4, 4, True)))
            t_kth = timed(kth)
            t_conv = timed(lambda x=x, emb=emb: F.conv2d(x, emb.kernel, emb.bias))
            t_gemm = timed(lambda x=x, emb=emb: emb.scores(x))
        rows.append((f"{s}x{s}x{c}", b / t_ours, b / t_kth, b / t_conv, b / t_gemm, t_kth / t_ours,
                     t_ours / t_conv, agree))
    print(f"\n{'input':>9} | {'ours img/s':>10} | {'kthvalue img/s':>14} | {'conv2d only':>11} | "
          f"{'GEMM scores':>11} | {'ours/kth':>8} | {'ours vs conv':>12} | {'= kth path':>10}")
    for row in rows:
        print(f"{row[0]:>9} | {row[1]:>10.0f} | {row[2]:>14.0f} | {row[3]:>11.0f} | {row[4]:>11.0f} | "
              f"{row[5]:>7.1f}x | {row[6]:>11.2f}x | {row[7]:>10.4f}")
    print("(ours/kth: speed-up of the whole Phi_hard forward; ours vs conv: its time over conv2d alone; "
          "'= kth path': fraction of pooled outputs equal to the kthvalue threshold's, which differs only on ties)")

    print(f"\n{'training, 28x28x1':>24} | {'images/s':>9} | {'vs plain Phi_full':>17} | {'vs vanilla CNN':>14}")
    x = torch.randn(b, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (b,), device=dev)
    plain = PatchEmbedding(torch.randn(args.n, 25), torch.eye(25) / 5, 5, 1, args.k, mode="full")
    plain.fused = False
    fused = PatchEmbedding(torch.randn(args.n, 25), torch.eye(25) / 5, 5, 1, args.k, mode="full")
    speeds = {}
    for name, net in (("Phi_full, plain autograd", LocallyLinearNetwork(plain, (1, 28, 28))),
                      ("Phi_full, fused", LocallyLinearNetwork(fused, (1, 28, 28))),
                      ("vanilla 1-layer CNN", vanilla_cnn((1, 28, 28), channels=args.n))):
        net = net.to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.003, momentum=0.9)

        def step(net=net, opt=opt):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

        speeds[name] = b / timed(step)
    base, cnn = speeds["Phi_full, plain autograd"], speeds["vanilla 1-layer CNN"]
    for name, v in speeds.items():
        print(f"{name:>24} | {v:>9.0f} | {v / base:>16.2f}x | {v / cnn:>13.2f}x")
    print("(one SGD step: forward + backward + update, batch of random images; 'fused' is "
          "patchnb.embedding.phi_full_pooled, equal to the plain path in values and gradients)")


if __name__ == "__main__":
    main()

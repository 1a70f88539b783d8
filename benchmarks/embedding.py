"""Benchmark: the kNN patch embedding (Brutzkus et al., ICML 2022, Sec. 5) on the CPU.

Prints one table measured side by side in this run, for N = 1024 centroids, k = 256, 5x5 patches,
batch 64, on random 28x28x1 and 32x32x3 inputs: images/s of the full Phi_hard forward (distances
+ mask + AvgPool(4, 4, ceil)) with patchnb's kernel, the same with a plain ``torch.kthvalue``
threshold, the distance convolution alone (the lower bound), and the ratios. Then training
throughput (forward + backward + SGD step) of Phi_full depth 1, plain autograd (float mask and conv
output materialised) and fused (:func:`patchnb.embedding.phi_full_pooled`), next to the vanilla
1-hidden-layer CNN, and the per-image caches used when augmentation is off
(:func:`patchnb.embedding.cache_embeddings`): Phi_full with its k-nearest mask read from the
bit-packed cache, and Phi_hard trained from its cached pooled features, each beside its uncached
step in the same run (issue 12, sec. 4: targets 2x and 20x).

    .venv/bin/python benchmarks/embedding.py [--repeats 5] [--threads 2] [--device cuda]

The last CPU run is recorded in ``benchmarks/embedding.results.txt``.
"""

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from patchnb.embedding import PatchEmbedding, cache_embeddings, kernel_backend
from patchnb.models import LocallyLinearNetwork, vanilla_cnn


def previous_embedding(rev):
    """``patchnb/embedding.py`` as it was at git revision ``rev`` (one module then), imported beside
    the current package as ``patchnb._embedding_previous`` with today's ``_knn.c`` (its functions
    are unchanged)."""
    import importlib.util
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:patchnb/embedding.py"], cwd=root, check=True, capture_output=True,
                         text=True).stdout
    tmp = Path(tempfile.mkdtemp())
    (tmp / "embedding_previous.py").write_text(src)
    shutil.copy(root / "patchnb" / "_knn.c", tmp / "_knn.c")
    spec = importlib.util.spec_from_file_location("patchnb._embedding_previous", tmp / "embedding_previous.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def interleaved(fns, repeats, device="cpu"):
    """Median wall-clock of each of ``fns`` (a dict), called in turn ``repeats`` times after one
    warm-up each, so that all see the same load of the shared machine."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
        sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--previous", default=None, metavar="REV",
                   help="also time the fused Phi_full of patchnb/embedding.py at git revision REV (e.g. 730c64c, "
                        "before the embedding became a package), side by side")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    backend = kernel_backend(torch.empty(0, device=dev))
    print(f"# {where}, torch {torch.__version__}, kernel backend: {backend}; median of {args.repeats} interleaved "
          f"runs; "
          f"N={args.n}, k={args.k}, 5x5 patches, batch {args.batch}")
    b = args.batch
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
            t = interleaved({"ours": lambda x=x, emb=emb: emb(x, pool=(4, 4, True)), "kth": kth,
                             "conv": lambda x=x, emb=emb: F.conv2d(x, emb.kernel, emb.bias),
                             "gemm": lambda x=x, emb=emb: emb.scores(x)}, args.repeats, dev)
            t_ours, t_kth, t_conv, t_gemm = t["ours"], t["kth"], t["conv"], t["gemm"]
        rows.append((f"{s}x{s}x{c}", b / t_ours, b / t_kth, b / t_conv, b / t_gemm, t_kth / t_ours,
                     t_ours / t_conv, agree))
    print(f"\n{'input':>9} | {'ours img/s':>10} | {'kthvalue img/s':>14} | {'conv2d only':>11} | "
          f"{'GEMM scores':>11} | {'ours/kth':>8} | {'ours vs conv':>12} | {'= kth path':>10}")
    for row in rows:
        print(f"{row[0]:>9} | {row[1]:>10.0f} | {row[2]:>14.0f} | {row[3]:>11.0f} | {row[4]:>11.0f} | "
              f"{row[5]:>7.1f}x | {row[6]:>11.2f}x | {row[7]:>10.4f}")
    print("(ours/kth: speed-up of the whole Phi_hard forward; ours vs conv: its time over conv2d alone; "
          "'= kth path': fraction of pooled outputs equal to the kthvalue threshold's, which differs only on ties)")

    print(f"\n{'training, 28x28x1':>30} | {'images/s':>9} | {'vs plain Phi_full':>17} | {'vs vanilla CNN':>14}")
    x = torch.randn(b, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (b,), device=dev)
    centroids = torch.randn(args.n, 25)
    nets = {}
    for name, mode, fused, cache in (("Phi_full, plain autograd", "full", False, False),
                                     ("Phi_full, fused", "full", True, False),
                                     ("Phi_full, fused + mask cache", "full", True, True),
                                     ("Phi_hard, end to end", "hard", True, False),
                                     ("Phi_hard, cached features", "hard", True, True)):
        emb = PatchEmbedding(centroids, torch.eye(25) / 5, 5, 1, args.k, mode=mode)
        emb.fused = fused
        torch.manual_seed(1)  # the same head (and conv) for each variant of a mode
        nets[name] = LocallyLinearNetwork(emb, (1, 28, 28))
        if cache:
            cache_embeddings(nets[name])
    if args.previous:
        old = previous_embedding(args.previous)
        emb = old.PatchEmbedding(centroids, torch.eye(25) / 5, 5, 1, args.k, mode="full")
        torch.manual_seed(1)
        nets[f"Phi_full, fused at {args.previous}"] = LocallyLinearNetwork(emb, (1, 28, 28))
    nets["vanilla 1-layer CNN"] = vanilla_cnn((1, 28, 28), channels=args.n)
    steps = {}
    for name, net in nets.items():
        net = net.to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.003, momentum=0.9)

        def step(net=net, opt=opt):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

        steps[name] = step
    head_net = nets["Phi_hard, cached features"]
    with torch.no_grad():
        feats = head_net.embedding(x, pool=head_net.head.pool)  # float features, as the end-to-end model's
    head_opt = torch.optim.SGD(head_net.head.parameters(), lr=0.003, momentum=0.9)

    def head_step():  # the floor of any Phi_hard cache: the head's own step on ready float features
        head_opt.zero_grad()
        F.cross_entropy(head_net.head(feats, pooled=True), y).backward()
        head_opt.step()

    steps["Phi_hard head, float input"] = head_step
    seconds = interleaved(steps, args.repeats, dev)  # the first call of each fills its cache
    speeds = {name: b / t for name, t in seconds.items()}
    base, cnn = speeds["Phi_full, plain autograd"], speeds["vanilla 1-layer CNN"]
    for name, v in speeds.items():
        print(f"{name:>30} | {v:>9.0f} | {v / base:>16.2f}x | {v / cnn:>13.2f}x")
    print(f"\n{'cache speed-up (same run)':>28} | ratio | target")
    full = speeds["Phi_full, fused + mask cache"] / speeds["Phi_full, fused"]
    if args.previous:
        then = speeds[f"Phi_full, fused at {args.previous}"]
        print(f"{'mask cache / fused at ' + args.previous:>28} | "
              f"{speeds['Phi_full, fused + mask cache'] / then:>4.1f}x | >= 2x")
        print(f"{'fused / fused at ' + args.previous:>28} | {speeds['Phi_full, fused'] / then:>4.1f}x |")
    hard = speeds["Phi_hard, cached features"] / speeds["Phi_hard, end to end"]
    print(f"{'Phi_full mask cache / fused':>28} | {full:>4.1f}x | (today's fused; issue 12's >= 2x is over the fused "
          f"step before it, 194 img/s on 2026-11-23: --previous 730c64c)")
    print(f"{'Phi_hard cached / end to end':>28} | {hard:>4.1f}x | >= 20x")
    ceiling = speeds["Phi_hard head, float input"] / speeds["Phi_hard, end to end"]
    print(f"{'head only / end to end':>28} | {ceiling:>4.1f}x | (the most any Phi_hard cache can give)")
    print("(one SGD step: forward + backward + update, batch of random images, median of interleaved repeats; "
          "'fused' is patchnb.embedding.phi_full_pooled, equal to the plain path in values and gradients up to "
          "rounding; the caches (patchnb.embedding.cache_embeddings, augmentation off) give exactly the uncached "
          "model's values: the mask cache skips distances + selection, the Phi_hard cache the whole embedding)")


if __name__ == "__main__":
    main()

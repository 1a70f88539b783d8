"""Benchmark: the SSL augmentation pipeline against a SimCLR training step, and where an EMP-SSL step
spends its time.

Measured side by side in this run on 28x28x1 batches (Fashion-MNIST shape, random pixels):

* images/s of the shared :class:`patchnb.ssl.Augment` pipeline (two views per image, as SimCLR
  draws them) and of one whole SimCLR step (augment + narrow ResNet-18 forward/backward + SGD)
  at batch 256, with their ratio (how many times faster augmentation is than training: the share
  of a step that augmentation costs is 1/ratio);
* one EMP-SSL step with 20 patches per image, and the share of it spent in
  :func:`patchnb.ssl.total_coding_rate` (forward + backward of the 20 coding rates, timed on the
  same projections).

    .venv/bin/python benchmarks/ssl_methods.py [--width 16] [--batch 256] [--emp-batch 32] [--patches 20]
    (or: patchnb bench ssl_methods)

"""

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F

from patchnb import data
from patchnb.ssl import EMPSSL, SimCLR, total_coding_rate


def best_of(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--emp-batch", type=int, default=32)
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--out-dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    dev = torch.device(args.device)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {dev}")
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.batch, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    splits = data.Splits("bench", data.ImageData(images, torch.zeros(len(images), dtype=torch.long), ("a",)),
                         None, None, data.Normalization((0.5,), (0.25,)))

    method = SimCLR()
    model = method.make_model(1, args.width, out_dim=args.out_dim).to(dev)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)

    def augment():
        method.views(images, splits, g, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def simclr_step():
        loss, _ = method.step(model, images, None, splits, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t_aug = best_of(augment, 5)
    t_step = best_of(simclr_step, args.reps)
    n = args.batch
    rows = [("augmentation, 2 views", n / t_aug), (f"SimCLR step (ResNet-18 width {args.width})", n / t_step)]
    print(f"\n{'batch ' + str(n) + ' of 28x28x1':50s} {'images/s':>10s} {'s/batch':>9s}")
    for name, ips in rows:
        print(f"{name:50s} {ips:10.1f} {n / ips:9.3f}")
    print(f"{'ratio augmentation / SimCLR step (images/s)':50s} {rows[0][1] / rows[1][1]:10.1f}")

    emp = EMPSSL(n_patches=args.patches)
    emp_model = emp.make_model(1, args.width, out_dim=args.out_dim).to(dev)
    emp_opt = torch.optim.SGD(emp_model.parameters(), 0.01, momentum=0.9)
    emp_images = images[:args.emp_batch]

    def emp_step():
        loss, _ = emp.step(emp_model, emp_images, None, splits, g)
        emp_opt.zero_grad()
        loss.backward()
        emp_opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    z = F.normalize(torch.randn(args.patches, args.emp_batch, args.out_dim, device=dev), dim=2).requires_grad_()

    def tcr_only():
        torch.stack([total_coding_rate(z[i], emp.eps) for i in range(args.patches)]).mean().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t_emp = best_of(emp_step, args.reps)
    t_tcr = best_of(tcr_only, 5)
    m = args.emp_batch * args.patches
    print(f"\n{'EMP-SSL step: ' + str(args.emp_batch) + ' images x ' + str(args.patches) + ' patches':50s} "
          f"{'seconds':>10s} {'share':>9s}")
    print(f"{'whole step (' + str(m) + ' patch forwards/backwards)':50s} {t_emp:10.3f} {1.0:9.1%}")
    print(f"{f'total_coding_rate x{args.patches} (fwd+bwd, d={args.out_dim})':50s} {t_tcr:10.4f} "
          f"{t_tcr / t_emp:9.2%}")
    print(f"{'EMP-SSL images/s (source images) / patches/s':50s} {args.emp_batch / t_emp:10.1f} {m / t_emp:9.1f}")


if __name__ == "__main__":
    main()

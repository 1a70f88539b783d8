"""Benchmark: the SSL augmentation pipeline against a SimCLR training step, the CPU settings of an SSL
backbone's training step, DetCon's cached masks, and where an EMP-SSL step spends its time.

Measured side by side in this run on 28x28x1 batches (Fashion-MNIST shape, random pixels):

* images/s of the shared :class:`patchnb.ssl.Augment` pipeline (two views per image, as SimCLR
  draws them) and of one whole SimCLR step (augment + narrow ResNet-18 forward/backward + SGD)
  at batch 256, with their ratio (how many times faster augmentation is than training: the share
  of a step that augmentation costs is 1/ratio);
* one SimCLR step of the SSL chapters' backbone (narrow ResNet-18, ``--widths``: 8 is the zoo's cpu
  scale, 16 EMP-SSL's and the SupCon sweep's) under each CPU setting -- fp32 (the baseline), channels_last
  memory format, bf16 autocast, both, ``torch.compile`` (its compile time reported apart) and one
  thread instead of all -- as interleaved repeats (one step of every setting per round, medians over
  rounds, so the load of the shared machine hits them alike), with the ratio to the baseline and the
  largest loss difference from the baseline along the same trajectory (same initial weights, same
  augmentations: the numerical cost of the setting);
* one DetCon step with the Felzenszwalb masks recomputed every step (``cache_masks=False``) and read
  from the per-image cache (``cache_masks=True``, the default), and the segmentation of the batch alone
  (Fashion-MNIST images when the dataset is there);
* one EMP-SSL step with 20 patches per image, and the share of it spent in
  :func:`patchnb.ssl.total_coding_rate` (forward + backward of the 20 coding rates, timed on the
  same projections).

    .venv/bin/python benchmarks/ssl_methods.py [--width 16] [--batch 256] [--widths 8 16] [--rounds 7]
        [--no-compile] [--emp-batch 32] [--patches 20]
    (or: patchnb bench ssl_methods)

"""

import argparse
import contextlib
import copy
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from patchnb import data
from patchnb.ssl import EMPSSL, DetCon, SimCLR, total_coding_rate
from patchnb.ssl.detcon import felzenszwalb_segments
from patchnb.ssl.methods import _geometry


def best_of(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


class Setting:
    """One way of running the same SimCLR training step: its own copy of the model and optimiser and
    its own generator (seeded alike, so every setting sees the same augmentations at the same step)."""

    def __init__(self, name, method, model, images, splits, dev, threads=None, channels_last="", bf16=False,
                 compile=False):
        self.name, self.method, self.images, self.splits, self.dev = name, method, images, splits, dev
        self.threads, self.channels_last, self.bf16 = threads, channels_last, bf16
        self.model = copy.deepcopy(model)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), 0.01, momentum=0.9)
        self.net = torch.compile(self.model) if compile else self.model
        self.g = torch.Generator().manual_seed(1)
        self.times, self.losses, self.first = [], [], None

    def __call__(self):
        nthreads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            t0 = time.perf_counter()
            ctx = torch.autocast(self.dev.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with ctx:  # the whole step, as fit does with TrainConfig(bf16=True)
                if self.channels_last == "both":  # the input too: the method's step spelled out
                    x = torch.cat(self.method.views(self.images, self.splits, self.g, self.dev))
                    z1, z2 = self.net(x.contiguous(memory_format=torch.channels_last), project=True).chunk(2)
                    loss, _ = self.method.loss(z1, z2), _geometry(z1, z2)
                else:
                    loss, _ = self.method.step(self.net, self.images, None, self.splits, self.g)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            _sync(self.dev)
            dt = time.perf_counter() - t0
        finally:
            torch.set_num_threads(nthreads)
        self.losses.append(loss.item())
        if self.first is None:
            self.first = dt
        else:
            self.times.append(dt)


def backbone_table(width, batch, rounds, dev, compile_ok):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    splits = data.Splits("bench", data.ImageData(images, torch.zeros(len(images), dtype=torch.long), ("a",)),
                         None, None, data.Normalization((0.5,), (0.25,)))
    method = SimCLR()
    torch.manual_seed(0)
    model = method.make_model(1, width).to(dev)
    nt = torch.get_num_threads()
    common = dict(method=method, model=model, images=images, splits=splits, dev=dev)
    settings = [Setting(f"fp32, {nt} threads (baseline)", **common),
                Setting("channels_last (model)", channels_last="model", **common),
                Setting("channels_last (model + input)", channels_last="both", **common),
                Setting("bf16 autocast", bf16=True, **common),
                Setting("channels_last (model) + bf16", channels_last="model", bf16=True, **common)]
    if nt > 1:
        settings.append(Setting("fp32, 1 thread", threads=1, **common))
    if compile_ok:
        settings.append(Setting("torch.compile (inductor)", compile=True, **common))
    for s in settings:  # warm-up round (the compile happens here)
        s()
    for _ in range(rounds):
        for s in settings:
            s()
    base = settings[0]
    t0 = statistics.median(base.times)
    print(f"\nSimCLR step, ResNet-18 width {width}, batch {batch} (2 x {batch} views), {rounds} interleaved rounds")
    print(f"{'setting':34s} {'s/step':>8s} {'images/s':>9s} {'vs fp32':>8s} {'max |dloss|':>12s} {'first step s':>13s}")
    for s in settings:
        t = statistics.median(s.times)
        dl = max(abs(a - b) for a, b in zip(s.losses, base.losses))
        print(f"{s.name:34s} {t:8.3f} {batch / t:9.1f} {t0 / t:7.2f}x {dl:12.2e} {s.first:13.1f}")
    print(f"(vs fp32: speed-up of the median step; max |dloss|: largest loss difference from the baseline over "
          f"the {rounds + 1} steps of the same trajectory, loss ~ {base.losses[0]:.3f}; first step s: the warm-up "
          f"step, which for torch.compile is the compile time)")


def detcon_table(width, batch, rounds, dev):
    try:  # real pictures: Felzenszwalb's cost depends on the image
        images = data.load_splits("fashion_mnist", train_size=batch, val_size=16, test_size=16).train.images
        what = "Fashion-MNIST"
    except Exception:  # noqa: BLE001 (no dataset here: blocky random images, which segment into regions too)
        g = torch.Generator().manual_seed(0)
        images = (torch.rand(batch, 1, 7, 7, generator=g) * 255).to(torch.uint8).repeat_interleave(4, 2)
        images, what = images.repeat_interleave(4, 3).contiguous(), "blocky random"
    splits = data.Splits("bench", data.ImageData(images, torch.zeros(len(images), dtype=torch.long), ("a",)),
                         None, None, data.Normalization((0.5,), (0.25,)))
    torch.manual_seed(0)
    rows = []
    for cache in (False, True):
        method = DetCon(cache_masks=cache)
        model = method.make_model(1, width).to(dev)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
        gen = torch.Generator().manual_seed(1)

        def step(method=method, model=model, opt=opt, gen=gen):
            loss, _ = method.step(model, images, None, splits, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(dev)
        rows.append((f"DetCon step, cache_masks={cache}", step))
    for _, fn in rows:
        fn()  # warm-up: fills the cache
    def segment_only():
        felzenszwalb_segments(images, DetCon().mean_scale)
    rows.append(("Felzenszwalb of the batch alone", segment_only))
    times = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, fn in rows:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    t_off = statistics.median(times[rows[0][0]])
    print(f"\nDetCon step, ResNet-18 width {width}, batch {batch}, {what} 28x28x1 images, {rounds} interleaved rounds")
    print(f"{'setting':34s} {'s/step':>8s} {'images/s':>9s} {'vs uncached':>12s}")
    for name, _ in rows[:2]:
        t = statistics.median(times[name])
        print(f"{name:34s} {t:8.3f} {batch / t:9.1f} {t_off / t:11.2f}x")
    t_seg = statistics.median(times[rows[2][0]])
    print(f"{rows[2][0]:34s} {t_seg:8.3f} {batch / t_seg:9.1f}   ({t_seg / t_off:.0%} of the uncached step)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16], help="backbone widths of the settings table")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the settings and DetCon tables")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the settings table")
    p.add_argument("--only", choices=["all", "settings", "detcon"], default="all")
    p.add_argument("--emp-batch", type=int, default=32)
    p.add_argument("--patches", type=int, default=20)
    p.add_argument("--out-dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    dev = torch.device(args.device)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {dev}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    if args.only in ("all", "settings"):
        for w in args.widths:
            backbone_table(w, args.batch, args.rounds, dev, not args.no_compile)
    if args.only in ("all", "detcon"):
        detcon_table(8, args.batch, args.rounds, dev)
    if args.only != "all":
        return
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.batch, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    splits = data.Splits("bench", data.ImageData(images, torch.zeros(len(images), dtype=torch.long), ("a",)),
                         None, None, data.Normalization((0.5,), (0.25,)))

    method = SimCLR()
    model = method.make_model(1, args.width, out_dim=args.out_dim).to(dev)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)

    def augment():
        method.views(images, splits, g, dev)
        _sync(dev)

    def simclr_step():
        loss, _ = method.step(model, images, None, splits, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(dev)

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
        _sync(dev)

    z = F.normalize(torch.randn(args.patches, args.emp_batch, args.out_dim, device=dev), dim=2).requires_grad_()

    def tcr_only():
        torch.stack([total_coding_rate(z[i], emp.eps) for i in range(args.patches)]).mean().backward()
        _sync(dev)

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

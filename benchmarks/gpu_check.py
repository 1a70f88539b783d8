"""One prepared GPU check (at most 10 minutes on one GPU): every CUDA path against the CPU result, then
paper-scale timings, printed as one table.

Checks (each against the CPU on the same inputs and weights):

* k-nearest selection (Brutzkus et al., ICML 2022, Sec. 5, Phi_hard): :func:`patchnb.embedding.knn_mask` on
  CUDA (torch ``topk`` path) against the CPU C kernel: identical masks (random scores have no ties);
* Phi_hard + AvgPool forward, Phi_full + AvgPool forward and backward (the CUDA plain path against the CPU
  fused :func:`~patchnb.embedding.phi_full_pooled`): outputs and weight gradients within float32 tolerance;
* one SSL step (SimCLR, narrow ResNet-18) on the same views: loss and gradients within tolerance;
* the training loop under ``torchrun --nproc_per_node 1`` with nccl (``patchnb train --device cuda`` on
  synthetic data, two steps);

then timings: one paper-scale epoch of Table 1's Phi_full (N = 1024, k = 256, 5x5, 32x32x3 inputs, batch
64, 50,000 images: CIFAR-10's size, random images, so no dataset is needed) and one EMP-SSL step (20
patches). On a machine without CUDA it is a dry run: the CPU references run (small sizes), each CUDA part
is reported as skipped with the reason, and it exits 0 (``--dry-run`` does the same on a GPU machine).
Exit status 1 when a check fails.

    .venv/bin/python benchmarks/gpu_check.py [--epoch-images 50000] [--budget 240] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

ROWS: list[tuple[str, str, str, str]] = []


def row(check: str, device: str, result: str, seconds: float | None = None) -> None:
    ROWS.append((check, device, result, "" if seconds is None else f"{seconds:.2f}"))
    print(f"{check:>44} | {device:>6} | {result}", flush=True)


def skip(check: str, reason: str) -> None:
    row(check, "cuda", f"SKIPPED: {reason}")


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-4) -> str:
    err = float((a.double().cpu() - b.double().cpu()).abs().max())
    ok = torch.allclose(a.cpu(), b.cpu(), rtol=rtol, atol=atol)
    return f"{'OK' if ok else 'FAIL'} (max abs diff {err:.2e}, rtol {rtol:g}, atol {atol:g})"


def embedding_checks(cuda: bool, reason: str) -> None:
    from patchnb.embedding import PatchEmbedding, kernel_backend, knn_mask, knn_mask_reference

    torch.manual_seed(0)
    scores = torch.randn(2, 64, 7, 7)
    ref = knn_mask_reference(scores, 16)
    cpu = knn_mask(scores, 16)
    row("kNN selection vs stable-sort reference", "cpu", f"{'OK' if torch.equal(cpu, ref) else 'FAIL'} "
        f"(backend {kernel_backend(scores)})")
    if cuda:
        got = knn_mask(scores.cuda(), 16)
        row("kNN selection", "cuda", "OK (identical mask)" if torch.equal(got.cpu(), cpu) else "FAIL (masks differ)")
    else:
        skip("kNN selection", reason)

    n, k, p = 64, 16, 5
    centroids, white = torch.randn(n, 3 * p * p), torch.eye(3 * p * p) / p
    x = torch.randn(4, 3, 16, 16)
    hard = PatchEmbedding(centroids, white, p, 3, k, mode="hard")
    with torch.no_grad():
        h_cpu = hard(x, pool=(4, 4, True))
        h_plain = F.avg_pool2d(hard.mask(x), 4, 4, ceil_mode=True)
    row("Phi_hard + AvgPool fused vs mask-then-pool", "cpu", _close(h_cpu, h_plain, 0, 0))
    torch.manual_seed(1)
    full = PatchEmbedding(centroids, white, p, 3, k, mode="full")
    out = full(x, pool=(4, 4, True))
    out.square().sum().backward()
    f_cpu, g_cpu = out.detach(), full.conv.weight.grad.clone()
    full.zero_grad()
    full.fused = False
    plain = full(x, pool=(4, 4, True))
    plain.square().sum().backward()
    row("Phi_full fused vs plain autograd, forward", "cpu", _close(f_cpu, plain.detach()))
    row("Phi_full fused vs plain autograd, grad W", "cpu", _close(g_cpu, full.conv.weight.grad, 1e-4, 1e-3))
    full.fused = True
    if not cuda:
        for name in ("Phi_hard + AvgPool forward", "Phi_full + AvgPool forward", "Phi_full + AvgPool grad W"):
            skip(name, reason)
        return
    hard_c, full_c = hard.cuda(), full.cuda()
    full_c.zero_grad()
    with torch.no_grad():
        row("Phi_hard + AvgPool forward", "cuda", _close(hard_c(x.cuda(), pool=(4, 4, True)), h_cpu, 0, 1e-6))
    o = full_c(x.cuda(), pool=(4, 4, True))
    o.square().sum().backward()
    row("Phi_full + AvgPool forward", "cuda", _close(o.detach(), f_cpu))
    row("Phi_full + AvgPool grad W", "cuda", _close(full_c.conv.weight.grad, g_cpu, 1e-4, 1e-3))


def ssl_check(cuda: bool, reason: str) -> None:
    import copy

    from patchnb import data
    from patchnb.ssl import SimCLR

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    splits = data.Splits("check", data.ImageData(images, torch.zeros(16, dtype=torch.long), ("a",)), None, None,
                         data.Normalization((0.5,), (0.25,)))
    method = SimCLR()
    torch.manual_seed(0)
    model = method.make_model(1, 8)
    x = torch.cat(method.views(images, splits, g, torch.device("cpu")))

    def loss_grad(m, dev):
        m = m.to(dev)
        z1, z2 = m(x.to(dev), project=True).chunk(2)
        loss = method.loss(z1, z2)
        loss.backward()
        return loss.detach().cpu(), torch.cat([q.grad.flatten().cpu() for q in m.parameters() if q.grad is not None])

    t0 = time.perf_counter()
    l_cpu, g_cpu = loss_grad(copy.deepcopy(model), "cpu")
    ok = bool(torch.isfinite(l_cpu)) and bool(torch.isfinite(g_cpu).all())
    row("SSL step (SimCLR, ResNet-18 w8)", "cpu", f"{'OK' if ok else 'FAIL'} (loss {float(l_cpu):.4f})",
        time.perf_counter() - t0)
    if not cuda:
        skip("SSL step (SimCLR, ResNet-18 w8)", reason)
        return
    l_gpu, g_gpu = loss_grad(copy.deepcopy(model), "cuda")
    row("SSL step (SimCLR, ResNet-18 w8) loss", "cuda", _close(l_gpu, l_cpu, 1e-3, 1e-4))
    row("SSL step (SimCLR, ResNet-18 w8) grads", "cuda", _close(g_gpu, g_cpu, 1e-2, 1e-3))


def torchrun_check(cuda: bool, reason: str) -> None:
    if not cuda:
        skip("training loop under torchrun (nccl)", reason)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "patchnb", "train",
               "--dataset", "synthetic", "--device", "cuda", "--epochs", "1", "--n-centroids", "64", "--k", "16",
               "--n-patches", "4096", "--kmeans-iters", "2", "--train-size", "128", "--val-size", "64",
               "--test-size", "64", "--augment", "false", "--run-dir", tmp]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        ok = proc.returncode == 0 and os.path.exists(os.path.join(tmp, "summary.json"))
        row("training loop under torchrun (nccl)", "cuda",
            "OK" if ok else f"FAIL (exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]})",
            time.perf_counter() - t0)


def timings(cuda: bool, reason: str, epoch_images: int, budget: float) -> None:
    if not cuda:
        skip("Table 1 paper-scale epoch (Phi_full N=1024)", reason)
        skip("EMP-SSL step (20 patches, ResNet-18 w16)", reason)
        return
    from patchnb import data
    from patchnb.embedding import PatchEmbedding
    from patchnb.models import LocallyLinearNetwork
    from patchnb.ssl import EMPSSL

    dev = torch.device("cuda")
    torch.manual_seed(0)
    emb = PatchEmbedding(torch.randn(1024, 75), torch.eye(75) / 5, 5, 3, 256, mode="full")
    net = LocallyLinearNetwork(emb, (3, 32, 32)).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.003, momentum=0.9)
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    steps = epoch_images // 64
    t0 = time.perf_counter()
    done = 0
    for done in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if done % 50 == 0:
            torch.cuda.synchronize()
            if time.perf_counter() - t0 > budget:
                break
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    what = "one epoch" if done == steps else f"{done}/{steps} steps (budget), epoch extrapolated"
    row("Table 1 paper-scale epoch (Phi_full N=1024)", "cuda",
        f"{done * 64 / dt:.0f} img/s; {dt * steps / done:.1f} s per epoch ({what})", dt)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(32, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    splits = data.Splits("check", data.ImageData(images, torch.zeros(32, dtype=torch.long), ("a",)), None, None,
                         data.Normalization((0.5,), (0.25,)))
    emp = EMPSSL(n_patches=20)
    model = emp.make_model(1, 16).to(dev)
    eopt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    ts = []
    for _ in range(4):
        t0 = time.perf_counter()
        loss, _ = emp.step(model, images, None, splits, g)
        eopt.zero_grad()
        loss.backward()
        eopt.step()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    best = min(ts[1:])
    row("EMP-SSL step (20 patches, ResNet-18 w16)", "cuda", f"{32 / best:.0f} img/s ({32 * 20 / best:.0f} patches/s)",
        best)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epoch-images", type=int, default=50000)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds at most for the epoch timing")
    ap.add_argument("--dry-run", action="store_true", help="skip every CUDA part even where a GPU is present")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    reason = "" if cuda else ("--dry-run" if args.dry_run else
                              "no CUDA device (torch.cuda.is_available() is False): dry run")
    print(f"# gpu_check: torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0) if cuda else 'CPU only: CUDA parts skip'}")
    print(f"{'check':>44} | {'device':>6} | result")
    t0 = time.perf_counter()
    embedding_checks(cuda, reason)
    ssl_check(cuda, reason)
    torchrun_check(cuda, reason)
    timings(cuda, reason, args.epoch_images, args.budget)
    fails = [r for r in ROWS if r[2].startswith("FAIL")]
    skips = [r for r in ROWS if r[2].startswith("SKIPPED")]
    print(f"# {len(ROWS)} rows, {len(fails)} failed, {len(skips)} skipped, {time.perf_counter() - t0:.1f} s")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Side by side: ``patchnb train`` against the original code (AlonNT/patch-based-learning ``main.py``,
PyTorch Lightning) on Table 1's Phi_full experiment at the cpu scale (Brutzkus et al., ICML 2022):
clustered dictionary, depth 1, N = 256, k = 64, 65,536 patches, 5x5 PCA whitening, AvgPool 4/4,
BatchNorm, bottleneck 32, no augmentation, SGD lr 0.003 momentum 0.9, batch 64, one epoch on
Fashion-MNIST, seed 0, the same thread count for both; prints the training images/s of each and
their ratio (issue 21: the target is >= 5x the original's).

The original's code is not part of patchnb and never a test dependency: its folder is given by
``--original PATH`` or ``$PATCHNB_ORIGINAL``; without it, or without its dependencies (lightning,
sklearn, ...), the script prints why it skips and exits 0. The original's images/s is read from its
own progress output (Lightning's ``it/s`` of the training loop x batch size), or, when absent, from
its wall-clock over the epoch (an upper bound on its time, so a lower bound on its speed).

    .venv/bin/python benchmarks/original.py [--original PATH] [--threads 2] [--train-size N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORIGINAL_DEPENDENCIES = ("lightning", "sklearn", "torchvision", "wandb", "loguru", "pydantic")
EXPERIMENT = ["--embedding", "full", "--n-centroids", "256", "--k", "64", "--n-patches", "65536", "--whitening", "pca",
              "--kernel-size", "5", "--pool-size", "4", "--pool-stride", "4", "--bottleneck", "true",
              "--bottleneck-dim", "32", "--augment", "false", "--lr", "0.003", "--momentum", "0.9",
              "--batch-size", "64", "--epochs", "1", "--dataset", "fashion_mnist", "--seed", "0"]
#: the same experiment in the original's main.py options (its README's Table 1 Phi_full line at N = 256)
ORIGINAL_ARGS = ["--train_locally_linear_network", "True", "--use_conv", "True", "--n_clusters", "256", "--k", "64",
                 "--n_patches", "65536", "--kernel_size", "5", "--use_avg_pool", "True", "--pool_size", "4",
                 "--pool_stride", "4", "--use_batch_norm", "True", "--use_bottle_neck", "True",
                 "--learning_rate", "0.003", "--batch_size", "64", "--epochs", "1", "--dataset_name", "FashionMNIST",
                 "--seed", "0"]


def skip_reason(original: str | None) -> str | None:
    """Why the side by side cannot run here (``None`` when it can)."""
    if not original:
        return "no path to the original's code: pass --original PATH or set PATCHNB_ORIGINAL"
    main = Path(original) / "main.py"
    if not main.is_file():
        return f"{main} does not exist: --original / PATCHNB_ORIGINAL must be the original repository's folder"
    missing = [m for m in ORIGINAL_DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        return f"the original's dependencies are not installed in this python: {', '.join(missing)}"
    return None


def run_patchnb(threads: int, train_size: int | None) -> float:
    """Training images/s of ``patchnb train`` on the experiment (its own summary.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--train-size", str(train_size)] if train_size else []
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-m", "patchnb", "train", *EXPERIMENT, *extra, "--run-dir", tmp], env=env,
                       check=True, capture_output=True, text=True)
        return json.loads((Path(tmp) / "summary.json").read_text())["results"][0]["images_per_second"]


def run_original(original: str, threads: int, train_images: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), WANDB_MODE="offline")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "main.py", *ORIGINAL_ARGS, "--device", "cpu"], cwd=original, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"the original's main.py failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    rates = [float(r) for r in re.findall(r"([0-9.]+)it/s", proc.stderr + proc.stdout)]
    return max(rates) * 64 if rates else train_images / wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", default=os.environ.get("PATCHNB_ORIGINAL"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=None, help="patchnb's training images (default: all 54,000)")
    args = ap.parse_args()
    reason = skip_reason(args.original)
    if reason:
        print(f"SKIP: original.py side by side not run: {reason}")
        return 0
    ours = run_patchnb(args.threads, args.train_size)
    theirs = run_original(args.original, args.threads, args.train_size or 54000)
    print(f"# Table 1 Phi_full at N=256, k=64, one epoch of Fashion-MNIST, {args.threads} threads")
    print(f"{'code':>24} | {'train img/s':>11} | ratio")
    print(f"{'original main.py':>24} | {theirs:>11.0f} | 1.00x")
    print(f"{'patchnb train':>24} | {ours:>11.0f} | {ours / theirs:.2f}x  (target >= 5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

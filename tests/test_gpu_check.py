"""benchmarks/gpu_check.py as a dry run: the CPU references run and pass, every CUDA part is reported as
skipped with its reason, exit 0 (fast: small sizes)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_PARTS = ("kNN selection", "Phi_hard + AvgPool forward", "Phi_full + AvgPool forward", "Phi_full + AvgPool grad W",
              "SSL step (SimCLR, ResNet-18 w8)", "training loop under torchrun (nccl)",
              "Table 1 paper-scale epoch (Phi_full N=1024)", "EMP-SSL step (20 patches, ResNet-18 w16)")
CPU_PARTS = ("kNN selection vs stable-sort reference", "Phi_hard + AvgPool fused vs mask-then-pool",
             "Phi_full fused vs plain autograd, forward", "Phi_full fused vs plain autograd, grad W",
             "SSL step (SimCLR, ResNet-18 w8)")


def test_gpu_check_dry_run():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [[c.strip() for c in line.split("|")] for line in proc.stdout.splitlines() if line.count("|") == 2]
    cuda = {name: result for name, dev, result in rows if dev == "cuda"}
    cpu = {name: result for name, dev, result in rows if dev == "cpu"}
    for name in CUDA_PARTS:
        assert cuda[name].startswith("SKIPPED: --dry-run"), (name, cuda.get(name))
    for name in CPU_PARTS:
        assert cpu[name].startswith("OK"), (name, cpu.get(name))
    assert "0 failed" in proc.stdout and f"{len(CUDA_PARTS)} skipped" in proc.stdout

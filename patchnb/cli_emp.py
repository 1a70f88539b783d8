"""``patchnb emp-ssl``: the EMP-SSL system's entry point, a thin argument parser over :class:`patchnb.ssl.EMPSSL`
(run machinery, shared with ``patchnb supcon`` and ``patchnb ssl`` of :mod:`patchnb.cli_ssl`: :mod:`patchnb.cli_run`).
Every run trains with :func:`patchnb.train.fit` in a run folder (``last.pt`` every epoch, so the same command run
again continues exactly where it stopped; a finished run returns its stored result), writes ``hparams.yaml`` and
``summary.json``; ``--dry-run``, ``--time-budget`` and the exit codes are those of :mod:`patchnb.cli_ssl`.

**EMP-SSL** (Tong, Chen, LeCun, Ma 2023, "EMP-SSL: Towards Self-Supervised Learning in One Training
Epoch"; kachayev/ssl-in-one-epoch's ``main.py``):

==================================  ==========================================================
``main.py train`` / ``resume``       ``patchnb emp-ssl train`` / ``resume --exp-dir DIR``
==================================  ==========================================================
``--exp_name`` / ``--log_folder``    ``--exp-name`` / ``--log-folder`` (default ``runs/emp-ssl``,
                                     not ``logs/EMP-SSL-Training``); the folder is named
                                     ``<exp-name>__numpatch<n>_bs<bs>_lr<lr>`` as there
``--dataset`` (cifar10, cifar100)    ``--dataset`` (also fashion_mnist, imagefolder, synthetic)
``--n_patches`` (100)                ``--n-patches`` (100)
``--arch resnet18-cifar``            ``--width 64`` (CIFAR-stem ResNet-18, features 8 x width);
                                     the ImageNet-stem variants are not offered
``--n_epochs`` (2) / ``--bs`` (100)  ``--epochs`` (2) / ``--batch-size`` (100)
``--lr`` (0.3), LARS, cosine         ``--lr`` (0.3), ``optimizer=lars_solo`` (the official code's
                                     solo-learn LARS wrapper: eta 0.005, clipping, biases and
                                     norms excluded, Nesterov SGD), weight decay 1e-4, momentum
                                     0.9, cosine per step (the port's schedule was broken)
``--h_dim`` (4096) / ``--z_dim``     ``--hidden-dim`` (4096) / ``--out-dim`` (1024) of the head
``--tcr_eps`` (0.2)                  ``--eps`` (0.2)
``--invariance_loss_weight`` (200)   ``--invariance-weight`` (200)
``--seed`` (42) / ``--device``       ``--seed`` (42) / ``--device`` (``auto``: cuda if present)
``--resume`` / ``resume --exp_dir``  implicit (the run folder resumes) / ``resume --exp-dir``
``--config_from DIR``                ``--config-from DIR`` (its hparams.yaml; flags win)
``--save_proj``                      ``--save-proj`` (test embeddings to ``projections.csv``)
``--n_eval_epochs`` / ``--eval_lr``  the probe is :func:`patchnb.eval.linear_probe` (L2 chosen
                                     on validation); plus weighted kNN, on features averaged
                                     over ``--eval-patches`` crops (default: ``--n-patches``)
``--eval_freq``                      per-epoch whole-image kNN on validation (model selection);
                                     the probe (:func:`patchnb.eval.evaluate_encoder`) runs once,
                                     at the end
``--uniformity_loss vonmises``,      not offered (TCR only; the pre_feature layer's output as the
                                     port's ``--emb_pool features``; fixed weight 1;
``--emb_pool proj``,                 no frozen pretrained head; one ``last.pt`` per run, so no
``--uniformity_loss_weight``,        ``cleanup``; tqdm instead of print frequencies)
``--pretrained_proj``, ``cleanup``,
``--print_freq``
==================================  ==========================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from .cli_run import (
    EXIT_STOPPED,
    HPARAMS,
    INVOCATION,
    BackboneCheckpoints,
    add_data_options,
    add_run_options,
    check_data_options,
    guarded,
    load_data,
    non_negative,
    report,
    run_options,
    train,
)
from .models.patch import seeded_init
from .ssl import EMPSSL
from .train import TrainConfig

__all__ = ["EXIT_STOPPED", "main_emp_ssl"]


def _emp_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``patchnb emp-ssl`` parser and its ``train`` sub-parser."""
    p = argparse.ArgumentParser(prog="patchnb emp-ssl", description="EMP-SSL (Tong et al. 2023) pre-training, "
                                "then linear probe + kNN on patch-averaged features; see patchnb.cli_emp.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or continue) an EMP-SSL run")
    a = t.add_argument
    a("--exp-name", default="default")
    a("--log-folder", default="runs/emp-ssl")
    a("--n-patches", type=int, default=100, help="crops per image (default 100)")
    a("--eval-patches", type=int, default=None, help="crops averaged for evaluation (default --n-patches; 0: "
      "whole images)")
    a("--width", type=int, default=64, help="ResNet-18 width (64: resnet18-cifar)")
    a("--epochs", type=int, default=2)
    a("--batch-size", type=int, default=100)
    a("--lr", type=float, default=0.3)
    a("--hidden-dim", type=int, default=4096)
    a("--out-dim", type=int, default=1024)
    a("--eps", type=float, default=0.2, help="coding-rate precision")
    a("--invariance-weight", type=float, default=200.0)
    a("--save-freq", type=non_negative(int), default=1, help="backbone checkpoint every N epochs (0: none)")
    a("--seed", type=int, default=42)
    a("--device", default="auto")
    a("--save-proj", action="store_true", help="write the test embeddings to projections.csv")
    a("--config-from", default=None, metavar="DIR", help="take the options of the run folder DIR (flags win)")
    add_data_options(t, "cifar10")
    add_run_options(t)
    r = sub.add_parser("resume", help="continue the run in --exp-dir with its hparams.yaml")
    r.add_argument("--exp-dir", required=True, metavar="DIR")
    add_run_options(r)
    return p, t


def _emp_args(argv) -> argparse.Namespace:
    """Parse; ``resume`` takes every option from the run folder's hparams.yaml, ``--config-from`` all but the
    run's name and folder (flags given on the command line win)."""
    p, t = _emp_parsers()
    args = p.parse_args(argv)
    if args.cmd == "train" and args.config_from is None:
        return args
    option = "--exp-dir" if args.cmd == "resume" else "--config-from"
    folder = Path(args.exp_dir if args.cmd == "resume" else args.config_from)
    path = folder / HPARAMS
    if not path.is_file():
        raise ValueError(f"{option}: no {HPARAMS} in {folder} (not a patchnb emp-ssl run folder)")
    stored = yaml.safe_load(path.read_text()) or {}
    known = {a.dest for a in t._actions} - {"help", *INVOCATION}
    unknown = sorted(set(stored) - known - {"run_dir"})
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}")
    keep = known if args.cmd == "resume" else known - {"exp_name", "log_folder"}
    t.set_defaults(**{k: v for k, v in stored.items() if k in keep})
    if args.cmd == "train":
        return p.parse_args(argv)
    out = p.parse_args(["train"])
    out.time_budget, out.dry_run, out.resume_dir = args.time_budget, args.dry_run, folder
    return out


def _emp_body(argv) -> int:
    args = _emp_args(argv)
    check_data_options(args)
    method = EMPSSL(n_patches=args.n_patches, eps=args.eps, invariance_weight=args.invariance_weight)
    if args.eval_patches is None:
        args.eval_patches = args.n_patches
    if args.eval_patches == 1 or args.eval_patches < 0:
        raise ValueError(f"--eval-patches must be 0 (whole images) or >= 2, got {args.eval_patches}")
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="lars_solo", lr=args.lr, momentum=0.9,
                       weight_decay=1e-4, schedule="cosine", milestones=(), seed=args.seed, device=args.device)
    run_dir = getattr(args, "resume_dir", None) or \
        Path(args.log_folder) / f"{args.exp_name}__numpatch{args.n_patches}_bs{args.batch_size}_lr{args.lr}"
    if args.dry_run:
        print(json.dumps({"command": "emp-ssl", "run_dir": str(run_dir), "options": run_options(args),
                          "method": dataclasses.asdict(method), "train": dataclasses.asdict(tcfg)}, indent=1))
        return 0
    splits = load_data(args)
    with seeded_init(args.seed):
        model = method.make_model(splits.shape[0], args.width, args.hidden_dim, args.out_dim)
    ckpts = BackboneCheckpoints(run_dir / "checkpoints", args.save_freq, args.epochs, {"method": method.name})
    res = train(args, model, splits, tcfg, method, run_dir, f"emp-ssl-{args.exp_name}", [ckpts])
    return report(args, model, splits, res, run_dir, args.eval_patches or None, name=args.exp_name)


def main_emp_ssl(argv=None) -> int:
    """``patchnb emp-ssl train [options]`` / ``patchnb emp-ssl resume --exp-dir DIR``."""
    return guarded("patchnb emp-ssl", _emp_body, sys.argv[1:] if argv is None else list(argv))

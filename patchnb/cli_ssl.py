"""``patchnb emp-ssl``, ``patchnb supcon`` and ``patchnb ssl``: the self-supervised systems' entry points.

Thin argument parsers over :mod:`patchnb.ssl` (run machinery: :mod:`patchnb.cli_run`); every run
trains with :func:`patchnb.train.fit` in a run folder (``last.pt`` every epoch, so the same command
run again continues exactly where it stopped; a finished run returns its stored result), writes
``hparams.yaml`` (the resolved options) and ``summary.json``. ``--dry-run`` validates the options
and prints the resolved configuration. ``--time-budget SECONDS`` stops cleanly before the first
epoch that would start after SECONDS (``0``: after one epoch) with exit code 75 (EX_TEMPFAIL: run
again to resume). Bad options and configuration errors exit with code 2 and a one-line message
naming the option.

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

**SupCon** (Khosla et al. 2020, "Supervised Contrastive Learning"; HobbitLong/SupContrast's
``main_supcon.py`` as used by the SupCon thesis repository):

==================================  ==========================================================
``main_supcon.py``                   ``patchnb supcon``
==================================  ==========================================================
``--batch_size`` (256)               ``--batch-size`` (256)
``--epochs`` (1000)                  ``--epochs`` (1000)
``--learning_rate`` (0.05)           ``--lr`` (0.05)
``--lr_decay_epochs`` ('700,800,900') ``--lr-decay-epochs`` (700,800,900; commas or spaces)
``--lr_decay_rate`` (0.1)            ``--lr-decay-rate`` (0.1)
``--weight_decay`` / ``--momentum``  ``--weight-decay`` (1e-4) / ``--momentum`` (0.9)
``--cosine``                         ``--cosine`` (to 0; the original stops at lr x rate^3)
``--warm`` (on when batch > 256)     ``--warm`` (10 linear warm-up epochs from 0, also on when
                                     batch > 256; the original starts at 0.01)
``--model resnet50``                 ``--width 64``: the CIFAR-stem ResNet-18 (ResNet-50 and
                                     SE-ResNeXt-50 are not offered)
``--dataset`` cifar10/cifar100/path  ``--dataset`` (``path`` = ``imagefolder``; also
                                     fashion_mnist, synthetic)
``--data_folder`` / ``--size``       ``--data-root`` / ``--image-size``
``--mean`` / ``--std``               ``--mean`` / ``--std`` ("0.04, 0.03, 0.04" or numbers;
                                     default: computed on the train split)
``--method`` SupCon/SimCLR           ``--method`` supcon/simclr
``--temp`` (0.07)                    ``--temp`` (0.07)
``--save_freq`` (50)                 ``--save-freq`` (50): ``RUN/checkpoints/epoch_NNN.pt`` every
                                     N epochs and after the last one, the layout that
                                     ``patchnb sweep-checkpoints RUN/checkpoints`` reads
                                     (``--sweep`` runs it at the end)
``--trial`` ('0')                    ``--trial`` (part of the run name, as there)
save/SupCon/<dataset>_models/<name>  ``--run-dir`` (default ``runs/supcon/<name>``)
``--syncBN``, ``--num_workers``,     not offered (in-memory data, one process); tqdm instead
``--print_freq``                     of print frequencies
==================================  ==========================================================

Augmentation: crop scale 0.2-1, flip, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, no
blur, as there. Projection head ``Linear(d, d) -> ReLU -> Linear(d, 128)`` without BatchNorm, as there.
Each epoch is also scored by weighted kNN on a validation split held out of train (the original has
none); the sweep selects on that split and tests once.

**SSL zoo** (jg10545/patchwork ``patchwork.feature`` trainers: one method + YAML config):

==================================  ==========================================================
patchwork trainer argument           ``patchnb ssl METHOD [--config FILE] [overrides]``
==================================  ==========================================================
the trainer class                    ``METHOD``: a key of :data:`patchnb.ssl.METHODS`
(keyword arguments in code)          ``--config`` (default: the shipped ``patchnb/ssl/configs/
                                     METHOD.yaml`` when there is one, see
                                     :mod:`patchnb.ssl.config`)
``temperature``, ``tau``, ``beta``,  ``--param NAME=VALUE`` (fields of the method's dataclass:
``tau_plus``, ``alpha``, ``k``,      ``temperature``, ``momentum``, ``queue_size``,
``pca_dim``, ``mean_scale``,         ``n_clusters``, ``pca_dim``, ``mean_scale``,
``num_samples``, ``batches_in_buf``  ``num_samples``, ...; values are YAML)
``augment`` dict                     ``--augment NAME=VALUE`` (fields of ``Augment``)
``lr`` / ``batch_size`` /            ``--lr`` / ``--batch-size`` / ``--weight-decay``
``weight_decay``                     (override the config's ``train:`` section)
``opt_type`` adam/momentum           ``--optimizer`` adam/sgd (+ ``lars``, ``adamw``)
``decay_type`` / ``lr_decay``        ``--schedule`` (+ ``--train step_epochs=N gamma=G``: epochs,
                                     not steps)
any other ``TrainConfig`` field      ``--train NAME=VALUE``
``num_hidden`` / ``output_dim``      ``--hidden-dim`` / ``--out-dim`` (default: the method's)
``batchnorm``                        ``--batchnorm true|false``
``fcn``                              ``--width`` (16): the CIFAR-stem ResNet-18
``trainingdata`` / ``imshape``       ``--dataset`` (fashion_mnist) / ``--data-root`` /
                                     ``--image-size``
``downstream_labels``                the dataset's labels: per-epoch kNN on validation, then a
                                     linear probe + kNN + uniformity at the end
``trainer.fit(N)``                   ``--epochs N`` (10, as in patchwork's examples)
``log_dir`` / ``notes``              ``--run-dir`` (default ``runs/ssl/<method>-<dataset>-seed<s>``)
                                     / ``--notes`` (stored in hparams.yaml)
``save_projections()``               ``--save-proj``
``strategy``, ``num_parallel_calls``, not offered (one process, in-memory data; use the
``load_weights``, ``testdata``       test split)
==================================  ==========================================================
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
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
    bool_arg,
    check_data_options,
    guarded,
    load_data,
    non_negative,
    numbers,
    print_summary,
    run_options,
    train,
    write_json,
)
from .eval import evaluate_encoder, save_projections, sweep_checkpoints
from .models.patch import seeded_init
from .optim import OPTIMIZERS, SCHEDULES
from .ssl import EMPSSL, METHODS, Augment, SimCLR, SupCon
from .ssl.config import available_configs, build_method, read_method_config
from .ssl.emp import patch_averaged_features
from .train import TrainConfig

__all__ = ["EXIT_STOPPED", "main_emp_ssl", "main_ssl", "main_supcon"]


def report(args, model, splits, res, run_dir: Path, n_patches: int | None, **fields) -> int:
    """summary.json and the printed summary of a pre-training run: ``fields``, the run's selection (best epoch,
    its whole-image kNN on validation) and :func:`representation_summary` of the selected backbone."""
    summary = {**fields, "run_dir": str(run_dir), "best_epoch": res.best_epoch, "val_knn": res.val["score"],
               "train_seconds": res.seconds,
               **representation_summary(model.backbone, splits, n_patches, args.seed,
                                        run_dir / "projections.csv" if args.save_proj else None)}
    write_json(run_dir / "summary.json", summary)
    print(splits.describe())
    print_summary(summary)
    return 0


def representation_summary(encoder, splits, n_patches: int | None, seed: int, save_proj: Path | None) -> dict:
    """The book's frozen-encoder protocol (:func:`patchnb.eval.evaluate_encoder`: val-selected linear probe
    scored once on test, weighted kNN, alignment / uniformity) on whole images, or with ``n_patches`` on
    EMP-SSL's patch-averaged features (then without the geometry, which is of whole images)."""
    def averaged(enc, data, s, split):
        return patch_averaged_features(enc, data, s, n_patches, seed + ("train", "val", "test").index(split))

    r = evaluate_encoder(encoder, splits, features_fn=averaged if n_patches else None, seed=seed,
                         n_geometry=None if n_patches else 1000, return_test_features=save_proj is not None)
    if save_proj is not None:
        save_projections(save_proj, r["test_features"], r["test_labels"], "test", splits.classes)
    return {k: v for k, v in r.items() if isinstance(v, (int, float))}


# ----------------------------------------------------------------------------- emp-ssl


def _emp_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``patchnb emp-ssl`` parser and its ``train`` sub-parser."""
    p = argparse.ArgumentParser(prog="patchnb emp-ssl", description="EMP-SSL (Tong et al. 2023) pre-training, "
                                "then linear probe + kNN on patch-averaged features; see patchnb.cli_ssl.")
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


# ----------------------------------------------------------------------------- supcon


def _supcon_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchnb supcon", description="Supervised contrastive pre-training (Khosla "
                                "et al. 2020) with backbone checkpoints for patchnb sweep-checkpoints; see "
                                "patchnb.cli_ssl.")
    a = p.add_argument
    a("--method", choices=("supcon", "simclr"), default="supcon")
    a("--batch-size", type=int, default=256)
    a("--epochs", type=int, default=1000)
    a("--lr", type=float, default=0.05)
    a("--lr-decay-epochs", nargs="+", default=["700,800,900"], help="milestones, e.g. 700,800,900")
    a("--lr-decay-rate", type=float, default=0.1)
    a("--weight-decay", type=float, default=1e-4)
    a("--momentum", type=float, default=0.9)
    a("--cosine", action="store_true", help="cosine schedule instead of the milestones")
    a("--warm", action="store_true", help="10 warm-up epochs (always on for batch size > 256)")
    a("--temp", type=float, default=0.07)
    a("--width", type=int, default=64, help="ResNet-18 width (64: the standard network)")
    a("--save-freq", type=non_negative(int), default=50,
      help="backbone checkpoint every N epochs and after the last (0: none)")
    a("--trial", default="0")
    a("--seed", type=int, default=0)
    a("--device", default="auto")
    a("--run-dir", default=None, help="default runs/supcon/<method>_<dataset>_..._trial_<trial>")
    a("--sweep", action="store_true", help="then run patchnb sweep-checkpoints on the checkpoints")
    add_data_options(p, "cifar10", extra=("path",))
    add_run_options(p)
    return p


def _supcon_body(argv) -> int:
    args = _supcon_parser().parse_args(argv)
    if args.dataset == "path":
        args.dataset = "imagefolder"
    check_data_options(args)
    milestones = numbers(args.lr_decay_epochs, "--lr-decay-epochs", int)
    warm = args.warm or args.batch_size > 256
    cls = SupCon if args.method == "supcon" else SimCLR
    method = cls(temperature=args.temp, augment=Augment(hue=0.1, blur_prob=0.0))
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       schedule="cosine" if args.cosine else "multistep", milestones=tuple(milestones),
                       gamma=args.lr_decay_rate, warmup_epochs=10.0 if warm else 0.0, seed=args.seed,
                       device=args.device)
    name = (f"{'SupCon' if args.method == 'supcon' else 'SimCLR'}_{args.dataset}_resnet18w{args.width}_lr_{args.lr}"
            f"_decay_{args.weight_decay}_bsz_{args.batch_size}_temp_{args.temp}_trial_{args.trial}"
            + ("_cosine" if args.cosine else "") + ("_warm" if warm else ""))
    run_dir = Path(args.run_dir or Path("runs") / "supcon" / name)
    folder = run_dir / "checkpoints"
    if args.dry_run:
        print(json.dumps({"command": "supcon", "run_dir": str(run_dir), "checkpoints": str(folder),
                          "options": run_options(args), "method": dataclasses.asdict(method),
                          "train": dataclasses.asdict(tcfg)}, indent=1))
        return 0
    splits = load_data(args)
    width = 8 * args.width
    with seeded_init(args.seed):
        model = method.make_model(splits.shape[0], args.width, hidden_dim=width, out_dim=128, batchnorm=False)
    ckpts = BackboneCheckpoints(folder, args.save_freq, args.epochs, {"method": method.name})
    res = train(args, model, splits, tcfg, method, run_dir, name, [ckpts])
    summary = {"name": name, "run_dir": str(run_dir), "checkpoints": str(folder), "best_epoch": res.best_epoch,
               "val_knn": res.val["score"], "train_seconds": res.seconds}
    sweep_cmd = (f"patchnb sweep-checkpoints {folder} --dataset {args.dataset} --width {args.width}"
                 + (f" --data-root {args.data_root}" if args.data_root else ""))
    if args.sweep and args.save_freq:
        fresh = copy.deepcopy(model.backbone)
        sw = sweep_checkpoints(folder, lambda: copy.deepcopy(fresh), splits)
        summary.update({"sweep_best": sw.best, "sweep_best_epoch": sw.best_epoch,
                        **{f"test_{k}": sw.test[k] for k in ("accuracy", "precision", "recall", "f1")}})
        print(sw.table().to_string(index=False))
    write_json(run_dir / "summary.json", summary)
    print(splits.describe())
    print_summary(summary)
    if not args.sweep:
        print(f"linear head on every checkpoint: {sweep_cmd}")
    return 0


def main_supcon(argv=None) -> int:
    """``patchnb supcon [options]``."""
    return guarded("patchnb supcon", _supcon_body, sys.argv[1:] if argv is None else list(argv))


# ----------------------------------------------------------------------------- ssl zoo


def _ssl_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchnb ssl", description="Train one self-supervised method of the zoo "
                                "(method + YAML config), then linear probe + kNN; see patchnb.cli_ssl.")
    a = p.add_argument
    a("method", choices=sorted(METHODS), metavar="METHOD", help=", ".join(sorted(METHODS)))
    a("--config", default=None, help="YAML config (name of a shipped one or a path); default: METHOD's")
    a("--param", action="append", default=[], metavar="NAME=VALUE", help="method field (repeatable)")
    a("--augment", action="append", default=[], metavar="NAME=VALUE", help="Augment field (repeatable)")
    a("--train", action="append", default=[], metavar="NAME=VALUE", help="TrainConfig field (repeatable)")
    a("--epochs", type=int, default=10)
    a("--batch-size", type=int, default=None, help="default: the config's")
    a("--lr", type=float, default=None)
    a("--weight-decay", type=float, default=None)
    a("--optimizer", choices=OPTIMIZERS, default=None)
    a("--schedule", choices=SCHEDULES, default=None)
    a("--width", type=int, default=16, help="ResNet-18 width (features 8 x width)")
    a("--hidden-dim", type=int, default=None)
    a("--out-dim", type=int, default=None)
    a("--batchnorm", type=bool_arg, default=None, help="BatchNorm in the projection head")
    a("--seed", type=int, default=0)
    a("--device", default="auto")
    a("--notes", default="")
    a("--run-dir", default=None)
    a("--save-proj", action="store_true", help="write the test embeddings to projections.csv")
    add_data_options(p, "fashion_mnist")
    add_run_options(p)
    return p


def _assignments(items: list[str], option: str, allowed: set[str], what: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option}: expected NAME=VALUE, got {item!r}")
        if key not in allowed:
            raise ValueError(f"{option} {key}: not a field of {what}; allowed: {sorted(allowed)}")
        out[key] = yaml.safe_load(value)
    return out


def _ssl_config(args) -> dict:
    """The config file's sections with the command line's overrides applied."""
    name = args.config or (args.method if args.method in available_configs() else None)
    cfg = read_method_config(name) if name else {"method": args.method, "params": {}, "augment": {}, "train": {}}
    if cfg["method"] != args.method:
        raise ValueError(f"--config {name} is a {cfg['method']} config, not {args.method}")
    fields = {f.name for f in dataclasses.fields(METHODS[args.method])}
    cfg["params"].update(_assignments(args.param, "--param", fields - {"augment", "name"}, args.method))
    cfg["augment"].update(_assignments(args.augment, "--augment", {f.name for f in dataclasses.fields(Augment)},
                                       "Augment"))
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs", "seed", "device"}
    cfg["train"].update(_assignments(args.train, "--train", train_fields, "TrainConfig (epochs, seed and "
                                                                           "device have their own options)"))
    for key in ("batch_size", "lr", "weight_decay", "optimizer", "schedule"):
        if getattr(args, key) is not None:
            cfg["train"][key] = getattr(args, key)
    cfg["file"] = name
    return cfg


def _ssl_body(argv) -> int:
    args = _ssl_parser().parse_args(argv)
    check_data_options(args)
    cfg = _ssl_config(args)
    try:
        method = build_method(cfg)
    except TypeError as e:
        raise ValueError(f"{args.method}: {e}") from e
    tcfg = TrainConfig(**cfg["train"], epochs=args.epochs, seed=args.seed, device=args.device)
    run_dir = Path(args.run_dir or Path("runs") / "ssl" / f"{args.method}-{args.dataset}-seed{args.seed}")
    model_kw = {k: getattr(args, k) for k in ("hidden_dim", "out_dim", "batchnorm") if getattr(args, k) is not None}
    if args.dry_run:
        print(json.dumps({"command": "ssl", "run_dir": str(run_dir), "config": cfg, "options": run_options(args),
                          "method": repr(method), "train": dataclasses.asdict(tcfg),
                          "model": {"width": args.width, **model_kw}}, indent=1, default=str))
        return 0
    splits = load_data(args)
    if "image_size" in inspect.signature(method.make_model).parameters:
        model_kw["image_size"] = tuple(splits.shape[1:])
    with seeded_init(args.seed):
        model = method.make_model(splits.shape[0], args.width, **model_kw)
    res = train(args, model, splits, tcfg, method, run_dir, f"ssl-{args.method}")
    return report(args, model, splits, res, run_dir, None, method=args.method, config=cfg["file"])


def main_ssl(argv=None) -> int:
    """``patchnb ssl METHOD [--config FILE] [overrides]``."""
    return guarded("patchnb ssl", _ssl_body, sys.argv[1:] if argv is None else list(argv))

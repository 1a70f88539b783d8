"""``patchnb supcon`` and ``patchnb ssl``: the self-supervised systems' entry points (``patchnb emp-ssl``:
:mod:`patchnb.cli_emp`).

Thin argument parsers over :mod:`patchnb.ssl` (run machinery: :mod:`patchnb.cli_run`); every run
trains with :func:`patchnb.train.fit` in a run folder (``last.pt`` every epoch, so the same command
run again continues exactly where it stopped; a finished run returns its stored result), writes
``hparams.yaml`` (the resolved options) and ``summary.json``. ``--dry-run`` validates the options
and prints the resolved configuration. ``--time-budget SECONDS`` stops cleanly before the first
epoch that would start after SECONDS (``0``: after one epoch) with exit code 75 (EX_TEMPFAIL: run
again to resume). Bad options and configuration errors exit with code 2 and a one-line message
naming the option.

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
    report,
    run_options,
    train,
    write_json,
)
from .eval import sweep_checkpoints
from .models.patch import seeded_init
from .optim import OPTIMIZERS, SCHEDULES
from .ssl import METHODS, Augment, SimCLR, SupCon
from .ssl.config import available_configs, build_method, read_method_config
from .train import TrainConfig

__all__ = ["EXIT_STOPPED", "main_ssl", "main_supcon"]


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

"""``patchnb vision``: the convolution-vs-attention study's ``train.py`` (PulkitMadan/convolution-vs-attention)
on patchnb's small-image backbones (:mod:`patchnb.models.vision`) and shape-vs-texture stimuli.

One command trains a ResNet / ConvNeXt / ViT / CoAtNet (or a timm model) with :func:`patchnb.train.fit`
in a run folder (validation-selected model, one test evaluation, exact resume: the same command run
again continues where it stopped). On the cue-conflict stimuli of :mod:`patchnb.bias.stimuli` (the
default data) it then measures the shape bias of Geirhos et al., ICLR 2019 (:func:`patchnb.bias.metrics.
shape_bias`) on cue-conflict images made from unseen silhouettes. ``--load`` starts from an earlier
run's backbone with a new head (transfer to a second task, :func:`patchnb.bias.transfer.transfer`),
``--frozen`` trains only that head (backbone weights *and* BatchNorm statistics fixed). ``--dry-run``,
``--time-budget`` and the exit codes (2: bad option or configuration, 75: stopped by the budget) are
those of :mod:`patchnb.cli_run`.

=====================================  =======================================================
original ``train.py``                   ``patchnb vision``
=====================================  =======================================================
``--train``                             the default; without it the original only evaluated:
                                        ``--eval-only --load RUN``
``--model`` resnet, vit_16, vit_32,     ``--model`` resnet (default), convnext, vit, coatnet
convnext, coatnet (ImageNet sizes)      (small-image versions, ``--width``), ``timm:<name>``
``--pretrain`` (ImageNet weights)       not offered (no downloads): ``--load`` an earlier run
``--load`` (trained_model_dir/          ``--load RUN_DIR|FILE``: the backbone of a run folder's
<model>.pth)                            ``result.pt`` (or any file ``load_backbone`` reads);
                                        the head is new, sized for this run's classes
``--frozen`` (only with ``--pretrain``;  ``--frozen`` (needs ``--load``): backbone frozen with its
``requires_grad`` only)                 BatchNorm statistics, only the head trains
``--mela`` (second task: melanoma)      any second task: ``--dataset imagefolder --data-root
                                        DIR --load RUN`` (``--frozen``: linear probe)
``--combined_data`` (IN + SIN)          ``--combined-data``: cue-consistent + stylized stimuli
                                        (``--n-train`` of each); with ``--dataset imagefolder``
                                        the splits of ``--data-root`` and ``--combined-root``
``--num_epoch`` (80)                    ``--epochs`` (80)
``--batch_size`` (64)                   ``--batch-size`` (64)
``--patience`` (5; ignored: fixed 5     ``--patience`` (5; honoured, on validation accuracy;
or 22 on validation loss)               0: no early stopping)
SGD lr 0.1, momentum 0.9, wd 1e-4,      ``--optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay
StepLR(20, 0.1) (fixed)                 1e-4 --schedule staircase --step-epochs 20 --gamma 0.1``
RandomResizedCrop(224) + flip           ``--augment true``: crop after 4-pixel padding + flip
``--random_seed`` (123)                 ``--seed`` (123; model, data and training)
``--data_dir`` (./data/processed)       ``--dataset`` (``stimuli``) / ``--data-root``
``--trained_model_dir``                 ``--run-dir`` (default ``runs/vision/<name>``)
``--name`` (WandB run)                  ``--name`` (records in the run folder; wandb offline with
                                        ``PATCHNB_WANDB=1``)
=====================================  =======================================================

Stimuli (``--dataset stimuli``, the stand-in for (stylized) ImageNet): ``--masks`` fashion_mnist
(silhouettes of real Fashion-MNIST images; ``synthetic``: geometric shapes, no data files),
``--masks-per-class`` / ``--test-masks-per-class`` (300 / 100), ``--train-kind`` stylized (the
original trains on SIN) or consistent, ``--texture-strength`` (1.0), ``--noise`` (0), ``--image-size``
(28), ``--n-train`` / ``--n-val`` / ``--n-test`` / ``--n-conflict`` (2000 / 500 / 1000 / 1000).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .bias.metrics import shape_bias
from .bias.stimuli import bias_splits, fashion_mnist_masks, make_stimuli, synthetic_masks
from .bias.transfer import transfer
from .cli_run import (
    add_data_options,
    add_run_options,
    bool_arg,
    check_data_options,
    fit_options,
    guarded,
    load_data,
    print_summary,
    run_options,
    train,
    write_json,
)
from .data import ImageData, Splits, channel_stats
from .distributed import resolve_device
from .eval import load_backbone
from .models.patch import seeded_init
from .models.vision import MODELS, make_vision_model
from .optim import OPTIMIZERS, SCHEDULES
from .train import Classification, TrainConfig, features

KINDS = ("stylized", "consistent")
#: the stimuli options and their defaults (``None`` on the command line, so that they can be refused elsewhere)
STIMULI = {"masks": "fashion_mnist", "masks_per_class": 300, "test_masks_per_class": 100, "train_kind": "stylized",
           "texture_strength": 1.0, "noise": 0.0, "n_train": 2000, "n_val": 500, "n_test": 1000, "n_conflict": 1000}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchnb vision", description="Train a CNN or attention model (shape vs "
                                "texture bias, transfer, frozen backbone); see patchnb.cli_vision.")
    a = p.add_argument
    a("--model", default="resnet", help=f"{', '.join(MODELS)} or timm:<name>")
    a("--width", type=int, default=None, help="model width (default: the model's own)")
    a("--load", default=None, metavar="RUN_DIR|FILE", help="start from this backbone (new head)")
    a("--frozen", action="store_true", help="train only the head (needs --load)")
    a("--eval-only", action="store_true", help="evaluate the --load model, no training")
    a("--combined-data", action="store_true", help="cue-consistent + stylized stimuli (or two ImageFolders)")
    a("--combined-root", default=None, help="second ImageFolder tree for --combined-data")
    a("--epochs", type=int, default=80)
    a("--batch-size", type=int, default=64)
    a("--patience", type=int, default=5, help="epochs without a better validation accuracy (0: off)")
    a("--optimizer", choices=OPTIMIZERS, default="sgd")
    a("--lr", type=float, default=0.1)
    a("--momentum", type=float, default=0.9)
    a("--weight-decay", type=float, default=1e-4)
    a("--schedule", choices=SCHEDULES, default="staircase")
    a("--step-epochs", type=int, default=20)
    a("--gamma", type=float, default=0.1)
    a("--augment", type=bool_arg, default=True, help="random crop (pad 4) + horizontal flip")
    a("--seed", type=int, default=123)
    a("--device", default="auto")
    a("--name", default=None)
    a("--run-dir", default=None)
    add_data_options(p, "stimuli", extra=("stimuli",))
    s = p.add_argument_group("stimuli (--dataset stimuli)").add_argument
    s("--masks", choices=("fashion_mnist", "synthetic"), help="silhouettes (default fashion_mnist)")
    s("--masks-per-class", type=int, help="training silhouettes per class (default 300)")
    s("--test-masks-per-class", type=int, help="unseen silhouettes per class for test and conflict (default 100)")
    s("--train-kind", choices=KINDS, help="stylized (default, the original's SIN) or consistent")
    for opt, kind in (("--texture-strength", float), ("--noise", float), ("--n-train", int), ("--n-val", int),
                      ("--n-test", int), ("--n-conflict", int)):
        s(opt, type=kind, help=f"default {STIMULI[opt[2:].replace('-', '_')]}")
    add_run_options(p)
    return p


def check(args) -> None:
    """Validate everything that can be checked without data (``--dry-run`` sees the same errors)."""
    stimuli = args.dataset == "stimuli"
    if stimuli:
        args.image_size = args.image_size or 28
        if args.mean is not None or args.train_size or args.val_size or args.test_size:
            raise ValueError("--mean/--std and --train-size/--val-size/--test-size are for datasets; the stimuli "
                             "take --n-train/--n-val/--n-test (normalised with their train statistics)")
        for name, default in STIMULI.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
        for name in ("masks_per_class", "test_masks_per_class", "n_train", "n_val", "n_test", "n_conflict"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if not 0 <= args.texture_strength <= 1 or args.noise < 0:
            raise ValueError(f"--texture-strength must be in [0, 1] and --noise >= 0, got {args.texture_strength}, "
                             f"{args.noise}")
    else:
        given = [name for name in STIMULI if getattr(args, name) is not None]
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} applies to --dataset stimuli only")
        check_data_options(args)
    if args.model not in MODELS and not args.model.startswith("timm:"):
        raise ValueError(f"--model {args.model!r}: allowed values {', '.join(MODELS)} or timm:<name>")
    if args.width is not None and args.width < 1:
        raise ValueError(f"--width must be >= 1, got {args.width}")
    if (args.frozen or args.eval_only) and not args.load:
        raise ValueError(f"--{'frozen' if args.frozen else 'eval-only'} needs --load (the weights to "
                         f"{'freeze' if args.frozen else 'evaluate'})")
    if args.load and not Path(args.load).exists():
        raise ValueError(f"--load {args.load}: no such file or run folder")
    if args.combined_data and not (stimuli or args.dataset == "imagefolder"):
        raise ValueError("--combined-data applies to --dataset stimuli or imagefolder")
    if args.dataset == "imagefolder" and args.combined_data and not (args.combined_root and
                                                                     Path(args.combined_root).is_dir()):
        raise ValueError(f"--combined-data with imagefolder needs --combined-root, an existing folder (got "
                         f"{args.combined_root!r})")
    if args.combined_root and not args.combined_data:
        raise ValueError("--combined-root is only read with --combined-data")
    if args.patience < 0:
        raise ValueError(f"--patience must be >= 0 (0: no early stopping), got {args.patience}")


def _concat(a: ImageData, b: ImageData) -> ImageData:
    if a.classes != b.classes:
        raise ValueError(f"--combined-data: the two datasets have different classes ({a.classes} vs {b.classes})")
    return ImageData(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]), a.classes)


def combine(first: Splits, second: Splits, name: str, norm=None) -> Splits:
    """Both datasets' splits concatenated (the original's ``ConcatDataset`` of IN and SIN), normalised with
    the combined train statistics unless ``norm`` is given."""
    train = _concat(first.train, second.train)
    return Splits(name, train, _concat(first.val, second.val), _concat(first.test, second.test),
                  norm or channel_stats(train.images, cache=False))


def stimuli_masks(args) -> tuple[tuple, tuple]:
    """(train, test) silhouettes: seen in training / unseen, for the test and cue-conflict stimuli."""
    if args.masks == "synthetic":
        return (synthetic_masks(10, 28, args.masks_per_class, seed=args.seed),
                synthetic_masks(10, 28, args.test_masks_per_class, seed=args.seed + 1))
    return (fashion_mnist_masks("train", n_per_class=args.masks_per_class, seed=0),
            fashion_mnist_masks("test", n_per_class=args.test_masks_per_class, seed=0))


def load_vision_data(args, masks) -> Splits:
    if args.dataset != "stimuli":
        splits = load_data(args)
        if args.combined_data:
            other = load_data(argparse.Namespace(**{**vars(args), "data_root": args.combined_root}))
            norm = splits.norm if args.mean is not None else None
            splits = combine(splits, other, f"{splits.name}+{Path(args.combined_root).name}", norm)
        return splits
    common = dict(image_size=args.image_size, texture_strength=args.texture_strength, noise=args.noise,
                  seed=args.seed)
    sizes = (args.n_train, args.n_val, args.n_test)
    kinds = KINDS if args.combined_data else (args.train_kind,)
    parts = [bias_splits(kind, *masks, *sizes, **common) for kind in kinds]
    if len(parts) == 1:
        return parts[0]
    both = combine(parts[0], parts[1], "stimuli-combined")
    return Splits(both.name, both.train, both.val, parts[1].test, both.norm)  # one cue-consistent test set


def weights_file(load: str) -> Path:
    path = Path(load)
    if path.is_dir():
        if not (path / "result.pt").is_file():
            raise ValueError(f"--load {load}: no result.pt in this folder (a finished patchnb run folder)")
        return path / "result.pt"
    return path


def evaluate(model, splits: Splits, args, masks) -> dict:
    """Test accuracy, and on stimuli the shape bias on ``--n-conflict`` cue-conflict images of unseen silhouettes."""
    out = {"test_accuracy": Classification().evaluate(model, splits.test, splits)["score"]}
    if args.dataset == "stimuli":
        conflict = make_stimuli("conflict", args.n_conflict, *masks[1], image_size=args.image_size,
                                texture_strength=args.texture_strength, noise=args.noise, seed=args.seed + 3_000_017)
        pred = features(model, conflict.data, splits, 1000)[0].argmax(1)
        sb = shape_bias(pred, conflict.shape_labels, conflict.texture_labels, n_classes=len(splits.classes))
        n = len(conflict)
        out.update(shape_bias=sb.shape_bias, conflict_shape_fraction=sb.n_shape / n,
                   conflict_texture_fraction=sb.n_texture / n, n_excluded=sb.n_excluded)
    return out


def _body(argv) -> int:
    args = _parser().parse_args(argv)
    check(args)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                       milestones=(), step_epochs=args.step_epochs, gamma=args.gamma, seed=args.seed,
                       device=args.device, patience=args.patience or None)
    name = args.name or f"{args.model.replace(':', '-')}-{args.dataset}-seed{args.seed}" + \
        ("-frozen" if args.frozen else "")
    run_dir = Path(args.run_dir or Path("runs") / "vision" / name)
    if args.dry_run:
        print(json.dumps({"command": "vision", "run_dir": None if args.eval_only else str(run_dir),
                          "options": run_options(args), "train": None if args.eval_only else vars(tcfg)},
                         indent=1, default=str))
        return 0
    masks = stimuli_masks(args) if args.dataset == "stimuli" else None
    splits = load_vision_data(args, masks)
    with seeded_init(args.seed):
        model = make_vision_model(args.model, splits.shape[0], len(splits.classes), splits.shape[-1], args.width)
    summary = {"name": name, "model": args.model, "data": splits.describe()}
    if args.eval_only:
        load_backbone(weights_file(args.load), model)
        model.to(resolve_device(args.device))
    else:
        method = Classification(pad=4 if args.augment else 0, flip=args.augment)
        if args.load:
            load_backbone(weights_file(args.load), model.backbone)
            mode = "frozen" if args.frozen else "finetune"
            with seeded_init(args.seed):  # the new head's initialisation depends on the seed alone
                _, res = transfer(model, splits, tcfg, mode, copy_model=False,
                                  **fit_options(args, method, run_dir, name))
        else:
            res = train(args, model, splits, tcfg, method, run_dir, name)
        summary.update(run_dir=str(run_dir), best_epoch=res.best_epoch, epochs_run=len(res.history),
                       val_accuracy=res.val["score"], train_seconds=res.seconds)
    summary.update(evaluate(model, splits, args, masks))
    if not args.eval_only:
        write_json(run_dir / "summary.json", summary)
    print_summary(summary)
    return 0


def main(argv=None) -> int:
    """``patchnb vision [options]``."""
    return guarded("patchnb vision", _body, sys.argv[1:] if argv is None else list(argv))

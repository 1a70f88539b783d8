"""What the command lines of the reproduced systems share (:mod:`patchnb.cli_emp`, :mod:`patchnb.cli_ssl`,
:mod:`patchnb.cli_vision`):
runs through :func:`patchnb.train.fit` in a run folder with its ``hparams.yaml``, a time budget that stops
cleanly at an epoch boundary (exit code 75; the same command continues exactly), backbone checkpoints in
the layout ``patchnb sweep-checkpoints`` reads, the data options, and the error handling (one line on
stderr, exit code 2)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from .checkpoint import CheckpointError
from .data import DATASETS, DataError, load_splits
from .eval import evaluate_encoder, save_backbone, save_projections
from .ssl.emp import patch_averaged_features
from .train import TrainConfig, fit

EXIT_STOPPED = 75  # sysexits EX_TEMPFAIL: stopped by --time-budget; run again to resume
HPARAMS = "hparams.yaml"
# options of one invocation, not of the run: neither in hparams.yaml nor in the run's fingerprint
INVOCATION = ("time_budget", "dry_run", "config_from", "exp_dir", "cmd", "resume_dir")
# options that name, place or post-process a run: in hparams.yaml, not in fit's configuration fingerprint
NOT_IN_RUN = (*INVOCATION, "run_dir", "log_folder", "exp_name", "name", "notes", "save_freq", "sweep", "save_proj")


class BudgetReached(Exception):
    """Raised at an epoch boundary once the time budget is spent (the run folder holds the last epoch)."""


class TimeBudget:
    """Stops a :func:`patchnb.train.fit` run before the first epoch that starts after ``seconds`` of this
    invocation (at least one epoch runs). A :func:`fit` callback notes epoch ends; :meth:`wrap` gives the
    method whose first step of the next epoch raises :class:`BudgetReached`, so ``last.pt`` is complete
    and an early-stopping break (patience) still ends the run normally. The wrapped method has the
    method's ``repr``, so the run's fingerprint, and hence resume, does not depend on the budget."""

    def __init__(self, seconds: float | None):
        if seconds is not None and seconds < 0:
            raise ValueError(f"--time-budget must be >= 0 seconds, got {seconds}")
        self.seconds, self.t0, self.epochs, self._boundary = seconds, time.perf_counter(), 0, False

    def on_epoch_end(self, epoch, model, row, run_dir) -> None:
        self.epochs += 1
        self._boundary = True

    def check(self) -> None:
        if self._boundary:
            self._boundary = False
            if self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds:
                raise BudgetReached(self.epochs)

    def wrap(self, method):
        return _Budgeted(method, self)


class _Budgeted:
    def __init__(self, method, budget: TimeBudget):
        self.method, self.budget = method, budget

    name = property(lambda self: self.method.name)

    def __repr__(self) -> str:
        return repr(self.method)

    def step(self, *args, **kwargs):
        self.budget.check()
        return self.method.step(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        return self.method.evaluate(*args, **kwargs)

    def __getattr__(self, item):
        if item in ("method", "budget"):
            raise AttributeError(item)
        return getattr(self.method, item)


class BackboneCheckpoints:
    """:func:`fit` callback: the backbone after every ``every``-th epoch and after the last epoch, as
    ``folder/epoch_NNN.pt`` (epochs from 1, :func:`patchnb.eval.save_backbone`): the layout that
    ``patchnb sweep-checkpoints`` reads. ``every = 0`` writes none."""

    def __init__(self, folder: Path, every: int, epochs: int, meta: dict | None = None):
        if every < 0:
            raise ValueError(f"--save-freq must be >= 0 epochs, got {every}")
        self.folder, self.every, self.epochs, self.meta = Path(folder), every, epochs, dict(meta or {})

    def on_epoch_end(self, epoch, model, row, run_dir) -> None:
        n = epoch + 1
        if self.every and (n % self.every == 0 or n == self.epochs):
            save_backbone(model, self.folder / f"epoch_{n:03d}.pt",
                          {**self.meta, "epoch": n, "val_score": row.get("val_score")})


def bool_arg(text: str) -> bool:
    t = str(text).lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def non_negative(kind):
    """An argparse type: ``kind`` values >= 0 (argparse then names the option in its error)."""
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def numbers(values, option: str, kind=float) -> list | None:
    """``["0.1, 0.2", "0.3"]`` -> ``[0.1, 0.2, 0.3]`` (the originals pass lists as one quoted string)."""
    if values is None:
        return None
    try:
        return [kind(v) for v in " ".join(map(str, values)).replace(",", " ").split()]
    except ValueError as e:
        raise ValueError(f"{option}: expected numbers separated by commas or spaces, got {values!r}") from e


def add_data_options(p: argparse.ArgumentParser, dataset: str, extra: tuple[str, ...] = ()) -> None:
    a = p.add_argument
    a("--dataset", default=dataset, choices=(*extra, *DATASETS), help=f"default {dataset}")
    a("--data-root", default=None, help="ImageFolder root (root/<class>/... or root/{train,val,test}/<class>/...)")
    a("--image-size", type=int, default=None, help="resize ImageFolder images to this size")
    a("--val-fraction", type=float, default=0.1, help="validation held out of train (model selection)")
    a("--train-size", type=int, default=None, help="seeded subset of the train split")
    a("--val-size", type=int, default=None)
    a("--test-size", type=int, default=None)
    a("--mean", nargs="+", default=None, help="per-channel mean, e.g. '0.0418, 0.0353, 0.0409' (with --std)")
    a("--std", nargs="+", default=None)


def check_data_options(args) -> None:
    """Validate the data options without loading anything (``--dry-run`` sees the same errors)."""
    args.mean, args.std = numbers(args.mean, "--mean"), numbers(args.std, "--std")
    if (args.mean is None) != (args.std is None) or (args.mean and len(args.mean) != len(args.std)):
        raise ValueError("--mean and --std go together, with one value per channel each")
    if args.dataset == "imagefolder" and not (args.data_root and Path(args.data_root).is_dir()):
        raise ValueError(f"--dataset imagefolder needs --data-root, an existing folder (got {args.data_root!r})")
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    for name in ("train_size", "val_size", "test_size", "image_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def load_data(args):
    return load_splits(args.dataset, root=args.data_root, val_fraction=args.val_fraction, train_size=args.train_size,
                       val_size=args.val_size, test_size=args.test_size, image_size=args.image_size,
                       mean=args.mean, std=args.std)


def run_options(args, skip: tuple[str, ...] = NOT_IN_RUN) -> dict:
    """The resolved options that define the run (its fingerprint); with ``skip=INVOCATION``, hparams.yaml's."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))


def guarded(prog: str, body, argv) -> int:
    """Run ``body(argv)``; configuration errors -> one line on stderr and exit code 2; a spent time
    budget -> exit code 75 with the way to resume."""
    try:
        return body(argv)
    except BudgetReached as e:
        print(f"{prog}: stopped at the time budget after {e.args[0]} epoch(s) this run; run the same command "
              f"again to continue", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, DataError, CheckpointError) as e:
        print(f"{prog}: {e}".splitlines()[0], file=sys.stderr)
        return 2


def check_same_run(args, run_dir: Path) -> None:
    """A run folder with checkpoints continues only with the options it was started with: otherwise a
    ValueError names the options that differ (before anything in the folder is touched)."""
    path = run_dir / HPARAMS
    if not path.is_file() or not any((run_dir / f).is_file() for f in ("last.pt", "result.pt")):
        return
    stored = yaml.safe_load(path.read_text()) or {}
    now = yaml.safe_load(yaml.safe_dump(run_options(args)))
    changed = [f"--{k.replace('_', '-')} {stored.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(stored))
               if k not in NOT_IN_RUN and stored.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"{run_dir} holds a run with other options ({'; '.join(changed)}); use another folder "
                         f"or delete this one to start afresh")


def fit_options(args, method, run_dir: Path, name: str, callbacks=()) -> dict:
    """:func:`patchnb.train.fit`'s keyword arguments for a command-line run: the method under the time budget,
    the run folder, the run's options as part of its fingerprint (a changed option never resumes another
    configuration's checkpoint) and the callbacks. Writes the folder's hparams.yaml."""
    budget = TimeBudget(args.time_budget)
    check_same_run(args, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / HPARAMS).write_text(yaml.safe_dump({**run_options(args, INVOCATION), "run_dir": str(run_dir)}))
    return dict(method=budget.wrap(method), run_dir=run_dir, name=name, extra_config={"cli": run_options(args)},
                callbacks=[*callbacks, budget])


def train(args, model, splits, tcfg: TrainConfig, method, run_dir: Path, name: str, callbacks=()):
    return fit(model, splits, tcfg, **fit_options(args, method, run_dir, name, callbacks))


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-budget", type=non_negative(float), default=None,
                   help="stop before the first epoch that starts after SECONDS (0: after one epoch); exit code 75")
    p.add_argument("--dry-run", action="store_true", help="validate, print the resolved configuration and exit")


def print_summary(summary: dict) -> None:
    for k, v in summary.items():
        if isinstance(v, float):
            print(f"{k:>20}: {v:.4f}")
        elif isinstance(v, (int, str)):
            print(f"{k:>20}: {v}")


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

"""``patchnb train``: the experiments of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features" (ICML 2022), from the command line; the equivalent of the original ``main.py``.

This module only parses options: they become one
:class:`~patchnb.experiments.patch.network.RunConfig`, which
:func:`~patchnb.experiments.patch.network.run_network` (the chapter's run recipe) turns into a patch
dictionary and a model (locally linear network with Phi_full / Phi_hard / ablations, the vanilla CNN,
the layerwise deep version, or the VGG-like baseline) trained with :func:`patchnb.train.fit`
(validation-selected model, one test evaluation, run records and resumable checkpoints in the run
folder). The chapter's notebooks run the same recipe, so the book and the command line share one path.

Options of the original ``main.py`` and their names here:

===========================================  =====================================================
original ``main.py``                          ``patchnb train``
===========================================  =====================================================
``--train_locally_linear_network True``       ``--model patch`` (the default)
``--model_name VGGc1024d<d>A``                ``--model vgg --width 1024 --depth <d>``
``--use_conv True`` / ``False``               ``--embedding full`` (default) / ``--embedding hard``
``--replace_embedding_with_regular_conv_relu`` ``--embedding conv`` (learnable conv + ReLU: vanilla CNN)
``--full_embedding True``                     ``--embedding simple`` (Table 2's Simple model: one
                                              linear layer over the N*D*H*W embedding, as the original)
``--random_gaussian_patches True``            ``--dictionary gaussian`` (gaussian patches whitened by their
                                              own covariance and clustered, as the original; default
                                              ``kmeans``)
``--zca_whitening True``                      ``--whitening zca`` (default ``pca``)
``--n_clusters``                              ``--n-centroids`` (N, also the CNN width)
``--n_patches``                               ``--n-patches``
``--k`` (one per layer)                       ``--k``
``--kernel_size`` (one per layer)             ``--kernel-size``
``--depth``                                   ``--depth`` (patch model: trained layerwise)
``--use_avg_pool`` (one per layer)            ``--avg-pool true false ...``
``--pool_size`` / ``--pool_stride``           ``--pool-size`` / ``--pool-stride``
``--use_batch_norm`` (one per layer)          ``--batch-norm true false ...``
``--use_bottle_neck``                         ``--bottleneck true|false``
``--use_relu_after_bottleneck``               ``--relu-after-bottleneck true|false``
``--padding`` (VGG)                           ``--padding``
``--final_mlp_n_hidden_layers`` (VGG)         ``--mlp-hidden-layers``
``--learning_rate``                           ``--lr``
``--batch_size`` / ``--epochs``               ``--batch-size`` / ``--epochs``
(fixed 100, 150)                              ``--milestones``
``--seed`` / ``--device``                     ``--seed`` / ``--device``
``--dataset_name``                            ``--dataset`` (+ ``--data-root`` for ``imagefolder``)
``--wandb_run_name``                          ``--name`` (records in ``--run-dir``; wandb offline
                                              with ``PATCHNB_WANDB=1``)
``--multi_gpu``                               ``torchrun ... -m patchnb train`` (DDP in ``fit``)
(none)                                        ``--train-size/--val-size/--test-size``,
                                              ``--augment``, ``--kmeans-iters``, ``--dry-run``
(none: this package's variants)               ``--embedding simple_factorised`` (a 1x1 conv N*D -> N
                                              before the head: not the original's Simple model);
                                              ``--dictionary gaussian_centroids`` (gaussian centroids
                                              in the data-whitened space: not the original's)
===========================================  =====================================================

Every command of the original README has an equivalent in :data:`README_COMMANDS` (tested).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from .checks import check_choice, check_int
from .data import DATASETS, DataError
from .distributed import is_main_process
from .experiments.patch.network import DICTIONARIES, EMBEDDINGS, MODELS, WHITENINGS, RunConfig, run_network

# The seed README's commands (paper defaults) and their equivalents here.
README_COMMANDS = {
    "Table 1 - Vanilla 1 hidden-layer CNN": "--embedding conv",
    "Table 1 - Phi_hard with random patches": "--embedding hard --dictionary gaussian",
    "Table 1 - Phi_full with random patches": "--embedding full --dictionary gaussian",
    "Table 1 - Phi_hard with clustered patches": "--embedding hard",
    "Table 1 - Phi_full with clustered patches": "--embedding full",
    "Table 2 - Simple": "--embedding simple --avg-pool false --batch-norm false --bottleneck false --k 64 "
                        "--batch-size 32 --n-centroids 256 --n-patches 65536 --lr 0.00001",
    "Table 2 - Constrained": "--embedding full --avg-pool false --batch-norm false --bottleneck false --k 64 "
                             "--batch-size 32 --n-centroids 256 --n-patches 65536 --lr 0.001",
    "Table 3 - Original": "--avg-pool false --batch-norm false --bottleneck false",
    "Table 3 - AvgPool": "--avg-pool true --batch-norm true --bottleneck false",
    "Table 3 - Bottleneck": "--avg-pool false --batch-norm false --bottleneck true",
    "Table 3 - Both": "--avg-pool true --batch-norm true --bottleneck true",
    "Table 4 - Phi_full": "--depth 4 --kernel-size 5 3 3 3 --avg-pool true false false false --pool-size 2 "
                          "--pool-stride 2 --batch-norm true false false false --k 256 128 128 128",
    "Table 4 - Phi_hard": "--depth 4 --kernel-size 5 3 3 3 --embedding hard --avg-pool true false false false "
                          "--pool-size 2 --pool-stride 2 --batch-norm true false false false --k 256 128 128 128",
    **{f"Table 4 - CNN Depth {d}": f"--model vgg --width 1024 --depth {d} --kernel-size "
                                   f"{' '.join(['5'] + ['3'] * (d - 1))} --padding 0 --batch-norm "
                                   f"{' '.join(['true'] + ['false'] * (d - 1))} "
                                   f"--mlp-hidden-layers 0 --relu-after-bottleneck true" for d in (1, 2, 3, 4)},
    "Table 4 - CNN layerwise": "--depth 4 --kernel-size 5 3 3 3 --embedding conv --avg-pool true false false false "
                               "--pool-size 2 --pool-stride 2 --batch-norm true false false false",
    "Figure 6 - Phi_full with clustered patches using ZCA whitening": "--embedding full --whitening zca",
    **{f"Figure 8 - Phi_full with clustered patches k={k}": f"--k {k}" for k in (1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                                                   512, 1024)},
    **{f"Figure 9 - Phi_full with clustered patches N={n}": f"--n-patches {256 * n} --n-centroids {n} --k {n // 4}"
       + (" --lr 0.001" if n == 16384 else "") for n in (1024, 2048, 4096, 8192, 16384)},
}


# ----------------------------------------------------------------------------- command line


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("true", "1", "yes", "y", "on"):
        return True
    if t in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = argparse.ArgumentParser(prog="patchnb train", description="Train the patch-based network (Brutzkus et "
                                "al., ICML 2022) or its CNN baselines; see the module docstring for the mapping "
                                "from the original main.py options.")
    a = p.add_argument
    a("--model", choices=MODELS, default=d.model, help="patch: locally linear network; vgg: VGG-like CNN baseline")
    a("--embedding", choices=EMBEDDINGS, default=d.embedding,
      help="full: Phi_full; hard: Phi_hard; conv: learnable conv + ReLU (vanilla CNN); simple: Table 2's Simple "
           "model (one linear layer over the whole embedding; needs --avg-pool false --batch-norm false "
           "--bottleneck false); simple_factorised, triangle, kth: variants and ablations")
    a("--dictionary", choices=DICTIONARIES, default=d.dictionary,
      help="kmeans: k-means of whitened data patches; gaussian: Table 1's random patches (gaussian patches "
           "whitened by their own covariance, clustered); gaussian_centroids: gaussian centroids in the "
           "data-whitened space (variant)")
    a("--whitening", choices=WHITENINGS, default=d.whitening)
    a("--n-centroids", type=int, default=d.n_centroids, help="dictionary size N (the CNN width for --embedding conv)")
    a("--n-patches", type=int, default=d.n_patches, help="patches sampled for k-means")
    a("--k", type=int, nargs="+", help="neighbours per layer (default 256; Table 4: 256 128 128 128)")
    a("--kernel-size", type=int, nargs="+", help="patch size per layer (default 5; Table 4: 5 3 3 3)")
    a("--depth", type=int, default=d.depth)
    a("--avg-pool", type=_bool, nargs="+", help="average pooling per layer (default: after layer 1 only)")
    a("--pool-size", type=int, default=d.pool_size)
    a("--pool-stride", type=int, default=d.pool_stride)
    a("--batch-norm", type=_bool, nargs="+", help="BatchNorm per layer (default: after layer 1 only)")
    a("--bottleneck", type=_bool, default=d.bottleneck)
    a("--bottleneck-dim", type=int, default=d.bottleneck_dim)
    a("--relu-after-bottleneck", type=_bool, default=d.relu_after_bottleneck)
    a("--width", type=int, default=d.width, help="VGG channels")
    a("--padding", type=int, nargs="+", help="VGG padding per layer (default 0)")
    a("--mlp-hidden-layers", type=int, default=d.mlp_hidden_layers, help="VGG head hidden layers of 128")
    a("--kmeans-iters", type=int, default=d.kmeans_iters)
    a("--dataset", default=d.dataset, help="cifar10 | cifar100 | fashion_mnist | imagefolder | synthetic")
    a("--data-root", default=None)
    a("--train-size", type=int, default=None)
    a("--val-size", type=int, default=None)
    a("--test-size", type=int, default=None)
    a("--augment", type=_bool, default=d.augment, help="random crop (pad 4) + horizontal flip")
    a("--epochs", type=int, default=d.epochs)
    a("--batch-size", type=int, default=d.batch_size)
    a("--lr", type=float, default=d.lr)
    a("--momentum", type=float, default=d.momentum)
    a("--milestones", type=int, nargs="*", default=d.milestones)
    a("--seed", type=int, default=d.seed)
    a("--device", default=d.device)
    a("--name", default=None, help="run name (default: model-embedding-seed)")
    a("--run-dir", default=None, help="run folder (default runs/<name>): records, checkpoints, summary.json")
    a("--dry-run", action="store_true", help="print the resolved configuration and exit")
    return p


def parse_config(argv: list[str] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in vars(args).items() if k in names})
    return cfg, args


def check_run_config(cfg: RunConfig) -> None:
    """Everything about ``cfg`` that can be checked without loading data, so a bad option fails at once
    (``--dry-run`` included) naming the option, its value and what is allowed; raises ``ValueError``."""
    check_choice("dataset", cfg.dataset, DATASETS)
    if cfg.dataset == "imagefolder" and not cfg.data_root:
        raise ValueError("dataset='imagefolder' needs --data-root <path of the ImageFolder tree>")
    for name in ("n_centroids", "n_patches", "depth", "pool_size", "pool_stride", "bottleneck_dim", "width",
                 "kmeans_iters"):
        check_int(name, getattr(cfg, name), 1)
    check_int("mlp_hidden_layers", cfg.mlp_hidden_layers, 0)
    for name in ("train_size", "val_size", "test_size"):
        check_int(name, getattr(cfg, name), 1, allow_none=True)
    for name in ("k", "kernel_size"):
        for v in cfg.layers(name):
            check_int(name, v, 1)
    for v in cfg.layers("padding"):
        check_int("padding", v, 0)
    if cfg.model == "patch" and cfg.embedding != "conv":
        k = cfg.layers("k")
        if max(k) > cfg.n_centroids:
            raise ValueError(f"k={max(k)} is more than n_centroids={cfg.n_centroids}: each position marks its k "
                             f"nearest of the n_centroids centroids (allowed: 1..{cfg.n_centroids})")
        if cfg.dictionary != "gaussian_centroids" and cfg.n_centroids > cfg.n_patches:
            raise ValueError(f"n_centroids={cfg.n_centroids} is more than n_patches={cfg.n_patches}: k-means needs at "
                             f"least as many sampled patches as centroids (raise --n-patches or lower --n-centroids)")
    cfg.train_config()  # epochs, batch size, lr, momentum, milestones, seed, device (TrainConfig's checks)


def main(argv: list[str] | None = None) -> int:
    """``patchnb train [options]``: returns 0 on success, 2 on a bad configuration or missing data (one line
    on stderr, as argparse does)."""
    try:
        cfg, args = parse_config(argv)
        check_run_config(cfg)
    except ValueError as e:
        print(f"patchnb train: {e}", file=sys.stderr)
        return 2
    name = args.name or f"{cfg.model}-{cfg.embedding}-{cfg.dictionary}-seed{cfg.seed}"
    if args.dry_run:
        print(json.dumps(asdict(cfg), indent=1))
        return 0
    run_dir = Path(args.run_dir or Path("runs") / name.replace(" ", "_").replace("/", "_"))
    try:
        out = run_network(cfg, run_dir=run_dir)
    except (ValueError, DataError) as e:  # a configuration the data rules out, or missing/corrupt data
        print(f"patchnb train: {e}", file=sys.stderr)
        return 2
    if not is_main_process():  # torchrun: rank 0 writes the summary and reports
        return 0
    summary = {"name": name, "config": out["config"], "seconds": out["seconds"],
               "results": [{k: v for k, v in r.items() if k != "history"} for r in out["results"]]}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{'depth':>5} | {'test acc':>8} | {'val acc':>8} | {'final val':>9} | {'best ep':>7} | {'img/s':>7}")
    for r in summary["results"]:
        print(f"{r['depth']:>5} | {100 * r['test_acc']:>7.2f}% | {100 * r['val_acc']:>7.2f}% | "
              f"{100 * (r['final_val_acc'] or 0):>8.2f}% | {r['best_epoch']:>7} | {r['images_per_second']:>7.0f}")
    print(f"run folder: {run_dir} ({out['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``patchnb train``: the experiments of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features" (ICML 2022), from the command line; the equivalent of the original ``main.py``.

One configuration (:class:`ExperimentConfig`) builds the model (locally linear network with Phi_full /
Phi_hard / ablations, the vanilla CNN, the layerwise deep version, or the VGG-like baseline), builds the
patch dictionary, and trains with :func:`patchnb.train.fit` (validation-selected model, one test
evaluation, run records and resumable checkpoints in the run folder). The chapter notebooks call
:func:`run_experiment` with the same configuration, so the book and the command line share one path.

Options of the original ``main.py`` and their names here:

===========================================  =====================================================
original ``main.py``                          ``patchnb train``
===========================================  =====================================================
``--train_locally_linear_network True``       ``--model patch`` (the default)
``--model_name VGGc1024d<d>A``                ``--model vgg --width 1024 --depth <d>``
``--use_conv True`` / ``False``               ``--embedding full`` (default) / ``--embedding hard``
``--replace_embedding_with_regular_conv_relu`` ``--embedding conv`` (learnable conv + ReLU: vanilla CNN)
``--full_embedding True``                     ``--embedding simple`` (Table 2's unconstrained map)
``--random_gaussian_patches True``            ``--dictionary gaussian`` (default ``kmeans``)
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
===========================================  =====================================================

Every command of the original README has an equivalent in :data:`README_COMMANDS` (tested).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data import Splits, check_choice, load_splits
from .embedding import MODES
from .models import VGGLike, train_layerwise
from .models.patch import seeded_init
from .train import Classification, TrainConfig, fit

MODELS = ("patch", "vgg")
EMBEDDINGS = (*MODES, "conv")
DICTIONARIES = ("kmeans", "gaussian")

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


@dataclass
class ExperimentConfig:
    """One run of the patch paper's experiments (defaults: the paper's, CIFAR-10). Per-layer fields are
    lists with one entry per layer; ``None`` means the paper's default for the depth (Table 4 for
    depth > 1: kernels 5,3,3,3, k 256,128,128,128, pool/BN after layer 1 only)."""

    model: str = "patch"
    embedding: str = "full"
    dictionary: str = "kmeans"
    whitening: str = "pca"
    n_centroids: int = 1024
    n_patches: int = 262144
    k: list[int] | None = None
    kernel_size: list[int] | None = None
    depth: int = 1
    avg_pool: list[bool] | None = None
    pool_size: int = 4
    pool_stride: int = 4
    batch_norm: list[bool] | None = None
    bottleneck: bool = True
    bottleneck_dim: int = 32
    relu_after_bottleneck: bool = False
    width: int = 1024
    padding: list[int] | None = None
    mlp_hidden_layers: int = 1
    kmeans_iters: int = 20
    dataset: str = "cifar10"
    data_root: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    augment: bool = True
    epochs: int = 200
    batch_size: int = 64
    lr: float = 0.003
    momentum: float = 0.9
    milestones: list[int] = field(default_factory=lambda: [100, 150])
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("embedding", self.embedding, EMBEDDINGS)
        check_choice("dictionary", self.dictionary, DICTIONARIES)
        check_choice("whitening", self.whitening, ("pca", "zca", "none"))
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} must be >= 1")
        for name in ("k", "kernel_size", "avg_pool", "batch_norm", "padding"):
            v = getattr(self, name)
            if v is not None and len(v) not in (1, self.depth):
                raise ValueError(f"{name} has {len(v)} entries but depth={self.depth}; give one or one per layer")
        if self.model == "vgg" and self.embedding != "full":
            raise ValueError("embedding applies to --model patch only; the VGG baseline is a plain CNN")
        if self.depth > 1 and self.model == "patch" and self.dictionary == "gaussian" and self.embedding == "conv":
            raise ValueError("dictionary='gaussian' has no meaning with embedding='conv'")

    def layers(self, name: str, default1, table4) -> list:
        """The per-layer list of ``name``: given, broadcast, or the paper's default for the depth."""
        v = getattr(self, name)
        if v is None:
            return [default1] if self.depth == 1 else list(table4[:self.depth]) + [table4[-1]] * (self.depth - 4)
        return list(v) * self.depth if len(v) == 1 and self.depth > 1 else list(v)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                           milestones=tuple(self.milestones), seed=self.seed, device=self.device)


def load_data(cfg: ExperimentConfig) -> Splits:
    return load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.train_size, val_size=cfg.val_size,
                       test_size=cfg.test_size)


def _summary(result, depth: int) -> dict:
    return {"depth": depth, "test_acc": result.test["score"], "val_acc": result.val["score"],
            "final_val_acc": result.final_val.get("score"), "best_epoch": result.best_epoch,
            "seconds": result.seconds, "images_per_second": result.images_per_second,
            "history": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in result.history]}


def run_experiment(cfg: ExperimentConfig, splits: Splits | None = None, run_dir: str | Path | None = None,
                   progress: bool = True) -> dict:
    """Build the dictionary and model of ``cfg`` and train it with :func:`patchnb.train.fit` (one fit per
    layer for the layerwise patch model). Returns ``{"config", "results": [per-depth dict with test_acc
    (validation-selected model), val_acc, final_val_acc, best_epoch, seconds, images_per_second,
    history], "first_conv" (the learnable first-layer kernels or None), "dictionary" (layer 1's, or
    None), "seconds" (wall-clock including the dictionary)}``."""
    t0 = time.perf_counter()
    splits = splits or load_data(cfg)
    shape, n_classes = splits.shape, len(splits.classes)
    tcfg = cfg.train_config()
    method = Classification(pad=4 if cfg.augment else 0, flip=cfg.augment)
    run_dir = Path(run_dir) if run_dir else None
    extra = {"experiment": asdict(cfg)}
    out = {"config": asdict(cfg), "results": [], "first_conv": None, "dictionary": None}

    def train(model, depth):
        sub = run_dir / f"depth{depth}" if run_dir and cfg.depth > 1 else run_dir
        res = fit(model, splits, tcfg, method, run_dir=sub, name=f"{cfg.model}-{cfg.embedding}-d{depth}",
                  extra_config=extra, progress=progress)
        out["results"].append(_summary(res, depth))
        return res

    kernel_sizes = cfg.layers("kernel_size", 5, (5, 3, 3, 3))
    use_bn = cfg.layers("batch_norm", True, (True, False, False, False))
    if cfg.model == "vgg":
        pool = cfg.layers("avg_pool", True, (True, False, False, False))
        with seeded_init(cfg.seed):
            model = VGGLike(shape, n_classes, cfg.depth, cfg.width, kernel_sizes,
                            cfg.layers("padding", 0, (0,) * 4), use_bn, pool[0], cfg.pool_size, cfg.pool_stride,
                            cfg.bottleneck_dim, cfg.relu_after_bottleneck, cfg.mlp_hidden_layers)
        train(model, cfg.depth)
        out["first_conv"] = model.features[0].weight.detach().clone()
    else:
        images = splits.norm(splits.train.images)
        ks = cfg.layers("k", 256, (256, 128, 128, 128))
        pool = cfg.layers("avg_pool", True, (True, False, False, False))
        head = dict(use_bottleneck=cfg.bottleneck, bottleneck=cfg.bottleneck_dim,
                    relu_after_bottleneck=cfg.relu_after_bottleneck)
        vanilla = cfg.embedding == "conv"
        mode = "full" if vanilla else cfg.embedding
        counter = iter(range(1, cfg.depth + 1))
        layers = train_layerwise(images, lambda m: train(m, next(counter)), n_classes, cfg.depth, kernel_sizes, ks,
                                 cfg.n_centroids, cfg.n_patches, mode, pool, use_bn, cfg.pool_size,
                                 cfg.pool_stride, cfg.whitening, cfg.seed, vanilla, cfg.kmeans_iters,
                                 random_gaussian=cfg.dictionary == "gaussian", **head)
        first = layers[0][0]
        conv = first.conv if vanilla else getattr(first.embedding, "conv", None)
        out["first_conv"] = conv.weight.detach().clone() if conv is not None else None
        if not vanilla:
            emb = first.embedding
            out["dictionary"] = {"kernel": emb.kernel.clone(), "bias": emb.bias.clone()}
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- command line


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("true", "1", "yes", "y", "on"):
        return True
    if t in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    d = ExperimentConfig()
    p = argparse.ArgumentParser(prog="patchnb train", description="Train the patch-based network (Brutzkus et "
                                "al., ICML 2022) or its CNN baselines; see the module docstring for the mapping "
                                "from the original main.py options.")
    a = p.add_argument
    a("--model", choices=MODELS, default=d.model, help="patch: locally linear network; vgg: VGG-like CNN baseline")
    a("--embedding", choices=EMBEDDINGS, default=d.embedding,
      help="full: Phi_full; hard: Phi_hard; conv: learnable conv + ReLU (vanilla CNN); simple, triangle, kth: "
           "ablations")
    a("--dictionary", choices=DICTIONARIES, default=d.dictionary, help="k-means of whitened patches or gaussian")
    a("--whitening", choices=("pca", "zca", "none"), default=d.whitening)
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


def parse_config(argv: list[str] | None = None) -> tuple[ExperimentConfig, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    names = {f.name for f in fields(ExperimentConfig)}
    cfg = ExperimentConfig(**{k: v for k, v in vars(args).items() if k in names})
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    """``patchnb train [options]``: returns 0 on success (2 on a bad configuration)."""
    try:
        cfg, args = parse_config(argv)
    except ValueError as e:
        print(f"patchnb train: {e}", file=sys.stderr)
        return 2
    name = args.name or f"{cfg.model}-{cfg.embedding}-{cfg.dictionary}-seed{cfg.seed}"
    if args.dry_run:
        print(json.dumps(asdict(cfg), indent=1))
        return 0
    run_dir = Path(args.run_dir or Path("runs") / name.replace(" ", "_").replace("/", "_"))
    out = run_experiment(cfg, run_dir=run_dir)
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

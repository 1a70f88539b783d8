"""Every bad input is a clear error at the API boundary.

One table of bad inputs across the package's public functions and the command line. Each case names
the call, the exception type it must raise (``ValueError`` / ``TypeError`` or the package's own error
classes, which subclass them) and a regular expression the message must contain: the offending
parameter and, where it helps, its value. A bad input must fail where it was given, never as a
traceback from deep inside torch or numpy, a silently wrong result, or a message blaming another
parameter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import pytest
import torch
import torch.nn as nn

from patchnb import cluster, patches
from patchnb.bias.metrics import imagenet_to_16, shape_bias
from patchnb.bias.stimuli import make_stimuli, synthetic_masks
from patchnb.checks import check_finite, check_float, check_int, check_seeds
from patchnb.datasets import DataError
from patchnb.embedding import PatchEmbedding, build_dictionary, knn_mask, knn_pool, phi_full_pooled
from patchnb.eval import FeatureMap, alignment_uniformity, confusion_matrix, evaluate_encoder, linear_probe
from patchnb.losses import (
    alignment,
    emp_ssl_loss,
    eqco_margin,
    hcl,
    mochi_negatives,
    moco_infonce,
    nt_xent,
    supcon,
    total_coding_rate,
    uniformity,
)
from patchnb.metrics import circle_projection, knn_classify, vmf_concentration
from patchnb.models import LocallyLinearNetwork, ResNet18, VGGLike, patch_network, train_layerwise
from patchnb.models.patch import Head
from patchnb.models.vision import make_vision_model, replace_head

NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Bad:
    """One bad input: ``call()`` must raise ``exc`` with a message matching ``match``."""

    area: str
    name: str
    call: Callable[[], object]
    match: str
    exc: type[BaseException] = ValueError


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_g())


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[1] = NAN
    return t


IMAGES = torch.rand(4, 1, 12, 12, generator=_g())        # normalised float images
POINTS = _randn(40, 6)                                   # points to cluster
Z1, Z2 = _randn(8, 16), _randn(8, 16)                    # two views of a batch of embeddings
CENTROIDS, WHITEN = _randn(8, 9), torch.eye(9)          # a dictionary of 8 whitened 1x3x3 patches
COV = torch.cov(_randn(200, 9).T)


def _embedding(mode: str = "hard") -> PatchEmbedding:
    return PatchEmbedding(CENTROIDS, WHITEN, 3, 1, 2, mode)


def _nonsym_cov() -> torch.Tensor:
    c = COV.clone()
    c[0, 1] += 1.0
    return c


# ----------------------------------------------------------------------------- the table

KERNELS = [
    # patches
    Bad("patches", "sample_patches n=0", lambda: patches.sample_patches(IMAGES, 0, 3), r"\bn\b.*0"),
    Bad("patches", "sample_patches n=2.5", lambda: patches.sample_patches(IMAGES, 2.5, 3), r"\bn\b.*2\.5"),
    Bad("patches", "sample_patches size too big", lambda: patches.sample_patches(IMAGES, 5, 13), r"size=13"),
    Bad("patches", "sample_patches size=2.5", lambda: patches.sample_patches(IMAGES, 5, 2.5), r"size.*2\.5"),
    Bad("patches", "sample_patches 3-D images", lambda: patches.sample_patches(IMAGES[0], 5, 3), r"images"),
    Bad("patches", "dictionary_patches min_norm=nan",
        lambda: patches.dictionary_patches(IMAGES, 5, 3, min_norm=NAN), r"min_norm"),
    Bad("patches", "patch_moments batch_size=0", lambda: patches.patch_moments(IMAGES, 3, batch_size=0),
        r"batch_size.*0"),
    Bad("patches", "Whitening kind", lambda: patches.Whitening.from_covariance(torch.zeros(9), COV, "pcaa"),
        r"whitening='pcaa'"),
    Bad("patches", "Whitening eps=0", lambda: patches.Whitening.from_covariance(torch.zeros(9), COV, eps=0),
        r"eps.*0"),
    Bad("patches", "Whitening eps=-1", lambda: patches.Whitening(torch.zeros(9), torch.ones(9), torch.eye(9),
                                                                   eps=-1.0), r"eps.*-1"),
    Bad("patches", "Whitening eps=nan", lambda: patches.Whitening.from_covariance(torch.zeros(9), COV, eps=NAN),
        r"eps.*nan"),
    Bad("patches", "Whitening non-symmetric cov",
        lambda: patches.Whitening.from_covariance(torch.zeros(9), _nonsym_cov()), r"cov.*symmetric"),
    Bad("patches", "Whitening NaN cov", lambda: patches.Whitening.from_covariance(torch.zeros(9), _with_nan(COV)),
        r"cov.*NaN"),
    Bad("patches", "Whitening cov not square", lambda: patches.Whitening.from_covariance(torch.zeros(9), COV[:4]),
        r"cov.*\(4, 9\)"),
    Bad("patches", "Whitening mean of wrong length",
        lambda: patches.Whitening.from_covariance(torch.zeros(5), COV), r"mean.*5"),
    Bad("patches", "unit_normalize drop_fraction=1.5", lambda: patches.unit_normalize(POINTS, 1.5),
        r"drop_fraction.*1\.5"),
    # cluster
    Bad("cluster", "kmeans k=2.5", lambda: cluster.kmeans(POINTS, 2.5), r"k.*2\.5"),
    Bad("cluster", "kmeans k=0", lambda: cluster.kmeans(POINTS, 0), r"k=0"),
    Bad("cluster", "kmeans k > points", lambda: cluster.kmeans(POINTS, 41), r"k=41.*40"),
    Bad("cluster", "kmeans n_iter=0", lambda: cluster.kmeans(POINTS, 4, n_iter=0), r"n_iter.*0"),
    Bad("cluster", "kmeans backend", lambda: cluster.kmeans(POINTS, 4, backend="cuml"), r"backend='cuml'"),
    Bad("cluster", "kmeans NaN points", lambda: cluster.kmeans(_with_nan(POINTS), 4), r"points.*NaN"),
    Bad("cluster", "kmeans 1-D points", lambda: cluster.kmeans(POINTS[0], 2), r"points.*2-D"),
    Bad("cluster", "kmeans seed=1.5", lambda: cluster.kmeans(POINTS, 4, seed=1.5), r"seed.*1\.5"),
    Bad("cluster", "farthest_point start out of range", lambda: cluster.farthest_point(POINTS, 4, start=40),
        r"start=40"),
    Bad("cluster", "farthest_point start=-1", lambda: cluster.farthest_point(POINTS, 4, start=-1), r"start=-1"),
    Bad("cluster", "farthest_point n=2.5", lambda: cluster.farthest_point(POINTS, 2.5), r"\bn\b.*2\.5"),
    Bad("cluster", "farthest_point n > points", lambda: cluster.farthest_point(POINTS, 41), r"\bn=41"),
    Bad("cluster", "intrinsic_dimension_curve ks empty", lambda: cluster.intrinsic_dimension_curve(POINTS, ks=()),
        r"ks"),
    Bad("cluster", "dimension_from_curve one k", lambda: cluster.dimension_from_curve({4: 1.0}), r"curve"),
    # embedding
    Bad("embedding", "PatchEmbedding mode", lambda: PatchEmbedding(CENTROIDS, WHITEN, 3, 1, 2, "soft"),
        r"mode='soft'"),
    Bad("embedding", "PatchEmbedding k > N", lambda: PatchEmbedding(CENTROIDS, WHITEN, 3, 1, 9), r"k=9.*N=8"),
    Bad("embedding", "PatchEmbedding k=2.5", lambda: PatchEmbedding(CENTROIDS, WHITEN, 3, 1, 2.5), r"k=2\.5"),
    Bad("embedding", "PatchEmbedding NaN centroids", lambda: PatchEmbedding(_with_nan(CENTROIDS), WHITEN, 3, 1, 2),
        r"centroids.*NaN"),
    Bad("embedding", "PatchEmbedding inf whitening", lambda: PatchEmbedding(CENTROIDS, WHITEN * INF, 3, 1, 2),
        r"whitening.*inf"),
    Bad("embedding", "PatchEmbedding centroids of wrong D", lambda: PatchEmbedding(CENTROIDS, WHITEN, 2, 1, 2),
        r"centroids.*\(8, 9\)"),
    Bad("embedding", "PatchEmbedding patch_size=0", lambda: PatchEmbedding(CENTROIDS[:, :0], WHITEN[:0, :0], 0, 1, 2),
        r"patch_size.*0"),
    Bad("embedding", "PatchEmbedding channels=1.5", lambda: PatchEmbedding(CENTROIDS, WHITEN, 3, 1.5, 2),
        r"channels.*1\.5"),
    Bad("embedding", "uint8 pixels on the pooled path",
        lambda: _embedding("hard")((IMAGES * 255).to(torch.uint8), pool=(4, 4, True)), r"x.*uint8"),
    Bad("embedding", "uint8 pixels, unpooled", lambda: _embedding("hard")((IMAGES * 255).to(torch.uint8)),
        r"x.*uint8"),
    Bad("embedding", "float64 input", lambda: _embedding("full")(IMAGES.double()), r"x.*float64"),
    Bad("embedding", "float64 input, pooled", lambda: _embedding("hard")(IMAGES.double(), pool=(4, 4, True)),
        r"x.*float64"),
    Bad("embedding", "input of wrong channels", lambda: _embedding()(IMAGES.expand(-1, 3, -1, -1)),
        r"input.*\(B, 1, H, W\)"),
    Bad("embedding", "knn_mask k=0", lambda: knn_mask(_randn(1, 8, 3, 3), 0), r"k=0"),
    Bad("embedding", "knn_mask integer scores", lambda: knn_mask(torch.ones(1, 8, 3, 3, dtype=torch.long), 2),
        r"scores.*floating"),
    Bad("embedding", "knn_mask NaN scores", lambda: knn_mask(_with_nan(_randn(1, 8, 3, 3)), 2), r"scores.*NaN"),
    Bad("embedding", "knn_pool kernel_size=0", lambda: knn_pool(_randn(1, 8, 6, 6), 2, 0), r"kernel_size=0"),
    Bad("embedding", "phi_full_pooled on a hard embedding",
        lambda: phi_full_pooled(IMAGES, _embedding("hard"), None), r"mode='hard'"),
    Bad("embedding", "build_dictionary n_centroids > n_patches",
        lambda: build_dictionary(IMAGES, 3, n_patches=10, n_centroids=16), r"n_centroids=16.*n_patches=10"),
    Bad("embedding", "build_dictionary n_patches=0", lambda: build_dictionary(IMAGES, 3, 0, 4), r"n_patches.*0"),
    Bad("embedding", "build_dictionary n_centroids=0 (gaussian)",
        lambda: build_dictionary(IMAGES, 3, 10, 0, random_gaussian=True), r"n_centroids.*0"),
    Bad("embedding", "build_dictionary patch_size > image", lambda: build_dictionary(IMAGES, 13, 10, 4),
        r"size=13"),
    Bad("embedding", "build_dictionary whitening", lambda: build_dictionary(IMAGES, 3, 10, 4, whitening="pcs"),
        r"whitening='pcs'"),
    Bad("embedding", "build_dictionary eps=0", lambda: build_dictionary(IMAGES, 3, 10, 4, eps=0.0), r"eps"),
    Bad("embedding", "build_dictionary NaN images", lambda: build_dictionary(_with_nan(IMAGES), 3, 10, 4),
        r"images_float.*NaN"),
]

MODELS = [
    Bad("models", "LocallyLinearNetwork channels", lambda: LocallyLinearNetwork(_embedding(), (3, 12, 12)),
        r"1-channel.*3 channels"),
    Bad("models", "LocallyLinearNetwork patch_size > input", lambda: LocallyLinearNetwork(None, (1, 4, 4)),
        r"patch_size=5.*4x4"),
    Bad("models", "LocallyLinearNetwork n_classes=0", lambda: LocallyLinearNetwork(_embedding(), (1, 12, 12), 0),
        r"n_classes.*0"),
    Bad("models", "LocallyLinearNetwork image_shape of two values",
        lambda: LocallyLinearNetwork(_embedding(), (12, 12)), r"image_shape.*\(12, 12\)"),
    Bad("models", "LocallyLinearNetwork wrong input", lambda: LocallyLinearNetwork(_embedding(), (1, 12, 12))(
        torch.zeros(2, 1, 10, 10)), r"input.*\(B, 1, 12, 12\)"),
    Bad("models", "Head pool_size=0", lambda: Head(8, (10, 10), pool_size=0), r"pool_size.*0"),
    Bad("models", "Head bottleneck=0", lambda: Head(8, (10, 10), bottleneck=0), r"bottleneck.*0"),
    Bad("models", "VGGLike depth=0", lambda: VGGLike((1, 28, 28), depth=0), r"depth=0"),
    Bad("models", "VGGLike mlp_hidden_layers=-1", lambda: VGGLike((1, 28, 28), mlp_hidden_layers=-1),
        r"mlp_hidden_layers=-1"),
    Bad("models", "ResNet18 width=0", lambda: ResNet18(1, 0), r"width"),
    Bad("models", "ResNet18 blocks=()", lambda: ResNet18(1, 4, ()), r"blocks"),
    Bad("models", "make_vision_model name", lambda: make_vision_model("resnett"), r"model='resnett'"),
    Bad("models", "make_vision_model n_classes=0", lambda: make_vision_model("resnet", n_classes=0),
        r"n_classes.*0"),
    Bad("models", "make_vision_model in_channels=1.5", lambda: make_vision_model("resnet", in_channels=1.5),
        r"in_channels.*1\.5"),
    Bad("models", "vit patch_size not dividing", lambda: make_vision_model("vit", image_size=30, patch_size=4),
        r"patch_size=4.*image_size=30"),
    Bad("models", "replace_head n_classes=0", lambda: replace_head(make_vision_model("resnet", width=4), 0),
        r"n_classes.*0"),
    Bad("models", "patch_network k > n_centroids", lambda: patch_network(IMAGES, 10, n_centroids=8, k=9,
                                                                         patch_size=3), r"k=9.*N=8"),
    Bad("models", "patch_network n_centroids > n_patches",
        lambda: patch_network(IMAGES, 10, n_centroids=16, k=4, patch_size=3, n_patches=10),
        r"n_centroids=16.*n_patches=10"),
    Bad("models", "train_layerwise depth=0", lambda: train_layerwise(IMAGES, lambda m: None, depth=0), r"depth=0"),
]

LOSSES = [
    Bad("losses", "nt_xent NaN z1", lambda: nt_xent(_with_nan(Z1), Z2), r"z1.*NaN"),
    Bad("losses", "nt_xent NaN z2", lambda: nt_xent(Z1, _with_nan(Z2)), r"z2.*NaN"),
    Bad("losses", "nt_xent temperature=inf", lambda: nt_xent(Z1, Z2, INF), r"temperature.*inf"),
    Bad("losses", "nt_xent temperature=0", lambda: nt_xent(Z1, Z2, 0.0), r"temperature.*0"),
    Bad("losses", "nt_xent integer embeddings", lambda: nt_xent(Z1.long(), Z2.long()), r"z1.*floating"),
    Bad("losses", "nt_xent shapes differ", lambda: nt_xent(Z1, Z2[:4]), r"z1 and z2"),
    Bad("losses", "hcl NaN z1", lambda: hcl(_with_nan(Z1), Z2), r"z1.*NaN"),
    Bad("losses", "hcl temperature=nan", lambda: hcl(Z1, Z2, NAN), r"temperature.*nan"),
    Bad("losses", "hcl tau_plus=1", lambda: hcl(Z1, Z2, tau_plus=1.0), r"tau_plus.*1"),
    Bad("losses", "hcl beta=-1", lambda: hcl(Z1, Z2, beta=-1.0), r"beta.*-1"),
    Bad("losses", "supcon NaN features", lambda: supcon(_with_nan(torch.stack([Z1, Z2], 1)), None),
        r"features.*NaN"),
    Bad("losses", "supcon float labels", lambda: supcon(torch.stack([Z1, Z2], 1), torch.rand(8)), r"labels.*float"),
    Bad("losses", "supcon temperature=inf", lambda: supcon(torch.stack([Z1, Z2], 1), None, INF),
        r"temperature.*inf"),
    Bad("losses", "supcon labels of wrong shape", lambda: supcon(torch.stack([Z1, Z2], 1), torch.arange(4)),
        r"labels.*\(8,\)"),
    Bad("losses", "moco_infonce NaN q", lambda: moco_infonce(_with_nan(Z1), Z2, _randn(5, 16)), r"\bq\b.*NaN"),
    Bad("losses", "moco_infonce NaN queue", lambda: moco_infonce(Z1, Z2, _with_nan(_randn(5, 16))), r"queue.*NaN"),
    Bad("losses", "moco_infonce queue dim", lambda: moco_infonce(Z1, Z2, _randn(5, 4)), r"queue.*\(K, 16\)"),
    Bad("losses", "moco_infonce margin=inf", lambda: moco_infonce(Z1, Z2, _randn(5, 16), margin=INF), r"margin"),
    Bad("losses", "moco_infonce temperature=inf", lambda: moco_infonce(Z1, Z2, _randn(5, 16), INF),
        r"temperature.*inf"),
    Bad("losses", "eqco_margin queue_size=0", lambda: eqco_margin(0.1, 0, 256), r"queue_size.*0"),
    Bad("losses", "mochi_negatives n_hard=0", lambda: mochi_negatives(Z1, _randn(5, 16), n_hard=0), r"n_hard"),
    Bad("losses", "alignment NaN z1", lambda: alignment(_with_nan(Z1), Z2), r"z1.*NaN"),
    Bad("losses", "alignment alpha=nan", lambda: alignment(Z1, Z2, NAN), r"alpha.*nan"),
    Bad("losses", "uniformity NaN z", lambda: uniformity(_with_nan(Z1)), r"\bz\b.*NaN"),
    Bad("losses", "uniformity t=inf", lambda: uniformity(Z1, INF), r"\bt\b.*inf"),
    Bad("losses", "total_coding_rate NaN z", lambda: total_coding_rate(_with_nan(Z1)), r"\bz\b.*NaN"),
    Bad("losses", "total_coding_rate eps=0", lambda: total_coding_rate(Z1, 0.0), r"eps.*0"),
    Bad("losses", "total_coding_rate eps=inf", lambda: total_coding_rate(Z1, INF), r"eps.*inf"),
    Bad("losses", "emp_ssl_loss NaN views", lambda: emp_ssl_loss(_with_nan(torch.stack([Z1, Z2]))),
        r"views.*NaN"),
    Bad("losses", "emp_ssl_loss one view", lambda: emp_ssl_loss(Z1[None]), r"n_patches=1"),
    Bad("losses", "emp_ssl_loss invariance_weight=nan", lambda: emp_ssl_loss(torch.stack([Z1, Z2]),
                                                                             invariance_weight=NAN),
        r"invariance_weight.*nan"),
]

LABELS = torch.arange(40) % 4

METRICS = [
    Bad("metrics", "knn_classify k=0", lambda: knn_classify(POINTS, LABELS, POINTS, k=0), r"k.*0"),
    Bad("metrics", "knn_classify k=2.5", lambda: knn_classify(POINTS, LABELS, POINTS, k=2.5), r"k.*2\.5"),
    Bad("metrics", "knn_classify temperature=inf", lambda: knn_classify(POINTS, LABELS, POINTS, temperature=INF),
        r"temperature.*inf"),
    Bad("metrics", "knn_classify temperature=nan", lambda: knn_classify(POINTS, LABELS, POINTS, temperature=NAN),
        r"temperature.*nan"),
    Bad("metrics", "knn_classify NaN train_feats", lambda: knn_classify(_with_nan(POINTS), LABELS, POINTS),
        r"train_feats.*NaN"),
    Bad("metrics", "knn_classify NaN query_feats", lambda: knn_classify(POINTS, LABELS, _with_nan(POINTS)),
        r"query_feats.*NaN"),
    Bad("metrics", "knn_classify float labels", lambda: knn_classify(POINTS, LABELS + 0.5, POINTS),
        r"train_labels.*float"),
    Bad("metrics", "knn_classify negative labels", lambda: knn_classify(POINTS, LABELS - 1, POINTS),
        r"train_labels.*-1"),
    Bad("metrics", "knn_classify labels >= n_classes", lambda: knn_classify(POINTS, LABELS, POINTS, n_classes=3),
        r"label 3.*n_classes=3"),
    Bad("metrics", "knn_classify chunk=0", lambda: knn_classify(POINTS, LABELS, POINTS, chunk=0), r"chunk.*0"),
    Bad("metrics", "knn_classify feature dims differ", lambda: knn_classify(POINTS, LABELS, POINTS[:, :3]),
        r"train_feats and query_feats"),
    Bad("metrics", "vmf_concentration NaN z", lambda: vmf_concentration(_with_nan(POINTS)), r"\bz\b.*NaN"),
    Bad("metrics", "vmf_concentration labels length", lambda: vmf_concentration(POINTS, LABELS[:5]), r"labels"),
    Bad("metrics", "circle_projection d=1", lambda: circle_projection(POINTS[:, :1]), r"\bz\b.*d >= 2"),
]

SHAPE, TEXTURE = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])

BIAS = [
    Bad("bias", "shape_bias labels >= n_classes", lambda: shape_bias(SHAPE, SHAPE, TEXTURE + 20, n_classes=16),
        r"texture_labels.*n_classes=16"),
    Bad("bias", "shape_bias shape label >= n_classes", lambda: shape_bias(SHAPE, SHAPE + 16, TEXTURE, n_classes=16),
        r"shape_labels.*n_classes=16"),
    Bad("bias", "shape_bias float decisions", lambda: shape_bias(SHAPE + 0.7, SHAPE, TEXTURE), r"pred.*float"),
    Bad("bias", "shape_bias float labels", lambda: shape_bias(SHAPE, SHAPE + 0.5, TEXTURE), r"shape_labels.*float"),
    Bad("bias", "shape_bias negative decisions", lambda: shape_bias(SHAPE - 1, SHAPE, TEXTURE), r"pred.*-1"),
    Bad("bias", "shape_bias scores of too few classes", lambda: shape_bias(torch.rand(4, 3), SHAPE, TEXTURE),
        r"pred.*3 classes"),
    Bad("bias", "shape_bias negative labels", lambda: shape_bias(SHAPE, SHAPE - 1, TEXTURE), r"labels.*>= 0"),
    Bad("bias", "shape_bias lengths differ", lambda: shape_bias(SHAPE, SHAPE[:3], TEXTURE), r"same length"),
    Bad("bias", "shape_bias 3-D pred", lambda: shape_bias(torch.zeros(4, 2, 2), SHAPE, TEXTURE), r"pred"),
    Bad("bias", "imagenet_to_16 of 10 classes", lambda: imagenet_to_16(torch.zeros(2, 10)), r"1000"),
    Bad("bias", "make_stimuli kind", lambda: make_stimuli("cartoon", 4, torch.zeros(2, 8, 8), torch.arange(2)),
        r"kind='cartoon'"),
    Bad("bias", "make_stimuli texture_strength=2",
        lambda: make_stimuli("conflict", 4, torch.zeros(2, 8, 8), torch.arange(2), texture_strength=2.0),
        r"texture_strength.*2"),
    Bad("bias", "synthetic_masks n_classes=1", lambda: synthetic_masks(1), r"n_classes"),
]

SPLITS_STUB = None  # the encoder checks run before any data is touched

EVAL = [
    Bad("eval", "linear_probe negative weight decay",
        lambda: linear_probe(POINTS, LABELS, POINTS, LABELS, weight_decays=[-1.0]), r"weight_decays"),
    Bad("eval", "linear_probe NaN train features", lambda: linear_probe(_with_nan(POINTS), LABELS, POINTS, LABELS),
        r"train.*NaN"),
    Bad("eval", "linear_probe test_feats without test_labels",
        lambda: linear_probe(POINTS, LABELS, POINTS, LABELS, POINTS), r"test_feats and test_labels"),
    Bad("eval", "linear_probe float labels", lambda: linear_probe(POINTS, LABELS + 0.5, POINTS, LABELS),
        r"train.*labels.*float"),
    Bad("eval", "linear_probe max_iter=0", lambda: linear_probe(POINTS, LABELS, POINTS, LABELS, max_iter=0),
        r"max_iter.*0"),
    Bad("eval", "linear_probe labels >= n_classes", lambda: linear_probe(POINTS, LABELS, POINTS, LABELS, n_classes=3),
        r"n_classes=3"),
    Bad("eval", "confusion_matrix label >= n_classes", lambda: confusion_matrix([0, 5], [0, 1], n_classes=3),
        r"n_classes=3"),
    Bad("eval", "confusion_matrix lengths", lambda: confusion_matrix([0, 1], [0], n_classes=3), r"same length"),
    Bad("eval", "evaluate_encoder knn_k=0", lambda: evaluate_encoder(nn.Identity(), SPLITS_STUB, knn_k=0),
        r"knn_k.*0"),
    Bad("eval", "evaluate_encoder knn_temperature=inf",
        lambda: evaluate_encoder(nn.Identity(), SPLITS_STUB, knn_temperature=INF), r"knn_temperature.*inf"),
    Bad("eval", "evaluate_encoder not a module", lambda: evaluate_encoder(lambda x: x, SPLITS_STUB), r"encoder"),
    Bad("eval", "evaluate_encoder empty weight_decays",
        lambda: evaluate_encoder(nn.Identity(), SPLITS_STUB, weight_decays=[]), r"weight_decays"),
    Bad("eval", "evaluate_encoder batch_size='64'",
        lambda: evaluate_encoder(nn.Identity(), SPLITS_STUB, batch_size="64"), r"batch_size.*'64'"),
    Bad("eval", "alignment_uniformity n=1", lambda: alignment_uniformity(nn.Identity(), None, None, n=1), r"\bn\b.*1"),
    Bad("eval", "FeatureMap method", lambda: FeatureMap(nn.Identity(), "embed"), r"method='embed'"),
]

CHECKS = [
    Bad("checks", "check_int of a float", lambda: check_int("epochs", 2.5, 1), r"epochs.*2\.5"),
    Bad("checks", "check_int of a str", lambda: check_int("batch_size", "64", 1), r"batch_size.*'64'"),
    Bad("checks", "check_float nan", lambda: check_float("lr", NAN, 0.0, strict_min=True), r"lr.*nan"),
    Bad("checks", "check_seeds repeated", lambda: check_seeds("seeds", [0, 0]), r"seeds"),
    Bad("checks", "check_finite NaN", lambda: check_finite("z", _with_nan(Z1)), r"z.*NaN"),
]


def _train_config(**kw):
    from patchnb.train import TrainConfig

    return TrainConfig(**kw)


LOOP = [Bad("loop", f"TrainConfig {k}={v!r}", lambda k=k, v=v: _train_config(**{k: v}), m) for k, v, m in [
    ("gamma", -1.0, r"gamma.*-1"),
    ("gamma", 0.0, r"gamma.*0"),
    ("lr", NAN, r"lr.*nan"),
    ("lr", 0.0, r"lr.*0"),
    ("max_steps_per_epoch", 0, r"max_steps_per_epoch.*0"),
    ("warmup_epochs", -1.0, r"warmup_epochs.*-1"),
    ("epochs", 2.5, r"epochs.*2\.5"),
    ("epochs", 0, r"epochs.*0"),
    ("batch_size", "64", r"batch_size.*'64'"),
    ("eval_batch_size", 0, r"eval_batch_size.*0"),
    ("milestones", (10.5,), r"milestones.*10\.5"),
    ("milestones", 100, r"milestones.*100"),
    ("momentum", -0.1, r"momentum.*-0\.1"),
    ("momentum", 1.0, r"momentum.*1"),
    ("weight_decay", -1e-4, r"weight_decay.*-0\.0001"),
    ("device", "gpu", r"device='gpu'"),
    ("optimizer", "sgdm", r"optimizer='sgdm'"),
    ("schedule", "linear", r"schedule='linear'"),
    ("patience", 0, r"patience.*0"),
    ("seed", 0.5, r"seed.*0\.5"),
    ("test_every_epoch", "yes", r"test_every_epoch.*'yes'"),
]]


def _load(**kw):
    from patchnb.data import load_splits

    return load_splits(**kw)


def _image_tree(root, classes=("cat", "dog"), modes=("L", "RGB")):
    import numpy as np
    from PIL import Image

    g = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, mode in enumerate(modes):
            shape = (8, 8) if mode == "L" else (8, 8, 3)
            Image.fromarray(g.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def _train_val_tree():
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="patchnb-bad-"))
    _image_tree(root / "train")
    _image_tree(root / "val")
    return root


DATA = [
    Bad("data", "load_splits unknown dataset", lambda: _load(name="mnist"), r"dataset='mnist'"),
    Bad("data", "load_splits train_size > data", lambda: _load(name="synthetic", train_size=5000),
        r"train_size=5000.*1800"),
    Bad("data", "load_splits val_size > data", lambda: _load(name="synthetic", val_size=500), r"val_size=500.*200"),
    Bad("data", "load_splits test_size > data", lambda: _load(name="synthetic", test_size=501), r"test_size=501.*500"),
    Bad("data", "load_splits train_size=0", lambda: _load(name="synthetic", train_size=0), r"train_size.*0"),
    Bad("data", "load_splits val_size=2.5", lambda: _load(name="synthetic", val_size=2.5), r"val_size.*2\.5"),
    Bad("data", "load_splits empty val split", lambda: _load(name="synthetic", val_fraction=0.0),
        r"val split.*empty.*val_fraction=0\.0"),
    Bad("data", "load_splits val_fraction=1.5", lambda: _load(name="synthetic", val_fraction=1.5),
        r"val_fraction.*1\.5"),
    Bad("data", "load_splits mean of 3 channels for 1",
        lambda: _load(name="synthetic", mean=(0.5,) * 3, std=(1.0,) * 3),
        r"mean=\(0\.5, 0\.5, 0\.5\).*1 channel"),
    Bad("data", "load_splits mean without std", lambda: _load(name="synthetic", mean=(0.5,)), r"mean and std"),
    Bad("data", "load_splits imagefolder without root", lambda: _load(name="imagefolder"), r"root"),
    Bad("data", "load_splits train/ + val/ without test/", lambda: _load(name="imagefolder", root=_train_val_tree()),
        r"train/, val/ but no test/", DataError),
    Bad("data", "Normalization std=0", lambda: __import__("patchnb.data").data.Normalization((0.5,), (0.0,)),
        r"std > 0"),
    Bad("data", "iterate_batches batch_size=0", lambda: _data().iterate_batches(_data().make_synthetic(4), 0),
        r"batch_size.*>= 1.*0"),
    Bad("data", "iterate_batches batch_size=2.5", lambda: _data().iterate_batches(_data().make_synthetic(4), 2.5),
        r"batch_size.*2\.5"),
    Bad("data", "make_synthetic shape too small", lambda: _data().make_synthetic(4, shape=(1, 2, 2)),
        r"shape=\(1, 2, 2\).*at least 3"),
    Bad("data", "make_synthetic shape of two values", lambda: _data().make_synthetic(4, shape=(16, 16)),
        r"shape.*\(channels, height, width\)"),
    Bad("data", "make_synthetic n_classes=0", lambda: _data().make_synthetic(4, n_classes=0), r"n_classes.*0"),
    Bad("data", "ImageData label 7 with 2 classes",
        lambda: _data().ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 7]), ("a", "b")),
        r"labels.*label 7.*num_classes=2"),
    Bad("data", "ImageData negative label",
        lambda: _data().ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, -1]), ("a", "b")),
        r"labels.*label -1.*num_classes=2"),
    Bad("data", "ImageData float labels",
        lambda: _data().ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0.0, 1.5]), ("a", "b")),
        r"labels.*integer.*float"),
]


def _data():
    import patchnb.data

    return patchnb.data


@lru_cache(maxsize=1)
def _tiny_splits():
    return _data().load_splits("synthetic", train_size=64, val_size=32, test_size=32)


def _fit(model):
    from patchnb.train import TrainConfig, fit

    return fit(model, _tiny_splits(), TrainConfig(epochs=1, batch_size=32), progress=False)


LOOP += [
    Bad("loop", "fit model of 3 channels on 1-channel images",
        lambda: _fit(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))),
        r"model does not take the images of 'synthetic' \(1 channel.*first convolution takes 3.*in_channels=1"),
    Bad("loop", "fit model of 5 outputs for 10 classes",
        lambda: _fit(nn.Sequential(nn.Flatten(), nn.Linear(256, 5))),
        r"model outputs \(2, 5\).*10 classes.*n_classes=10"),
    Bad("loop", "fit model for other image sizes", lambda: _fit(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))),
        r"model does not take the images.*16x16"),
    Bad("loop", "resolve_device('gpu')", lambda: __import__("patchnb.train").train.resolve_device("gpu"),
        r"device='gpu'.*allowed values: 'auto', 'cpu', 'cuda'"),
    Bad("cluster", "kmeans device='gpu'", lambda: cluster.kmeans(POINTS, 4, device="gpu"), r"device='gpu'.*allowed"),
]

CASES = KERNELS + MODELS + LOSSES + METRICS + BIAS + EVAL + CHECKS + LOOP + DATA


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.name}" for c in CASES])
def test_bad_input(case: Bad):
    with pytest.raises(case.exc, match=case.match) as info:
        case.call()
    assert isinstance(info.value, (ValueError, TypeError, DataError)), f"{type(info.value).__name__} is not a " \
                                                                        f"ValueError, TypeError or DataError"


def test_kmeans_on_cuda_without_a_gpu(monkeypatch):
    """``device="cuda"`` on a machine without CUDA says so and names the way out, before any work."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda'.*no CUDA GPU is available; use device='cpu'"):
        cluster.kmeans(POINTS, 4, device="cuda")
    with pytest.raises(ValueError, match=r"device='cuda:0'.*no CUDA GPU"):
        cluster.kmeans(POINTS, 4, backend="torch", device="cuda:0")


def test_a_fit_refused_for_its_model_writes_nothing(tmp_path):
    """The model check comes first: no run folder, checkpoint or record is made for a model that cannot fit."""
    from patchnb.train import TrainConfig, fit

    with pytest.raises(ValueError, match=r"n_classes=10"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(256, 5)), _tiny_splits(), TrainConfig(epochs=1, batch_size=32),
            run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_model_check_changes_nothing_of_the_model():
    """One eval-mode forward pass: each module's mode is restored (a frozen BatchNorm stays in eval mode)."""
    from patchnb.train import check_classifier

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    model[1].eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check_classifier(model, _tiny_splits())
    assert model.training and model[0].training and not model[1].training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_image_folder_mode_from_every_image(tmp_path):
    """A tree whose first image is grayscale but others are RGB loads as RGB (the first file no longer decides),
    and an all-grayscale tree stays one channel."""
    from patchnb.data import load_image_folder

    assert load_image_folder(_image_tree(tmp_path / "mixed", modes=("L", "RGB"))).shape[0] == 3
    assert load_image_folder(_image_tree(tmp_path / "gray", modes=("L", "L"))).shape[0] == 1


def test_table_size():
    areas = Counter(c.area for c in CASES + CLI_CASES_FOR_COUNT)
    assert sum(areas.values()) >= 80, areas
    names = [f"{c.area}: {c.name}" for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"


# ----------------------------------------------------------------------------- the command line

CLI_TRAIN = [
    ("n_centroids > n_patches", "--n-patches 10 --n-centroids 16 --k 4", r"n_centroids=16.*n_patches=10"),
    ("k > n_centroids", "--n-centroids 16 --k 32", r"k=32.*n_centroids=16"),
    ("k=0", "--k 0", r"k must be >= 1, got 0"),
    ("lr=nan", "--lr nan", r"lr.*nan"),
    ("lr=0", "--lr 0", r"lr.*0"),
    ("epochs=0", "--epochs 0", r"epochs.*0"),
    ("batch_size=0", "--batch-size 0", r"batch_size.*0"),
    ("momentum<0", "--momentum -0.5", r"momentum.*-0\.5"),
    ("unknown device", "--device gpu", r"device='gpu'"),
    ("unknown dataset", "--dataset cifar11", r"dataset='cifar11'"),
    ("depth=0", "--depth 0", r"depth=0"),
    ("kernel_size=0", "--kernel-size 0", r"kernel_size.*0"),
    ("pool_size=0", "--pool-size 0", r"pool_size.*0"),
    ("train_size=0", "--train-size 0", r"train_size.*0"),
    ("n_patches=0", "--n-patches 0", r"n_patches.*0"),
    ("kmeans_iters=0", "--kmeans-iters 0", r"kmeans_iters.*0"),
    ("per-layer list of wrong length", "--depth 2 --k 4 4 4", r"k has 3 entries"),
    ("imagefolder without root", "--dataset imagefolder", r"data_root|root"),
]


@pytest.mark.parametrize("name,options,match", CLI_TRAIN, ids=[c[0] for c in CLI_TRAIN])
def test_cli_train_dry_run(name, options, match, capsys):
    """``patchnb train --dry-run`` validates the whole configuration: one line on stderr, exit 2."""
    from patchnb.cli_train import main

    rc = main([*options.split(), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("patchnb train:"), err
    assert __import__("re").search(match, err), err


def test_cli_train_error_before_training(capsys, tmp_path):
    """Without ``--dry-run`` too a bad configuration is one line and exit 2, before any data is loaded."""
    from patchnb.cli_train import main

    rc = main(["--lr", "nan", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "lr" in err, err
    assert not (tmp_path / "run").exists()


NOTEBOOK = "notebooks/patch_table1.ipynb"


def _cli_run(args, tmp_path):
    return ["run", NOTEBOOK, "-o", str(tmp_path / "out.ipynb"), *args]


CLI_RUN = [
    ("misspelt parameter", ["-p", "n_centriods", "8"], r"n_centriods"),
    ("wrong type", ["-p", "scale", "5"], r"scale=5"),
    ("unknown scale", ["-p", "scale", "huge"], r"scale='huge'"),
    ("missing -f file", ["-f", "{tmp}/none.yaml"], r"-f .*none\.yaml: no such file"),
    ("invalid -f YAML", ["-f", "{tmp}/bad.yaml"], r"bad\.yaml is not valid YAML"),
    ("-f not a mapping", ["-f", "{tmp}/list.yaml"], r"list\.yaml must hold a mapping"),
]


@pytest.mark.parametrize("name,args,match", CLI_RUN, ids=[c[0] for c in CLI_RUN])
def test_cli_run_parameters(name, args, match, tmp_path, capsys, monkeypatch):
    """``patchnb run`` rejects bad parameters before executing anything: one line on stderr, exit 2."""
    import patchnb.cli as cli
    from patchnb import build

    (tmp_path / "bad.yaml").write_text("scale: [cpu\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    monkeypatch.chdir(build.repo_root())
    monkeypatch.setattr(cli, "execute", lambda *a, **k: pytest.fail("executed despite a bad parameter"))
    rc = cli.main(_cli_run([a.format(tmp=tmp_path) for a in args], tmp_path))
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert __import__("re").search(match, err), err


# the command-line cases count towards the table's size
CLI_CASES_FOR_COUNT = [Bad("cli", n, lambda: None, m) for n, _, m in CLI_TRAIN + CLI_RUN]

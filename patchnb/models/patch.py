"""The locally linear network of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features", ICML 2022 (Sec. 5, Tables 1-4): a patch embedding (Phi_hard / Phi_full, or a learnable
conv + ReLU for the vanilla CNN), then AvgPool -> BatchNorm -> 1x1 bottleneck -> Linear; Table 2's
*Simple* model (:class:`~patchnb.models.simple.SimpleNetwork`: one linear layer over the whole N*D*H*W embedding); the
dictionaries of the Table 1 ablation (:func:`random_patch_dictionary`); and the layerwise deep
version (Table 4)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import cluster, patches
from ..checks import check_choice, check_float, check_int
from ..embedding import MODES, PatchEmbedding, build_dictionary, pooled_size
from .simple import SimpleNetwork, check_model_input

#: the embedding modes of a patch network: the :class:`~patchnb.embedding.PatchEmbedding` modes, where
#: ``simple`` is Table 2's *Simple* model as the original (:class:`SimpleNetwork`), plus
#: ``simple_factorised``, this package's earlier variant of it (``PatchEmbedding`` mode ``simple``: a 1x1
#: conv N*D -> N before the :class:`Head`; not the original's)
NETWORK_MODES = (*MODES, "simple_factorised")
#: how a dictionary is built: ``kmeans`` (k-means of data patches, whitened with the data's patch
#: covariance: the paper's method), ``gaussian`` (Table 1's random patches as the original:
#: :func:`random_patch_dictionary`), ``gaussian_centroids`` (this package's earlier variant: standard
#: gaussian centroids drawn directly in the data-whitened space; not the original's)
DICTIONARIES = ("kmeans", "gaussian", "gaussian_centroids")


class Head(nn.Module):
    """AvgPool(size, stride, ceil_mode=True) -> BatchNorm(N) -> 1x1 conv N -> bottleneck [-> ReLU] ->
    Linear to ``n_classes``; each part switchable (Table 3). ``spatial`` is the (H, W) entering it."""

    def __init__(self, channels: int, spatial: tuple[int, int], n_classes: int = 10, use_pool: bool = True,
                 pool_size: int = 4, pool_stride: int = 4, use_batch_norm: bool = True, use_bottleneck: bool = True,
                 bottleneck: int = 32, relu_after_bottleneck: bool = False) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("n_classes", n_classes), ("bottleneck", bottleneck)):
            check_int(name, value, 1)
        if use_pool:
            check_int("pool_size", pool_size, 1)
            check_int("pool_stride", pool_stride, 1)
        h, w = spatial
        self.pool = (pool_size, pool_stride, True) if use_pool else None
        if use_pool:
            h, w = pooled_size(h, pool_size, pool_stride), pooled_size(w, pool_size, pool_stride)
        self.bn = nn.BatchNorm2d(channels) if use_batch_norm else nn.Identity()
        self.bottleneck = nn.Conv2d(channels, bottleneck, 1) if use_bottleneck else nn.Identity()
        self.relu = nn.ReLU() if relu_after_bottleneck else nn.Identity()
        c = bottleneck if use_bottleneck else channels
        self.linear = nn.Linear(c * h * w, n_classes)

    def features(self, x: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        if self.pool is not None and not pooled:
            x = F.avg_pool2d(x, *self.pool[:2], ceil_mode=True)
        return self.relu(self.bottleneck(self.bn(x)))

    def forward(self, x: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        return self.linear(self.features(x, pooled).flatten(1))


def random_patch_dictionary(channels: int, patch_size: int, n_patches: int, n_centroids: int,
                            whitening: str = "pca", seed: int = 0, n_iter: int = 20, eps: float = 1e-3) -> dict:
    """The dictionary of Table 1's *random patches* as the original builds it (``main.py
    --random_gaussian_patches True``, Brutzkus et al. 2022): ``n_patches`` standard gaussian patches in the
    pixel frame (:func:`~patchnb.patches.gaussian_patches`: ceil(1.01 n) drawn, norms < 0.01 dropped), the
    whitening computed from *their own* covariance (:meth:`~patchnb.patches.Whitening.from_patches`; the
    data's patches are not used at all), the whitened random patches clustered by k-means into
    ``n_centroids`` centroids (used as they are when ``n_patches == n_centroids``, as the original).

    The embedding compares an image patch x with a centroid c through ``-<x, W c> + ||c||^2 / 2`` where W
    is this random whitening, nearly ``U / (1 + eps)`` with U orthogonal since the random patches'
    covariance is nearly the identity: the centroids live (up to that rotation) in the *pixel* frame of
    the model's input. Contrast ``gaussian_centroids`` (:data:`DICTIONARIES`): gaussian centroids in the
    data-whitened frame. Returns the keys of :func:`~patchnb.embedding.build_dictionary`."""
    check_choice("whitening", whitening, patches.WHITENINGS)
    for name, value in (("channels", channels), ("patch_size", patch_size), ("n_patches", n_patches),
                        ("n_centroids", n_centroids), ("n_iter", n_iter)):
        check_int(name, value, 1)
    check_float("eps", eps, 0.0, strict_min=True)
    if n_centroids > n_patches:
        raise ValueError(f"n_centroids={n_centroids} is more than n_patches={n_patches}: k-means needs at least as "
                         f"many random patches as centroids (raise n_patches or lower n_centroids)")
    pts = patches.gaussian_patches(n_patches, channels, patch_size, seed).flatten(1)
    wh = patches.Whitening.from_patches(pts, whitening, eps)
    white = wh(pts)
    centroids = white if n_patches == n_centroids else cluster.kmeans(white, n_centroids, n_iter, seed).centroids
    return {"centroids": centroids.float(), "whitening": wh.matrix.float(), "patch_size": patch_size,
            "channels": channels, "mean": wh.mean.float()}


def make_dictionary(images_float: torch.Tensor, patch_size: int, n_patches: int, n_centroids: int,
                    dictionary: str = "kmeans", whitening: str = "pca", seed: int = 0, n_iter: int = 20) -> dict:
    """The dictionary of one layer by the method ``dictionary`` (:data:`DICTIONARIES`) from the layer's
    input ``images_float`` (for ``gaussian`` only its channel count is used)."""
    check_choice("dictionary", dictionary, DICTIONARIES)
    if dictionary == "gaussian":
        if not isinstance(images_float, torch.Tensor) or images_float.ndim != 4:
            raise ValueError(f"images_float must be (N, C, H, W), got {getattr(images_float, 'shape', images_float)}")
        return random_patch_dictionary(images_float.shape[1], patch_size, n_patches, n_centroids, whitening, seed,
                                       n_iter)
    return build_dictionary(images_float, patch_size, n_patches, n_centroids, whitening, seed,
                            random_gaussian=dictionary == "gaussian_centroids", n_iter=n_iter)


def _no_head_options(**options) -> None:
    on = [name for name, value in options.items() if value]
    if on:
        raise ValueError(f"mode='simple' (Table 2's Simple model: one linear layer over the whole embedding) has no "
                         f"pooling, BatchNorm or bottleneck, as the original asserts; turn off {', '.join(on)} "
                         f"(or use mode='simple_factorised')")


def patch_layer(embedding: PatchEmbedding | None, image_shape: Sequence[int], n_classes: int = 10,
                simple: bool = False, **head) -> nn.Module:
    """One layer: :class:`SimpleNetwork` when ``simple`` (``head`` must switch pooling, BatchNorm and the
    bottleneck off), else :class:`LocallyLinearNetwork` with ``head``."""
    if simple:
        _no_head_options(use_pool=head.get("use_pool", True), use_batch_norm=head.get("use_batch_norm", True),
                         use_bottleneck=head.get("use_bottleneck", True),
                         relu_after_bottleneck=head.get("relu_after_bottleneck", False))
        return SimpleNetwork(embedding, image_shape, n_classes)
    return LocallyLinearNetwork(embedding, image_shape, n_classes, **head)


def _embedding_mode(mode: str) -> str:
    """The :class:`~patchnb.embedding.PatchEmbedding` mode of a network mode (:data:`NETWORK_MODES`)."""
    check_choice("mode", mode, NETWORK_MODES)
    return {"simple": "hard", "simple_factorised": "simple"}.get(mode, mode)


def _check_k(k: int, n: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an integer with 1 <= k <= N={n} (the dictionary size)")


class LocallyLinearNetwork(nn.Module):
    """Embedding then :class:`Head` (Brutzkus et al. 2022, Sec. 5). ``embedding`` is a
    :class:`~patchnb.embedding.PatchEmbedding` (Phi_hard, Phi_full and ablations) or ``None`` for the
    vanilla one-hidden-layer CNN (``conv_channels`` learnable p x p filters + ReLU, Table 1).
    ``image_shape`` is (C, H, W) of the input. In ``hard`` and ``full`` modes the pooling is fused with the
    embedding (:func:`~patchnb.embedding.phi_full_pooled`)."""

    def __init__(self, embedding: PatchEmbedding | None, image_shape: Sequence[int], n_classes: int = 10,
                 conv_channels: int = 1024, patch_size: int = 5, **head) -> None:
        super().__init__()
        c, h, w = check_model_input(image_shape, n_classes, embedding)
        if embedding is not None:
            patch_size, channels = embedding.patch_size, embedding.out_channels
            self.conv = None
        else:
            channels = conv_channels
            self.conv = nn.Conv2d(c, conv_channels, patch_size)
        if patch_size > min(h, w):
            raise ValueError(f"patch_size={patch_size} is larger than the {h}x{w} input")
        self.embedding, self.image_shape = embedding, tuple(image_shape)
        self.head = Head(channels, (h - patch_size + 1, w - patch_size + 1), n_classes, **head)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"input must be (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")

    def _fused_pool(self) -> bool:
        return self.embedding is not None and self.embedding.mode in ("hard", "full") and self.head.pool is not None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the pooling (or pooled when fused)."""
        if self.embedding is None:
            return F.relu(self.conv(x))
        return self.embedding(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck output (B, 32, Hp, Wp): what the next layer of the layerwise version sees."""
        self._check(x)
        if self._fused_pool():
            return self.head.features(self.embedding(x, pool=self.head.pool), pooled=True)
        return self.head.features(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if self._fused_pool():
            return self.head(self.embedding(x, pool=self.head.pool), pooled=True)
        return self.head(self.embed(x))


@contextlib.contextmanager
def seeded_init(seed: int):
    """A context in which parameter initialisation draws from ``torch.manual_seed(seed)`` without
    touching the caller's random state: a model built inside depends on ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def patch_network(images_float: torch.Tensor, n_classes: int, n_centroids: int = 256, k: int | None = None,
                  patch_size: int = 5, n_patches: int = 65536, mode: str = "full", whitening: str = "pca",
                  seed: int = 0, kmeans_iters: int = 10, **head) -> nn.Module:
    """A depth-1 patch network end to end (Brutzkus et al., ICML 2022, Sec. 5): the unsupervised
    stage (whitened k-means dictionary of ``n_centroids`` patches from ``images_float``, normalised
    as the model sees them), then the locally linear network with the ``mode`` embedding
    (:data:`NETWORK_MODES`, Phi_full by default; ``simple`` is a :class:`SimpleNetwork`) and ``k``
    nearest centroids (default N/4, the paper's ratio)."""
    emb_mode = _embedding_mode(mode)
    k = k or max(1, n_centroids // 4)
    _check_k(k, n_centroids)
    d = build_dictionary(images_float, patch_size, min(n_patches, _max_patches(images_float, patch_size)),
                         n_centroids, whitening, seed, n_iter=kmeans_iters)
    with seeded_init(seed):
        return patch_layer(PatchEmbedding.from_dictionary(d, k, emb_mode), images_float.shape[1:], n_classes,
                           simple=mode == "simple", **head)


def _max_patches(images: torch.Tensor, patch_size: int) -> int:
    n, _, h, w = images.shape
    return n * (h - patch_size + 1) * (w - patch_size + 1)


class FrozenStack(nn.Module):
    """Trained layers (frozen, eval mode) applied in sequence: each maps to its bottleneck output."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenStack:
        return super().train(False)  # BatchNorm statistics stay frozen

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.features(x)
        return x


class StackedNetwork(nn.Module):
    """A frozen prefix followed by one trainable :class:`LocallyLinearNetwork` layer."""

    def __init__(self, prefix: FrozenStack, top: LocallyLinearNetwork) -> None:
        super().__init__()
        self.prefix, self.top = prefix, top

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.prefix(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.top.features(self.prefix(x))


#: Per-layer defaults of the deep version (Brutzkus et al. 2022, Table 4, at the paper's N = 1024
#: centroids): patch size, neighbours k, AvgPool and BatchNorm after each layer. Written once here; the
#: command line, the Table 4 recipe and :func:`train_layerwise` read them through :func:`table4_layers`.
TABLE4_LAYERS = {"kernel_size": (5, 3, 3, 3), "k": (256, 128, 128, 128), "avg_pool": (True, False, False, False),
                 "batch_norm": (True, False, False, False)}


def table4_layers(name: str, depth: int) -> list:
    """Table 4's ``name`` (a key of :data:`TABLE4_LAYERS`) for ``depth`` layers: cut to ``depth``, or
    extended by repeating the last layer's value."""
    if name not in TABLE4_LAYERS:
        raise ValueError(f"{name!r} has no Table 4 default; known: {sorted(TABLE4_LAYERS)}")
    values = TABLE4_LAYERS[name]
    return list(values[:depth]) + [values[-1]] * max(0, depth - len(values))


def _per_layer(name: str, value, depth: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * depth
    if len(values) != depth:
        raise ValueError(f"{name} has {len(values)} entries but depth={depth}; give one per layer")
    return values


def train_layerwise(images_float: torch.Tensor, train_fn: Callable[[nn.Module], object], n_classes: int = 10,
                    depth: int = 4, kernel_sizes: Sequence[int] | None = None,
                    ks: Sequence[int] | None = None,
                    n_centroids: int | Sequence[int] = 1024, n_patches: int | Sequence[int] = 262144,
                    mode: str = "full", use_pool: Sequence[bool] | None = None,
                    use_batch_norm: Sequence[bool] | None = None, pool_size: int = 2,
                    pool_stride: int = 2, whitening: str = "pca", seed: int = 0, vanilla: bool = False,
                    n_iter: int = 20, dictionary: str = "kmeans", **head) -> list[tuple[nn.Module, object]]:
    """The layerwise deep version (Brutzkus et al. 2022, Table 4): train layer 1, freeze it, build a
    new dictionary from the previous layer's bottleneck output (``patch_moments(...,
    transform=frozen_prefix)``), train the next layer on top, up to ``depth``.

    ``images_float``: training images in the normalisation the model sees (for the dictionaries).
    ``train_fn(model) -> result`` trains one stacked model (e.g. wraps ``patchnb.train.fit``).
    ``vanilla=True`` is the layerwise CNN (each layer a learnable conv + ReLU); ``dictionary`` is how each
    layer's dictionary is built (:data:`DICTIONARIES`: ``gaussian`` is the Table 1 ablation as the
    original, :func:`random_patch_dictionary`). ``mode`` is one of :data:`NETWORK_MODES`; ``simple``
    (Table 2's :class:`SimpleNetwork`) exists at depth 1 only, as one linear layer over the whole
    embedding has no bottleneck to stack on. Per-layer arguments
    (kernel sizes, k, pooling, BN, N, n_patches) take one entry per layer; left out, Table 4's
    (:data:`TABLE4_LAYERS`) cut to ``depth``. Returns [(model, result)]
    for depths 1..depth.
    """
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    check_choice("dictionary", dictionary, DICTIONARIES)
    emb_mode = _embedding_mode(mode)
    if mode == "simple" and not vanilla and depth > 1:
        raise ValueError(f"mode='simple' (one linear layer over the whole embedding) has no bottleneck output to "
                         f"stack: depth={depth} must be 1 (or use mode='simple_factorised')")
    kernel_sizes = table4_layers("kernel_size", depth) if kernel_sizes is None else kernel_sizes
    ks = table4_layers("k", depth) if ks is None else ks
    use_pool = table4_layers("avg_pool", depth) if use_pool is None else use_pool
    use_batch_norm = table4_layers("batch_norm", depth) if use_batch_norm is None else use_batch_norm
    kernel_sizes, ks = _per_layer("kernel_sizes", kernel_sizes, depth), _per_layer("ks", ks, depth)
    use_pool, use_batch_norm = _per_layer("use_pool", use_pool, depth), _per_layer("use_batch_norm", use_batch_norm,
                                                                                   depth)
    n_centroids, n_patches = _per_layer("n_centroids", n_centroids, depth), _per_layer("n_patches", n_patches, depth)
    for k, n in zip(ks, n_centroids):
        if not vanilla:
            _check_k(k, n)
    layers: list[nn.Module] = []
    out = []
    x_shape = tuple(images_float.shape[1:])
    for i in range(depth):
        prefix = FrozenStack(layers)
        if i:
            with torch.no_grad():
                x_shape = tuple(prefix(images_float[:1]).shape[1:])
        d = None
        if not vanilla:
            feats = prefix(images_float) if i else images_float
            d = make_dictionary(feats, kernel_sizes[i], n_patches[i], n_centroids[i], dictionary, whitening,
                                seed + i, n_iter)
        with seeded_init(seed + i):  # layer i's initialisation depends on the seed only
            emb = None if vanilla else PatchEmbedding.from_dictionary(d, ks[i], emb_mode)
            top = patch_layer(emb, x_shape, n_classes, simple=mode == "simple" and not vanilla,
                              conv_channels=n_centroids[i], patch_size=kernel_sizes[i], use_pool=use_pool[i],
                              use_batch_norm=use_batch_norm[i], pool_size=pool_size, pool_stride=pool_stride,
                              **head)
        model = StackedNetwork(prefix, top) if i else top
        result = train_fn(model)
        out.append((model, result))
        layers.append(top)
    return out

"""Small-image vision backbones of the shape-vs-texture chapter, with one constructor signature
``Model(in_channels, n_classes, image_size, width)``:

* :class:`ResNet`: the package's ResNet-18 (He et al., CVPR 2016; :mod:`patchnb.models.resnet`) for
  28-32 px inputs (3x3 stride-1 stem, no max-pool) with a ``width`` option (``64`` is the standard network);
* :class:`ConvNeXt`: ConvNeXt blocks (Liu et al., CVPR 2022: 7x7 depthwise conv, LayerNorm,
  inverted MLP, layer scale) on a 2x2 patchify stem;
* :class:`ViT`: a Vision Transformer (Dosovitskiy et al., ICLR 2021) with a class token, learned
  position embeddings and ``patch_size`` a parameter;
* :class:`CoAtNet`: a conv stem and MBConv stages followed by Transformer blocks with relative
  position bias, in the spirit of CoAtNet (Dai et al., NeurIPS 2021, "C-C-T").

Every model is a :class:`VisionModel` = ``backbone`` (images -> ``(B, out_dim)`` features) + a
linear ``head``. :func:`freeze_backbone` freezes the backbone *including* its BatchNorm running
statistics and dropout (the seed's ``--frozen`` only cleared ``requires_grad``, so BN statistics
kept drifting in ``train()`` mode); :func:`replace_head` puts a new head for a second task.
:func:`make_vision_model` builds any of them by name, and any timm model when timm is installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
from .resnet import ResNet18

MODELS = ("resnet", "convnext", "vit", "coatnet")


class VisionModel(nn.Module):
    """``head(backbone(x))`` with a freezable backbone (see :func:`freeze_backbone`)."""

    def __init__(self, backbone: nn.Module, out_dim: int, n_classes: int):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.backbone = backbone
        self.out_dim = out_dim
        self.head = nn.Linear(out_dim, n_classes)
        self.frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> VisionModel:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # keep BatchNorm statistics and dropout frozen whatever the loop asks
        return self


def _check(in_channels: int, n_classes: int, image_size: int, width: int) -> None:
    for name, v, lo in (("in_channels", in_channels, 1), ("n_classes", n_classes, 1), ("image_size", image_size, 4),
                        ("width", width, 1)):
        check_int(name, v, lo)


def freeze_backbone(model: VisionModel, frozen: bool = True) -> VisionModel:
    """Freeze (or unfreeze) ``model.backbone``: no gradients, and BatchNorm running statistics and
    dropout held in eval mode even while the model trains, so only the head learns. Returns ``model``."""
    if not isinstance(model, VisionModel):
        raise TypeError(f"freeze_backbone needs a VisionModel (backbone + head), got {type(model).__name__}; wrap "
                        f"a feature extractor with VisionModel(backbone, out_dim, n_classes)")
    model.frozen = frozen
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen)
    model.train(model.training)
    return model


def replace_head(model: VisionModel, n_classes: int) -> VisionModel:
    """A fresh linear head with ``n_classes`` outputs (transfer to a second task). Returns ``model``."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    device = next(model.head.parameters()).device
    model.head = nn.Linear(model.out_dim, n_classes).to(device)
    return model


# ----------------------------------------------------------------------------- ResNet


class ResNet(VisionModel):
    """ResNet-18 for small images (:class:`patchnb.models.ResNet18`: 3x3 stride-1 stem, no max-pool, stage
    widths ``width * (1, 2, 4, 8)``, PyTorch's default initialisation) + a linear head; ``width=64`` is
    the standard network."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 32, width: int = 16,
                 blocks: tuple[int, ...] = (2, 2, 2, 2)):
        _check(in_channels, n_classes, image_size, width)
        backbone = ResNet18(in_channels, width, tuple(blocks))
        super().__init__(backbone, backbone.out_dim, n_classes)


# ----------------------------------------------------------------------------- ConvNeXt


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6, kernel: int = 7):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(VisionModel):
    """ConvNeXt-style CNN: 2x2 patchify stem, stages of ConvNeXt blocks with widths ``width * (1, 2, 4)``
    separated by LayerNorm + 2x2 stride-2 convolutions, global average pooling and LayerNorm."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 32, width: int = 32,
                 depths: tuple[int, ...] = (2, 2, 2), layer_scale: float = 1e-6, kernel: int = 7):
        _check(in_channels, n_classes, image_size, width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 2, 2), LayerNorm2d(width)]
        dim = width
        for i, d in enumerate(depths):
            if i > 0:
                layers += [LayerNorm2d(dim), nn.Conv2d(dim, 2 * dim, 2, 2)]
                dim *= 2
            layers += [ConvNeXtBlock(dim, layer_scale, kernel) for _ in range(d)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dim)]
        super().__init__(nn.Sequential(*layers), dim, n_classes)


# ----------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Multi-head self-attention; with ``grid=(h, w)`` a learned relative position bias is added to
    the logits of the ``h * w`` tokens (CoAtNet's "relative attention")."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int] | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width/dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.grid = grid
        if grid is not None:
            h, w = grid
            self.bias_table = nn.Parameter(torch.zeros(heads, (2 * h - 1) * (2 * w - 1)))
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()
            rel = (ys[:, None] - ys[None] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None] + w - 1)
            self.register_buffer("rel_index", rel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[:, self.rel_index][None] if self.grid is not None else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, grid: tuple[int, int] | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, grid)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class _ViTBackbone(nn.Module):
    def __init__(self, in_channels, image_size, patch_size, dim, depth, heads, dropout):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        n = (image_size // patch_size) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, dropout=dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"this ViT was built for {self.image_size}x{self.image_size} images, got "
                             f"{tuple(x.shape[-2:])}")
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        return self.norm(self.blocks(t))[:, 0]


class ViT(VisionModel):
    """Vision Transformer: ``patch_size`` x ``patch_size`` patches linearly embedded to ``width``
    dimensions, a class token, learned position embeddings, ``depth`` pre-norm Transformer blocks;
    the class token's final state is the feature."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 32, width: int = 64,
                 patch_size: int = 4, depth: int = 4, heads: int = 4, dropout: float = 0.0):
        _check(in_channels, n_classes, image_size, width)
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}; allowed values: "
                             f"{[p for p in range(1, image_size + 1) if image_size % p == 0]}")
        if width % heads:
            raise ValueError(f"width={width} must be divisible by heads={heads}")
        super().__init__(_ViTBackbone(in_channels, image_size, patch_size, width, depth, heads, dropout), width,
                         n_classes)


# ----------------------------------------------------------------------------- CoAtNet-style hybrid


class MBConv(nn.Module):
    """Pre-norm inverted residual (MobileNetV2 / EfficientNet, as in CoAtNet's conv stages)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 4):
        super().__init__()
        hidden = c_in * expand
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, c_out, 1))
        self.short = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                                       nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.body(x)


def _half(n: int) -> int:
    return (n - 1) // 2 + 1  # output size of a 3x3 stride-2 conv with padding 1


class _CoAtBackbone(nn.Module):
    def __init__(self, in_channels, image_size, width, depths, heads):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.GELU())
        convs: list[nn.Module] = []
        c, size = width, image_size
        for i, d in enumerate(depths[:2]):  # C-C: MBConv stages, each halving the resolution
            c_out = width * 2 ** i
            for j in range(d):
                convs.append(MBConv(c, c_out, stride=2 if j == 0 else 1))
                c = c_out
            size = _half(size)
        self.convs = nn.Sequential(*convs)
        dim = 4 * width  # T: a stride-2 merge, then Transformer blocks with relative attention
        self.merge = nn.Conv2d(c, dim, 3, 2, 1)
        size = _half(size)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, grid=(size, size)) for _ in range(depths[2])])
        self.norm = nn.LayerNorm(dim)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.merge(self.convs(self.stem(x)))
        if t.shape[-1] != self.size or t.shape[-2] != self.size:
            raise ValueError(f"this CoAtNet was built for another image size (token grid {self.size}, got "
                             f"{tuple(t.shape[-2:])})")
        t = self.blocks(t.flatten(2).transpose(1, 2))
        return self.norm(t.mean(1))


class CoAtNet(VisionModel):
    """Hybrid conv + attention in the spirit of CoAtNet ("C-C-T"): a 3x3 conv stem, two MBConv stages
    (widths ``width``, ``2 width``, each halving the resolution), a stride-2 merge to ``4 width``, then
    Transformer blocks whose attention has a relative position bias; mean-pooled tokens."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 32, width: int = 32,
                 depths: tuple[int, int, int] = (1, 1, 2), heads: int = 4):
        _check(in_channels, n_classes, image_size, width)
        if len(depths) != 3:
            raise ValueError(f"depths must give (MBConv stage 1, MBConv stage 2, Transformer) depths, got {depths}")
        if (4 * width) % heads:
            raise ValueError(f"4 * width={4 * width} must be divisible by heads={heads}")
        super().__init__(_CoAtBackbone(in_channels, image_size, width, depths, heads), 4 * width, n_classes)


# ----------------------------------------------------------------------------- timm and the factory


class _TimmBackbone(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _timm_model(name: str, in_channels: int, n_classes: int, image_size: int, **kwargs) -> VisionModel:
    import timm  # optional dependency (pip install timm): imported only when a timm model is asked for

    try:
        net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, img_size=image_size,
                                **kwargs)
    except TypeError:  # architectures without an img_size argument (CNNs)
        net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    return VisionModel(_TimmBackbone(net), int(net.num_features), n_classes)


def _timm_names() -> list[str] | None:
    try:
        import timm  # optional dependency
    except ImportError:
        return None
    return timm.list_models()


def make_vision_model(name: str, in_channels: int = 1, n_classes: int = 10, image_size: int = 32,
               width: int | None = None, **kwargs) -> VisionModel:
    """Build ``resnet``, ``convnext``, ``vit`` or ``coatnet`` (``width=None`` keeps the model's
    default), or a timm architecture (``"timm:<name>"`` or a plain timm name) when timm is installed;
    extra keyword arguments go to the constructor."""
    local = {"resnet": ResNet, "convnext": ConvNeXt, "vit": ViT, "coatnet": CoAtNet}
    if name in local:
        if width is not None:
            kwargs["width"] = width
        return local[name](in_channels=in_channels, n_classes=n_classes, image_size=image_size, **kwargs)
    timm_name = name.removeprefix("timm:")
    names = _timm_names()
    if names is None:
        if name.startswith("timm:"):
            raise ValueError(f"model={name!r} needs timm (`pip install timm`), which is not installed")
    elif timm_name in names:
        return _timm_model(timm_name, in_channels, n_classes, image_size, **kwargs)
    raise ValueError(f"model={name!r} is not supported; allowed values: {', '.join(map(repr, MODELS))}"
                     + (", or a timm model name ('timm:<name>')" if names is not None else
                        " (timm names work once timm is installed)"))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["MODELS", "CoAtNet", "ConvNeXt", "ResNet", "ViT", "VisionModel", "count_parameters", "freeze_backbone",
           "make_vision_model", "replace_head"]

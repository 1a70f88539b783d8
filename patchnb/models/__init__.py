"""Models: the locally linear network and its layerwise deep version (Brutzkus et al., ICML 2022),
and CNN baselines. The vision backbones of the bias chapter live in :mod:`patchnb.models.vision`."""

from .cnn import VGGLike, vanilla_cnn
from .patch import FrozenStack, Head, LocallyLinearNetwork, StackedNetwork, patch_network, train_layerwise

__all__ = ["FrozenStack", "Head", "LocallyLinearNetwork", "StackedNetwork", "VGGLike", "patch_network",
           "train_layerwise", "vanilla_cnn"]

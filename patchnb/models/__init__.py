"""Models: the locally linear network and its layerwise deep version (Brutzkus et al., ICML 2022),
CNN baselines, and THE ResNet-18 (:mod:`patchnb.models.resnet`, the backbone of the self-supervised
methods and of the shape-bias chapter's ``resnet``). The vision backbones of the bias chapter live in
:mod:`patchnb.models.vision`."""

from .cnn import VGGLike, vanilla_cnn
from .patch import FrozenStack, Head, LocallyLinearNetwork, StackedNetwork, patch_network, train_layerwise
from .resnet import ResNet18

__all__ = ["FrozenStack", "Head", "LocallyLinearNetwork", "ResNet18", "StackedNetwork", "VGGLike", "patch_network",
           "train_layerwise", "vanilla_cnn"]

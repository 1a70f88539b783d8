"""Self-supervised learning: losses (pure functions, one per file), the shared augmentation, a
narrow ResNet-18 backbone with projection head, and methods for :func:`patchnb.train.fit`."""

from .augment import Augment, normalize
from .backbones import ProjectionHead, ResNet18
from .config import MethodConfigError, available_configs, load_method_config, read_method_config
from .context_encoder import ContextEncoder
from .deepcluster import DeepCluster
from .detcon import DetCon, segment_masks
from .knn import knn_accuracy
from .losses import (
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
from .methods import EMPSSL, HCL, METHODS, MoCoV2, SimCLR, SSLModel, SupCon, make_model

__all__ = [
    "Augment", "ContextEncoder", "MethodConfigError", "available_configs", "load_method_config",
    "read_method_config", "DeepCluster", "DetCon", "EMPSSL", "HCL", "METHODS", "MoCoV2", "ProjectionHead",
    "ResNet18", "SSLModel", "SimCLR", "SupCon", "alignment", "emp_ssl_loss", "eqco_margin", "hcl", "knn_accuracy",
    "make_model", "mochi_negatives", "moco_infonce", "normalize", "nt_xent", "segment_masks", "supcon",
    "total_coding_rate", "uniformity",
]

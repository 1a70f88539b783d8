"""Self-supervised learning: methods for :func:`patchnb.train.fit` (SimCLR, MoCo v2, HCL, SupCon, EMP-SSL,
DeepCluster, DetCon, Context Encoder), the shared augmentation, the projection head, their YAML configs
and per-epoch backbone checkpoints. The losses they use live in :mod:`patchnb.losses` and are
re-exported here."""

from ..losses import (
    alignment,
    detcon_loss,
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
from ..models.resnet import ResNet18  # the backbone of every method, importable from here too
from .augment import Augment, normalize
from .checkpoints import Checkpointing, checkpoint_meta, pretrain_with_checkpoints, save_backbone
from .config import MethodConfigError, available_configs, load_method_config, read_method_config
from .context_encoder import ContextEncoder
from .deepcluster import DeepCluster
from .detcon import DetCon, segment_masks
from .emp import EMPSSL, patch_averaged_features
from .heads import ProjectionHead
from .knn import knn_accuracy
from .methods import HCL, METHODS, MoCoV2, SimCLR, SSLModel, SupCon, make_ssl_model

__all__ = [
    "alignment", "Augment", "available_configs", "checkpoint_meta", "Checkpointing", "ContextEncoder", "DeepCluster",
    "DetCon", "detcon_loss", "emp_ssl_loss", "EMPSSL", "eqco_margin", "HCL", "hcl", "knn_accuracy",
    "load_method_config", "make_ssl_model", "MethodConfigError", "METHODS", "mochi_negatives", "moco_infonce",
    "MoCoV2", "normalize", "nt_xent", "patch_averaged_features", "pretrain_with_checkpoints", "ProjectionHead",
    "read_method_config", "ResNet18", "save_backbone", "segment_masks", "SimCLR", "SSLModel", "SupCon", "supcon",
    "total_coding_rate", "uniformity",
]

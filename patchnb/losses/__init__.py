"""Self-supervised losses: pure functions of tensors, one concept per file.

The losses/metrics layer of the package (below the methods of :mod:`patchnb.ssl`, which plug them into
training, and :mod:`patchnb.eval`, which reports alignment and uniformity of trained encoders); they
import nothing from patchnb but its parameter checks (:mod:`patchnb.checks`). ``patchnb.ssl`` re-exports every name."""

from .align_uniform import alignment, uniformity
from .coding_rate import emp_ssl_loss, total_coding_rate
from .detcon import detcon_loss
from .hcl import hcl
from .moco import eqco_margin, mochi_negatives, moco_infonce
from .nt_xent import nt_xent
from .supcon import supcon

__all__ = ["alignment", "detcon_loss", "emp_ssl_loss", "eqco_margin", "hcl", "mochi_negatives", "moco_infonce",
           "nt_xent", "supcon", "total_coding_rate", "uniformity"]

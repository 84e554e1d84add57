"""Quantizers, registered by name in `QUANTIZERS`; importing this package registers the built-ins.

=============  ======================================  ==========================================
name           class                                   codebook
=============  ======================================  ==========================================
``vq``         `VectorQuantizer`                learned by its loss term (paper Eq. 3)
``vq_ema``     `EMAVectorQuantizer`             moving averages (paper appendix A.1)
``vq_cosine``  `CosineVectorQuantizer`          l2-normalised, learned by its loss term
``rvq``        `ResidualVectorQuantizer`        Q stages on residuals; indices (B, h, w, Q)
``fsq``        `FiniteScalarQuantizer`          implicit: K = prod(levels); nothing learned
``lfq``        `LookupFreeQuantizer`            implicit: K = 2**bits, one sign per channel
=============  ======================================  ==========================================
"""

from .base import QUANTIZERS as QUANTIZERS
from .base import BaseQuantizer as BaseQuantizer
from .codebook import CodebookQuantizer as CodebookQuantizer
from .cosine_vector_quantizer import CosineVectorQuantizer as CosineVectorQuantizer
from .ema_vector_quantizer import EMAVectorQuantizer as EMAVectorQuantizer
from .finite_scalar_quantizer import FiniteScalarQuantizer as FiniteScalarQuantizer
from .lookup_free_quantizer import LookupFreeQuantizer as LookupFreeQuantizer
from .residual_vector_quantizer import ResidualVectorQuantizer as ResidualVectorQuantizer
from .vector_quantizer import VectorQuantizer as VectorQuantizer

__all__ = [
    "QUANTIZERS",
    "BaseQuantizer",
    "CodebookQuantizer",
    "CosineVectorQuantizer",
    "EMAVectorQuantizer",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
]

"""Quantizers, registered by name in :data:`QUANTIZERS`; importing this package registers the built-ins."""

from .base import QUANTIZERS as QUANTIZERS
from .base import BaseQuantizer as BaseQuantizer
from .codebook import CodebookQuantizer as CodebookQuantizer
from .ema_vector_quantizer import EMAVectorQuantizer as EMAVectorQuantizer
from .vector_quantizer import VectorQuantizer as VectorQuantizer

__all__ = ["QUANTIZERS", "BaseQuantizer", "CodebookQuantizer", "EMAVectorQuantizer", "VectorQuantizer"]

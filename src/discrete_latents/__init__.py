"""discrete_latents: VQ-VAEs and priors over their codes, composable and on the Hugging Face Hub."""

__version__ = "0.2.0"

from ._configs import CausalPriorConfig as CausalPriorConfig
from ._configs import Config as Config
from ._configs import MaskedPriorConfig as MaskedPriorConfig
from ._configs import PixelCNNPriorConfig as PixelCNNPriorConfig
from ._configs import PriorConfig as PriorConfig
from ._configs import VQVAEConfig as VQVAEConfig
from ._decoder import Decoder as Decoder
from ._encoder import Encoder as Encoder
from ._outputs import PriorOutput as PriorOutput
from ._outputs import QuantizerOutput as QuantizerOutput
from ._outputs import VQVAEOutput as VQVAEOutput
from ._pipeline import VQVAEPipeline as VQVAEPipeline
from ._pretrained import available_pretrained as available_pretrained
from ._pretrained import pretrained_path as pretrained_path
from ._registry import DECODERS as DECODERS
from ._registry import ENCODERS as ENCODERS
from ._registry import Registry as Registry
from ._vqvae import VQVAE as VQVAE
from .priors import PRIORS as PRIORS
from .priors import BasePrior as BasePrior
from .priors import CausalPrior as CausalPrior
from .priors import MaskedPrior as MaskedPrior
from .priors import PixelCNNPrior as PixelCNNPrior
from .priors import build_prior as build_prior
from .quantizers import QUANTIZERS as QUANTIZERS
from .quantizers import BaseQuantizer as BaseQuantizer
from .quantizers import CodebookQuantizer as CodebookQuantizer
from .quantizers import CosineVectorQuantizer as CosineVectorQuantizer
from .quantizers import EMAVectorQuantizer as EMAVectorQuantizer
from .quantizers import FiniteScalarQuantizer as FiniteScalarQuantizer
from .quantizers import ResidualVectorQuantizer as ResidualVectorQuantizer
from .quantizers import VectorQuantizer as VectorQuantizer

__all__ = [
    "__version__",
    "available_pretrained",
    "build_prior",
    "DECODERS",
    "ENCODERS",
    "PRIORS",
    "QUANTIZERS",
    "BasePrior",
    "BaseQuantizer",
    "CausalPrior",
    "CausalPriorConfig",
    "CodebookQuantizer",
    "CosineVectorQuantizer",
    "Config",
    "Decoder",
    "EMAVectorQuantizer",
    "Encoder",
    "FiniteScalarQuantizer",
    "MaskedPrior",
    "MaskedPriorConfig",
    "PixelCNNPrior",
    "PixelCNNPriorConfig",
    "PriorConfig",
    "PriorOutput",
    "QuantizerOutput",
    "Registry",
    "ResidualVectorQuantizer",
    "VQVAE",
    "VQVAEConfig",
    "VQVAEOutput",
    "VQVAEPipeline",
    "pretrained_path",
    "VectorQuantizer",
]

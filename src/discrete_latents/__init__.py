"""discrete_latents: VQ-VAEs and priors over their codes, composable and on the Hugging Face Hub."""

__version__ = "0.1.0"

from .configs import CausalPriorConfig as CausalPriorConfig
from .configs import Config as Config
from .configs import MaskedPriorConfig as MaskedPriorConfig
from .configs import PixelCNNPriorConfig as PixelCNNPriorConfig
from .configs import VQVAEConfig as VQVAEConfig
from .decoder import Decoder as Decoder
from .encoder import Encoder as Encoder
from .outputs import PriorOutput as PriorOutput
from .outputs import QuantizerOutput as QuantizerOutput
from .outputs import VQVAEOutput as VQVAEOutput
from .pipeline import VQVAEPipeline as VQVAEPipeline
from .pretrained import pretrained_path as pretrained_path
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
from .registry import DECODERS as DECODERS
from .registry import ENCODERS as ENCODERS
from .registry import Registry as Registry
from .vqvae import VQVAE as VQVAE

__all__ = [
    "__version__",
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

"""Training: the two-stage `Trainer`, its `TrainConfig`, checkpoints and evaluation."""

from .checkpoint import CheckpointManager as CheckpointManager
from .config import TrainConfig as TrainConfig
from .evaluate import evaluate_prior as evaluate_prior
from .evaluate import evaluate_vqvae as evaluate_vqvae
from .loop import Trainer as Trainer

__all__ = ["CheckpointManager", "TrainConfig", "Trainer", "evaluate_prior", "evaluate_vqvae"]

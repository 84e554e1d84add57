"""TrainConfig: every setting of a training run, in one frozen, strictly checked dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._configs import Config

STAGES = ("vqvae", "prior", "both")
DATASETS = ("mnist", "cifar10", "folder")
CROPS = ("center", "random")
BAD_FILES = ("fail", "skip")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Settings of a two-stage run: stage 1 fits the VQ-VAE, stage 2 the prior on its codes.

    Defaults reproduce the seed's MNIST run (20 + 20 epochs). Any field can be overridden from
    the command line (``--prior_epochs=5``) or a JSON/TOML file.
    """

    # Added after the first release; run folders and checkpoints written before read them as the defaults.
    _added_fields: ClassVar[tuple[str, ...]] = ("num_workers", "crop", "hflip", "bad_files", "grad_accum_steps",
                                                "ema_decay", "vqvae_from")

    # I/O
    out_dir: str = "runs/mnist"  # checkpoints, metrics.jsonl, image grids and the final pipeline
    resume: bool = False  # continue from the newest complete checkpoint in out_dir
    checkpoint_every: int = 500  # optimizer steps between checkpoints (and at every epoch end)
    keep_last: int = 2  # complete checkpoints kept; older ones are deleted after a newer commits
    log_every: int = 50  # steps between metrics.jsonl lines
    progress: bool = True  # tqdm progress bars with the live loss
    # data
    dataset: str = "mnist"  # "mnist", "cifar10" or "folder" (your own PNG/JPEG images)
    data_dir: str = ""  # folder holding the dataset files; "" = $DISCRETE_LATENTS_DATA_DIR or the cache
    download: bool = False  # fetch missing dataset files from the official mirrors
    limit_train: int = 0  # use only the first N training images (0 = all); for quick runs
    limit_test: int = 0  # evaluate on the first N test images (0 = all)
    num_workers: int = 2  # folder: DataLoader processes decoding images (0 = in the training process)
    crop: str = "center"  # folder: "center" or "random" crop after scaling to cover the model's (H, W)
    hflip: bool = False  # folder: mirror half of the training images left to right, anew each epoch
    bad_files: str = "fail"  # folder: "fail" stops before training listing every bad file; "skip" trains on the rest
    # model
    preset: str = "mnist"  # VQ-VAE preset (see discrete_latents._presets)
    prior_preset: str = "mnist"  # prior preset; "mnist_pixelcnn" swaps in the PixelCNN
    vqvae_overrides: dict[str, Any] = field(default_factory=dict)  # VQVAEConfig fields to change
    prior_overrides: dict[str, Any] = field(default_factory=dict)  # prior config fields to change
    # optim
    stage: str = "both"  # "vqvae", "prior" or "both"
    # stage "prior" in a new out_dir: a pipeline or VQ-VAE folder, or a bundled pipeline's name
    # ("mnist"), whose VQ-VAE the prior trains on (copied to out_dir/vqvae/); "" = the run's own
    vqvae_from: str = ""
    vqvae_epochs: int = 20  # the seed trains 20 epochs per stage
    prior_epochs: int = 20
    batch_size: int = 32  # stage 1 batch; small batches give 4x the updates of 128 at about the same CPU cost
    prior_batch_size: int = 256  # stage 2 batch
    vqvae_lr: float = 4e-3  # Adam peak learning rate, stage 1 (MNIST, 5 epochs: 26.5 dB at 1e-3, 27.2 at 4e-3)
    prior_lr: float = 2e-3  # AdamW peak learning rate, stage 2
    weight_decay: float = 0.01  # AdamW decay of the prior's matrices (not biases, norms)
    warmup_steps: int = 200  # optimizer steps of linear warm-up, then cosine decay to min_lr_ratio * peak
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    grad_accum_steps: int = 1  # batches whose gradients are summed per optimizer step (effective batch x N)
    ema_decay: float = 0.0  # exponential moving average of the weights, used to evaluate and save (0 = off)
    seed: int = 0
    device: str = "auto"  # "auto" (cuda, mps, cpu), or any torch device string
    amp: str = "auto"  # stage 1 autocast: "auto" (bf16 on GPU, off on CPU), "bf16" or "off"
    prior_amp: str = "auto"  # stage 2 autocast, same choices (on CPU, attention stays float32)
    num_threads: int = 0  # CPU threads for torch (0 = torch's default)
    max_nonfinite_steps: int = 20  # consecutive NaN/inf losses skipped before stopping

    def validate(self) -> None:
        self._require(self.stage in STAGES, "stage", f"one of {STAGES}")
        self._require(not self.vqvae_from or self.stage == "prior", "vqvae_from",
                      "empty unless stage is 'prior' (it replaces stage 1)")
        self._require(self.dataset in DATASETS, "dataset", f"one of {DATASETS}")
        for name in ("amp", "prior_amp"):
            self._require(getattr(self, name) in ("auto", "bf16", "off"), name, "'auto', 'bf16' or 'off'")
        self._require(self.crop in CROPS, "crop", f"one of {CROPS}")
        self._require(self.bad_files in BAD_FILES, "bad_files", f"one of {BAD_FILES}")
        self._require(0 <= self.ema_decay < 1, "ema_decay", "a decay in [0, 1) (0 = off)")
        for name in ("checkpoint_every", "keep_last", "log_every", "batch_size", "prior_batch_size",
                     "max_nonfinite_steps", "grad_accum_steps"):
            self._require(getattr(self, name) >= 1, name, ">= 1")
        for name in ("vqvae_epochs", "prior_epochs", "limit_train", "limit_test", "warmup_steps", "seed",
                     "num_threads", "num_workers"):
            self._require(getattr(self, name) >= 0, name, ">= 0")
        for name in ("vqvae_lr", "prior_lr"):
            self._require(getattr(self, name) > 0, name, "> 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "a ratio in [0, 1]")
        self._require(self.grad_clip >= 0, "grad_clip", ">= 0")
        # Each epoch's shuffle is seeded with seed * 1009 + epoch, which must stay a 64-bit seed.
        self._require(self.seed < 2**32, "seed", "an integer in [0, 2**32)")
        # The model configs are checked now, not when their stage starts: a typo in prior_overrides
        # would otherwise surface only after stage 1 has trained.
        from .._presets import prior_preset, vqvae_preset

        for field_name, preset in (("vqvae_overrides", vqvae_preset(self.preset)),
                                   ("prior_overrides", prior_preset(self.prior_preset))):
            overrides = getattr(self, field_name)
            if overrides:
                type(preset).from_dict({**preset.to_dict(), **overrides}, source=f"{type(self).__name__}.{field_name}")

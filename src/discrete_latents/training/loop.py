"""The two-stage trainer: stage 1 fits the VQ-VAE, stage 2 fits a prior on its codes.

Both stages share one loop (:meth:`Trainer._run_stage`): a fixed, seeded shuffle per epoch, a
warm-up + cosine learning rate computed from the step (so resuming needs no scheduler object),
gradient clipping, skipping of non-finite steps, periodic crash-safe checkpoints, a JSON-lines
metrics log and image grids at every epoch end. A run killed at any point and resumed ends with
the same weights as one never interrupted (on the same device and thread count).
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..configs import Config, PriorConfig
from ..errors import ConfigError, NonFiniteError
from ..files import atomic_write_bytes
from ..pipeline import VQVAEPipeline
from ..presets import prior_preset, vqvae_preset
from ..priors import BasePrior, build_prior
from ..serialization import read_safetensors, write_safetensors
from ..vqvae import VQVAE
from .checkpoint import (
    CheckpointManager,
    RunLock,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_from_tensors,
    rng_to_tensors,
)
from .config import TrainConfig
from .data import load_split
from .evaluate import evaluate_prior, evaluate_vqvae

# Settings that may differ between a run and its resumption without changing the result.
RESUMABLE_CHANGES = {"resume", "progress", "log_every", "checkpoint_every", "keep_last", "device", "data_dir",
                     "download", "num_threads"}


def pick_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def learning_rate(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ``min_ratio * peak`` at ``total`` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """Runs the stages named in a :class:`TrainConfig` and writes everything under ``out_dir``.

    Layout of ``out_dir``: ``checkpoints/``, ``metrics.jsonl``, ``images/`` (grids per epoch),
    ``vqvae/`` and ``prior/`` (final models, loadable with ``from_pretrained``),
    ``codes.safetensors`` (the training set's codes, extracted once for stage 2), ``metrics.json``.

    Example:
        >>> from discrete_latents.training import Trainer, TrainConfig
        >>> Trainer(TrainConfig(out_dir="runs/quick", vqvae_epochs=1, prior_epochs=1)).fit()  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, log: Callable[[str], None] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = Path(config.out_dir)
        self.device = pick_device(config.device)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", config.keep_last)
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._stop_requested = False
        self._resume_state: dict[str, Any] | None = None
        self._resume_files: dict[str, dict[str, Tensor]] = {}

    # public ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train the configured stages, evaluate on the test set, and return the final metrics."""
        cfg = self.config
        started = time.perf_counter()
        started_group = self._setup_distributed()
        self.out.mkdir(parents=True, exist_ok=True)
        if not os.access(self.out, os.W_OK):
            raise PermissionError(f"out_dir {self.out} is not writable")
        lock = RunLock(self.out) if self.is_main else nullcontext()
        previous_handler = signal.getsignal(signal.SIGTERM)
        # Denormal floats (tiny gradients) make CPU matmuls up to 30x slower; flush them to zero.
        flush_denormal = self.device.type == "cpu" and torch.set_flush_denormal(True)
        previous_threads = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:
            with lock:
                signal.signal(signal.SIGTERM, self._request_stop)
                torch.manual_seed(cfg.seed)
                self._load_resume_point()
                train_images, train_labels = load_split(cfg, "train")
                test_images, test_labels = load_split(cfg, "test")
                metrics: dict[str, float] = {}
                if cfg.stage in ("vqvae", "both"):
                    vqvae = self.train_vqvae(train_images, test_images)
                else:
                    vqvae = VQVAE.from_pretrained(self.out / "vqvae", map_location=str(self.device))
                if self._stop_requested:
                    return {}
                metrics.update(evaluate_vqvae(vqvae, test_images.to(self.device)))
                prior = None
                if cfg.stage in ("prior", "both"):
                    prior = self.train_prior(vqvae, train_images, train_labels, test_images)
                    if self._stop_requested:
                        return {}
                    test_codes = self._encode(vqvae, test_images)
                    metrics.update(evaluate_prior(prior, test_codes, test_labels))
                if self.is_main:
                    (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
                    self.log(format_metrics(metrics))
                    if prior is not None:
                        self._save_pipeline(vqvae, prior, metrics, time.perf_counter() - started)
                return metrics
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
            if flush_denormal:
                torch.set_flush_denormal(False)
            torch.set_num_threads(previous_threads)
            if started_group:
                # DDP wrappers left in reference cycles would otherwise outlive the group and tear
                # gloo down during interpreter exit, which aborts the process (SIGABRT).
                gc.collect()
                torch.distributed.destroy_process_group()

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, logs and models."""
        return distributed.rank() == 0

    def _setup_distributed(self) -> bool:
        """Join the process group that ``torchrun`` describes in the environment; True if started here."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
            return False
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.distributed.init_process_group(backend=backend)
        return True

    @property
    def _fused(self) -> bool | None:
        """Fused Adam where torch has the kernel: one pass over all weights, a third of the update's time on CPU."""
        return True if self.device.type in ("cpu", "cuda") else None

    @property
    def _conv_memory_format(self) -> torch.memory_format:
        """Channels-last convolutions, the layout oneDNN and cuDNN compute in (CPU, bf16: stage-1 steps 9 % faster)."""
        return torch.channels_last if self.device.type in ("cpu", "cuda") else torch.preserve_format

    def _autocast(self, setting: str) -> Callable[[], Any]:
        """A context factory: bf16 autocast when ``setting`` asks for it (``auto``: on GPU only)."""
        if setting == "bf16" or (setting == "auto" and self.device.type == "cuda"):
            return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext

    def train_vqvae(self, images: Tensor, test_images: Tensor) -> VQVAE:
        """Stage 1: reconstruction MSE + the quantizer's loss (paper Eq. 3)."""
        cfg = self.config
        config = vqvae_preset(cfg.preset).replace(**cfg.vqvae_overrides)
        if images.shape[1:] != (config.in_channels, config.image_size, config.image_size):
            raise ConfigError(f"preset {cfg.preset!r} expects images of shape ({config.in_channels},"
                              f" {config.image_size}, {config.image_size}), the dataset has {tuple(images.shape[1:])}")
        if self._resume_stage_done("vqvae"):
            return VQVAE.from_pretrained(self.out / "vqvae", map_location=str(self.device))
        # Module.to accepts memory_format, but torch's type stubs do not list it.
        model = VQVAE(config).to(self.device, memory_format=self._conv_memory_format)  # type: ignore[call-overload]
        autocast = self._autocast(cfg.amp)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.vqvae_lr, fused=self._fused)
        data = images.to(self.device)
        probe = test_images[:32].to(self.device)

        def step(module: nn.Module, index: Tensor) -> tuple[Tensor, dict[str, float]]:
            x = data[index].float() / 255
            with autocast():
                out = module(x)
            recon = F.mse_loss(out.reconstruction.float(), x)
            stats = {"recon": recon.detach(), "vq": out.loss.detach(), "perplexity": out.quantizer.perplexity}
            return recon + out.loss, stats

        def epoch_end(epoch: int) -> None:
            model.eval()
            self._save_grid(torch.cat([probe.float() / 255, model.reconstruct(probe.float() / 255)]),
                            f"reconstructions_epoch{epoch + 1:03d}.png", nrow=8)
            model.train()

        self._run_stage("vqvae", model, optimizer, step, len(data), cfg.batch_size, cfg.vqvae_epochs,
                        cfg.vqvae_lr, epoch_end)
        if self.is_main and not self._stop_requested:
            model.save_pretrained(self.out / "vqvae")
        return model.eval()

    def train_prior(self, vqvae: VQVAE, images: Tensor, labels: Tensor, test_images: Tensor) -> BasePrior:
        """Stage 2: extract the training set's codes once, then fit the prior by next-code cross-entropy."""
        cfg = self.config
        base: Config = prior_preset(cfg.prior_preset)
        config = base.replace(**cfg.prior_overrides)
        if isinstance(config, PriorConfig) and config.num_classes and not config.class_frequencies:
            # Sampling without labels draws classes as often as the training set holds them.
            counts = torch.bincount(labels.long(), minlength=config.num_classes).double()
            config = config.replace(class_frequencies=tuple(round(float(c), 6) for c in counts / counts.sum()))
        prior = build_prior(config).to(self.device)
        if vqvae.quantizer.index_shape != ():
            raise ConfigError(f"quantizer {vqvae.config.quantizer!r} gives {vqvae.quantizer.index_shape} codes per"
                              " grid cell; a prior models one code per cell (use vq, vq_ema, vq_cosine or fsq)")
        if prior.codebook_size != vqvae.codebook_size or prior.grid_size != vqvae.grid_size:
            raise ConfigError(f"prior preset {cfg.prior_preset!r} models {prior.grid_size} grids of"
                              f" {prior.codebook_size} codes; the VQ-VAE makes {vqvae.grid_size} grids of"
                              f" {vqvae.codebook_size}")
        codes = self._training_codes(vqvae, images).to(self.device)
        class_labels = labels.to(self.device) if prior.num_classes else None
        optimizer = torch.optim.AdamW(prior.param_groups(cfg.weight_decay), lr=cfg.prior_lr, betas=(0.9, 0.95),
                                      fused=self._fused)
        autocast = self._autocast(cfg.prior_amp)

        def step(module: nn.Module, index: Tensor) -> tuple[Tensor, dict[str, float]]:
            with autocast():  # the loss alone: no (B, h, w, K) logits (BasePrior.loss)
                loss = module(codes[index], None if class_labels is None else class_labels[index], return_logits=False)
            return loss.float(), {"nll": loss.detach()}

        def epoch_end(epoch: int) -> None:
            generator = torch.Generator(self.device).manual_seed(cfg.seed)
            grid_labels = torch.arange(64, device=self.device) % prior.num_classes if prior.num_classes else None
            state = torch.get_rng_state()  # sampling must not shift the training RNG stream
            sampled = prior.sample(64, labels=grid_labels, generator=generator)
            torch.set_rng_state(state)
            self._save_grid(vqvae.decode_indices(sampled), f"samples_epoch{epoch + 1:03d}.png", nrow=8)

        self._run_stage("prior", prior, optimizer, step, len(codes), cfg.prior_batch_size, cfg.prior_epochs,
                        cfg.prior_lr, epoch_end)
        if self.is_main and not self._stop_requested:
            prior.save_pretrained(self.out / "prior")
        return prior.eval()

    def _save_pipeline(self, vqvae: VQVAE, prior: BasePrior, metrics: dict[str, float], seconds: float) -> None:
        """Write ``out_dir/pipeline``: both models, a sample grid and a model card with the run's facts."""
        cfg = self.config
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else \
            f"{self.device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        metadata = {
            "preset": cfg.preset,
            "dataset": cfg.dataset,
            "training": {"vqvae_epochs": cfg.vqvae_epochs, "prior_epochs": cfg.prior_epochs,
                         "batch_size": cfg.batch_size, "prior_batch_size": cfg.prior_batch_size,
                         "vqvae_lr": cfg.vqvae_lr, "prior_lr": cfg.prior_lr, "amp": cfg.amp,
                         "prior_amp": cfg.prior_amp, "seed": cfg.seed, "device": device,
                         "wall_time_minutes": round(seconds / 60, 1), "torch": torch.__version__},
            "metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
        }
        VQVAEPipeline(vqvae=vqvae, prior=prior, metadata=metadata).save_pretrained(self.out / "pipeline",
                                                                                   sample_grid=True, seed=cfg.seed)

    # the shared loop ---------------------------------------------------------------------------
    def _run_stage(self, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                   step_fn: Callable[[nn.Module, Tensor], tuple[Tensor, dict[str, Any]]], size: int,
                   batch_size: int, epochs: int, peak_lr: float, epoch_end: Callable[[int], None]) -> None:
        cfg = self.config
        steps_per_epoch = max(1, size // batch_size)  # the ragged last batch is dropped
        total = steps_per_epoch * epochs
        start_epoch, start_batch, step, nonfinite = 0, 0, 0, 0
        resume = self._resume_state
        if resume is not None and resume["stage"] == stage:
            model.load_state_dict(self._resume_files["model"])
            optimizer_from_tensors(optimizer, self._resume_files["optimizer"], resume["optimizer"])
            rng_from_tensors(self._resume_files["rng"])
            start_epoch, start_batch, step = resume["epoch"], resume["batch"], resume["step"]
            nonfinite = resume["nonfinite"]
            self._truncate_log(stage, step)
            self.log(f"resumed {stage} at epoch {start_epoch + 1}, batch {start_batch} (step {step})")
        wrapped = self._wrap(model)
        model.train()
        for epoch in range(start_epoch, epochs):
            order = torch.randperm(size, generator=torch.Generator().manual_seed(cfg.seed * 1009 + epoch))
            order = order.to(self.device)
            bar = self._progress(steps_per_epoch, f"{stage} {epoch + 1}/{epochs}", start_batch)
            for batch in range(start_batch, steps_per_epoch):
                index = order[batch * batch_size:(batch + 1) * batch_size]
                index = index[distributed.rank()::distributed.world_size()]  # each rank its share
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total, peak_lr, cfg.warmup_steps, cfg.min_lr_ratio)
                loss, stats = step_fn(wrapped, index)
                optimizer.zero_grad(set_to_none=True)
                if not torch.isfinite(loss):
                    nonfinite += 1  # skip the step: a NaN update would poison every weight
                    if nonfinite >= cfg.max_nonfinite_steps:
                        raise NonFiniteError(f"{stage}: the loss was NaN or infinite {nonfinite} steps in a row"
                                             f" (last at step {step}, epoch {epoch + 1}); stopping without"
                                             " saving non-finite weights. Try a lower learning rate.")
                else:
                    nonfinite = 0
                    loss.backward()
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
                if step % cfg.log_every == 0:
                    self._log_metrics({"stage": stage, "epoch": epoch + 1, "step": step, "loss": float(loss.detach()),
                                       "lr": optimizer.param_groups[0]["lr"], **_floats(stats), **_usage(model)})
                next_batch = batch + 1
                at_epoch_end = next_batch == steps_per_epoch
                if at_epoch_end or step % cfg.checkpoint_every == 0 or self._stop_requested:
                    position = (epoch + 1, 0) if at_epoch_end else (epoch, next_batch)
                    self._checkpoint(stage, model, optimizer, step, position, nonfinite)
                if self._stop_requested:
                    self.log(f"stopped on request at {stage} step {step}; resume with --resume")
                    return
            if bar is not None:
                bar.close()
            start_batch = 0
            if self.is_main:
                epoch_end(epoch)

    # helpers ----------------------------------------------------------------------------------
    def _wrap(self, model: nn.Module) -> nn.Module:
        if not distributed.is_distributed():
            return model
        from torch.nn.parallel import DistributedDataParallel

        # Quantizer statistics are all-reduced inside the quantizer; DDP need not broadcast buffers.
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            return DistributedDataParallel(model, forward_sync_buffers=False)
        return DistributedDataParallel(model, broadcast_buffers=False)

    def _checkpoint(self, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    position: tuple[int, int], nonfinite: int) -> None:
        if not self.is_main:
            return
        weights = model.state_dict()
        bad = [name for name, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(f"{stage} step {step}: non-finite weights in {bad[:5]}; not saving a checkpoint")
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        state = {"stage": stage, "epoch": position[0], "batch": position[1], "step": step, "nonfinite": nonfinite,
                 "optimizer": opt_meta, "config": self.config.to_dict(), "torch_version": torch.__version__}
        offset = 0 if stage == "vqvae" else 10**7  # prior checkpoints sort after the VQ-VAE's
        self.checkpoints.save(offset + step, {"model": weights, "optimizer": opt_tensors, "rng": rng_to_tensors()},
                              state)

    def _load_resume_point(self) -> None:
        if not self.config.resume:
            return
        folder = self.checkpoints.latest()
        if folder is None:
            self.log(f"no complete checkpoint in {self.checkpoints.root}; starting from scratch")
            return
        files, state = self.checkpoints.load(folder)
        saved = TrainConfig.from_dict(state["config"], source=str(folder))
        changed = sorted(k for k, v in saved.to_dict().items() if self.config.to_dict()[k] != v
                         and k not in RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(f"cannot resume from {folder}: the run's settings changed ({changed}); use another"
                              " out_dir or restore the settings")
        self._resume_state, self._resume_files = state, files

    def _resume_stage_done(self, stage: str) -> bool:
        state = self._resume_state
        done = state is not None and (state["stage"] != stage or state["epoch"] >= self._epochs(stage))
        return done and (self.out / stage / "model.safetensors").is_file()

    def _epochs(self, stage: str) -> int:
        return self.config.vqvae_epochs if stage == "vqvae" else self.config.prior_epochs

    def _training_codes(self, vqvae: VQVAE, images: Tensor) -> Tensor:
        """The training set's codes, computed once and cached in ``codes.safetensors``."""
        path = self.out / "codes.safetensors"
        if path.is_file():
            codes = read_safetensors(path)["codes"]
            if len(codes) == len(images):
                return codes.long()
        codes = self._encode(vqvae, images)
        if self.is_main:
            write_safetensors(path, {"codes": codes.to(torch.int32)})
        return codes

    def _encode(self, vqvae: VQVAE, images: Tensor, batch_size: int = 1000) -> Tensor:
        vqvae.eval()
        parts = [vqvae.encode(images[i:i + batch_size].to(self.device).float() / 255)
                 for i in range(0, len(images), batch_size)]
        return torch.cat(parts).cpu()

    def _progress(self, total: int, desc: str, initial: int) -> Any:
        if not (self.config.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=2.0, file=sys.stderr)

    def _log_metrics(self, record: dict[str, Any]) -> None:
        if self.is_main:
            record["time"] = round(time.time(), 3)
            with open(self.out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record, allow_nan=True) + "\n")

    def _truncate_log(self, stage: str, step: int) -> None:
        """Drop log lines written after the checkpoint being resumed, so each step appears once."""
        path = self.out / "metrics.jsonl"
        if not (self.is_main and path.is_file()):
            return
        kept = [line for line in path.read_text().splitlines()
                if not (f'"stage": "{stage}"' in line and json.loads(line)["step"] > step)]
        atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())

    def _save_grid(self, images: Tensor, name: str, nrow: int) -> None:
        from ..images import save_grid

        (self.out / "images").mkdir(exist_ok=True)
        save_grid(images.float().cpu().clamp(0, 1), self.out / "images" / name, nrow=nrow)

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requested = True  # finish the step, checkpoint, return normally


def _floats(stats: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in stats.items()}


def _usage(model: nn.Module) -> dict[str, float]:
    quantizer = getattr(model, "quantizer", None)
    if quantizer is not None and hasattr(quantizer, "usage_stats"):
        return {f"window_{k}": float(v) for k, v in quantizer.usage_stats().items()}
    return {}


def format_metrics(metrics: dict[str, float]) -> str:
    """A two-column plain-text table of the final metrics."""
    width = max(len(k) for k in metrics) if metrics else 0
    rows = [f"{k.ljust(width)}  {v:.4f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}"
            for k, v in sorted(metrics.items())]
    rule = "-" * (width + 12)
    return "\n".join([rule, *rows, rule])

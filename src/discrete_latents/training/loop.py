"""The two-stage trainer: stage 1 fits the VQ-VAE, stage 2 fits a prior on its codes.

Both stages share one loop (`Trainer._run_stage`): a fixed, seeded shuffle per epoch, a
warm-up + cosine learning rate computed from the optimizer step (so resuming needs no scheduler
object), gradient accumulation, gradient clipping, an optional EMA of the weights, skipping of
non-finite steps, periodic crash-safe checkpoints (one series per
stage), a JSON-lines metrics log and image grids at every epoch end. A run killed at any point and
resumed ends with the same weights as one never interrupted (on the same device and thread count).

An output folder belongs to one run (``run.json``): a new run refuses a folder that is not empty,
``--resume`` continues the run it holds, and ``--stage=prior`` trains a new prior on the finished
VQ-VAE it holds. The stage-2 code cache records the VQ-VAE weights it was made with.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _distributed as distributed
from .._configs import PriorConfig
from .._files import read_json, write_json
from .._pipeline import PIPELINE_NAME, VQVAEPipeline, check_compatible
from .._presets import prior_preset, vqvae_preset
from .._pretrained import available_pretrained, pretrained_path
from .._safetensors import fingerprint, read_metadata, read_safetensors, write_safetensors
from .._vqvae import VQVAE
from ..errors import CheckpointFormatError, ConfigError, NonFiniteError
from ..priors import BasePrior, build_prior
from .checkpoint import (
    CheckpointManager,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_from_tensors,
    rng_to_tensors,
)
from .config import TrainConfig
from .data import ImageSource, InMemory, epoch_plan, load_split, steps_per_epoch
from .ema import WeightEMA
from .evaluate import evaluate_prior, evaluate_vqvae
from .metrics_log import MetricsLog
from .process import StopFlag, cpu_name, pick_device, training_process

RUN_NAME = "run.json"
CODES_NAME = "codes.safetensors"
ENCODE_BATCH = 1000
# Settings that may differ between a run and its resumption without changing the result.
RESUMABLE_CHANGES = {"resume", "progress", "log_every", "checkpoint_every", "keep_last", "device", "data_dir",
                     "download", "num_threads", "num_workers"}


def learning_rate(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to ``peak`` then cosine decay to ``min_ratio * peak`` at ``total`` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _vqvae_of(source: str) -> VQVAE:
    """The VQ-VAE of a bundled pipeline's name, a pipeline folder, or a VQ-VAE folder or Hub repo."""
    if source in available_pretrained():
        source = str(pretrained_path(source))
    if (Path(source) / PIPELINE_NAME).is_file():
        return VQVAEPipeline.from_pretrained(source).vqvae
    return VQVAE.from_pretrained(source)


class Trainer:
    """Runs the stages named in a `TrainConfig` and writes everything under ``out_dir``.

    Layout of ``out_dir``: ``run.json`` (the run's settings), ``checkpoints/vqvae/`` and
    ``checkpoints/prior/``, ``metrics.jsonl``, ``images/`` (grids per epoch), ``vqvae/`` and
    ``prior/`` (final models, loadable with ``from_pretrained``), ``codes.safetensors`` (the
    training set's codes, extracted once for stage 2), ``metrics.json`` and ``pipeline/``.

    Examples:
        >>> from discrete_latents.training import Trainer, TrainConfig
        >>> Trainer(TrainConfig(out_dir="runs/quick", vqvae_epochs=1, prior_epochs=1)).fit()  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, log: Callable[[str], None] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = Path(config.out_dir)
        self.device = pick_device(config.device)
        self.checkpoints = {stage: CheckpointManager(self.out / "checkpoints" / stage, config.keep_last)
                            for stage in ("vqvae", "prior")}
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._stop = StopFlag()
        self.metrics_log = MetricsLog(self.out / "metrics.jsonl", note=self.log)
        self._resume_state: dict[str, Any] | None = None
        self._resume_files: dict[str, dict[str, Tensor]] = {}

    # public ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train the configured stages, evaluate on the test set, and return the final metrics."""
        cfg = self.config
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        if not os.access(self.out, os.W_OK):
            raise PermissionError(f"out_dir {self.out} is not writable")
        with training_process(self.out, self.device, cfg.num_threads, self._stop):
            self._claim_folder()
            torch.manual_seed(cfg.seed)
            self._load_resume_point()
            train, test = load_split(cfg, "train", self.device), load_split(cfg, "test", self.device)
            if cfg.stage == "prior":
                vqvae = VQVAE.from_pretrained(self.out / "vqvae", map_location=self.device)
            else:
                vqvae = self.train_vqvae(train, test)
            if self._stop.requested:
                return {}
            metrics = evaluate_vqvae(vqvae, (images for images, _ in test.in_order(ENCODE_BATCH)))
            prior = None
            if cfg.stage in ("prior", "both"):
                prior = self.train_prior(vqvae, train)
                if self._stop.requested:
                    return {}
                metrics.update(evaluate_prior(prior, encode_all(vqvae, test), test.labels))
            if self.is_main:
                (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
                self.log(format_metrics(metrics))
                if prior is not None:
                    self._save_pipeline(vqvae, prior, metrics, time.perf_counter() - started)
            return metrics

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, logs and models."""
        return distributed.rank() == 0

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

    def train_vqvae(self, images: ImageSource, test_images: ImageSource) -> VQVAE:
        """Stage 1: reconstruction MSE + the quantizer's loss (paper Eq. 3)."""
        cfg = self.config
        config = vqvae_preset(cfg.preset).replace(**cfg.vqvae_overrides)
        expected = (config.in_channels, *config.image_shape)
        if images.item_shape != expected:
            raise ConfigError(f"preset {cfg.preset!r} expects images of shape {expected} (C, H, W), the dataset"
                              f" has {images.item_shape}")
        if self._stage_done("vqvae"):
            return VQVAE.from_pretrained(self.out / "vqvae", map_location=self.device)
        # Module.to accepts memory_format, but torch's type stubs do not list it.
        model = VQVAE(config).to(self.device, memory_format=self._conv_memory_format)  # type: ignore[call-overload]
        autocast = self._autocast(cfg.amp)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.vqvae_lr, fused=self._fused)
        probe = next(test_images.in_order(32, limit=32))[0].to(self.device).float() / 255

        def step(module: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
            x = batch[0].to(self.device, non_blocking=True).float() / 255
            with autocast():
                out = module(x)
            recon = F.mse_loss(out.reconstruction.float(), x)
            stats = {"recon": recon.detach(), "vq": out.loss.detach(), "perplexity": out.quantizer.perplexity}
            return recon + out.loss, stats

        def epoch_end(epoch: int) -> None:
            self._save_grid(torch.cat([probe, model.reconstruct(probe)]), f"reconstructions_epoch{epoch + 1:03d}.png")

        self._run_stage("vqvae", model, optimizer, step, images, cfg.batch_size, cfg.vqvae_epochs,
                        cfg.vqvae_lr, epoch_end)
        if self.is_main and not self._stop.requested:
            model.save_pretrained(self.out / "vqvae")
        return model.eval()

    def train_prior(self, vqvae: VQVAE, images: ImageSource) -> BasePrior:
        """Stage 2: extract the training set's codes once, then fit the prior by next-code cross-entropy."""
        cfg = self.config
        config = prior_preset(cfg.prior_preset).replace(**cfg.prior_overrides)
        if isinstance(config, PriorConfig) and config.num_classes and not config.class_frequencies:
            # Sampling without labels draws classes as often as the training set holds them.
            counts = torch.bincount(images.labels.long(), minlength=config.num_classes).double()
            config = config.replace(class_frequencies=tuple(round(float(c), 6) for c in counts / counts.sum()))
        prior = build_prior(config).to(self.device)
        check_compatible(vqvae, prior)
        codes = InMemory(self._training_codes(vqvae, images).to(self.device), images.labels.to(self.device))
        optimizer = torch.optim.AdamW(prior.param_groups(cfg.weight_decay), lr=cfg.prior_lr, betas=(0.9, 0.95),
                                      fused=self._fused)
        autocast = self._autocast(cfg.prior_amp)
        # A masked prior's loss scores hidden codes only: not an NLL comparable with a causal prior's.
        loss_name = "nll" if prior.exact_likelihood else "masked_cross_entropy"

        def step(module: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
            with autocast():  # the loss alone: no (B, h, w, K) logits (BasePrior.loss)
                loss = module(batch[0], batch[1] if prior.num_classes else None, return_logits=False)
            return loss.float(), {loss_name: loss.detach()}

        def epoch_end(epoch: int) -> None:
            generator = torch.Generator(self.device).manual_seed(cfg.seed)
            grid_labels = torch.arange(64, device=self.device) % prior.num_classes if prior.num_classes else None
            state = torch.get_rng_state()  # sampling must not shift the training RNG stream
            sampled = prior.sample(64, labels=grid_labels, generator=generator)
            torch.set_rng_state(state)
            self._save_grid(vqvae.decode(sampled), f"samples_epoch{epoch + 1:03d}.png")

        self._run_stage("prior", prior, optimizer, step, codes, cfg.prior_batch_size, cfg.prior_epochs,
                        cfg.prior_lr, epoch_end)
        if self.is_main and not self._stop.requested:
            prior.save_pretrained(self.out / "prior")
        return prior.eval()

    def _save_pipeline(self, vqvae: VQVAE, prior: BasePrior, metrics: dict[str, float], seconds: float) -> None:
        """Write ``out_dir/pipeline``: both models, a sample grid and a model card with the run's facts."""
        cfg = self.config
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else \
            f"{self.device.type} ({cpu_name()}, {torch.get_num_threads()} threads)"
        if distributed.world_size() > 1:
            device += f" x {distributed.world_size()} processes"
        metadata = {
            "preset": cfg.preset,
            "dataset": cfg.dataset,
            **({"vqvae_from": cfg.vqvae_from} if cfg.vqvae_from else {}),
            "training": {"vqvae_epochs": cfg.vqvae_epochs, "prior_epochs": cfg.prior_epochs,
                         "batch_size": cfg.batch_size, "prior_batch_size": cfg.prior_batch_size,
                         "vqvae_lr": cfg.vqvae_lr, "prior_lr": cfg.prior_lr, "amp": cfg.amp,
                         "prior_amp": cfg.prior_amp, "seed": cfg.seed, "device": device,
                         "grad_accum_steps": cfg.grad_accum_steps, "ema_decay": cfg.ema_decay,
                         "wall_time_minutes": round(seconds / 60, 1), "torch": torch.__version__},
            "metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
        }
        pipe = VQVAEPipeline(vqvae=vqvae, prior=prior, metadata=metadata)
        pipe.save_pretrained(self.out / "pipeline", images=pipe.card_images(seed=cfg.seed))

    # the shared loop ---------------------------------------------------------------------------
    def _run_stage(self, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                   step_fn: Callable[[nn.Module, Any], tuple[Tensor, dict[str, Any]]], data: ImageSource,
                   batch_size: int, epochs: int, peak_lr: float, epoch_end: Callable[[int], None]) -> None:
        cfg = self.config
        accum = cfg.grad_accum_steps
        per_epoch = steps_per_epoch(len(data), batch_size, accum)  # the ragged rest of an epoch is dropped
        total = per_epoch * epochs  # optimizer steps: warm-up and cosine count these, not batches
        start_epoch, start_batch, step, nonfinite = 0, 0, 0, 0
        ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None
        resume = self._resume_state
        if resume is not None and resume["stage"] == stage:
            model.load_state_dict(self._resume_files["model"])
            optimizer_from_tensors(optimizer, self._resume_files["optimizer"], resume["optimizer"])
            rng_from_tensors(self._resume_files["rng"])
            if ema is not None:
                ema.load_state_dict(self._resume_files["ema"])
            start_epoch, start_batch, step = resume["epoch"], resume["batch"], resume["step"]
            nonfinite = resume["nonfinite"]
            self._truncate_log(stage, step)
            self.log(f"resumed {stage} at epoch {start_epoch + 1}, batch {start_batch} (step {step})")
        wrapped = self._wrap(model)
        model.train()
        for epoch in range(start_epoch, epochs):
            plan = epoch_plan(len(data), batch_size, accum, cfg.seed, epoch, start_batch)
            batches = data.batches([index for micro in plan for index in micro], epoch)
            bar = self._progress(per_epoch, f"{stage} {epoch + 1}/{epochs}", start_batch)
            for batch, micro in zip(range(start_batch, per_epoch), plan):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total, peak_lr, cfg.warmup_steps, cfg.min_lr_ratio)
                optimizer.zero_grad(set_to_none=True)
                loss, stats, finite = self._accumulate(wrapped, step_fn, [next(batches) for _ in micro])
                if not finite:
                    nonfinite += 1  # skip the step: a NaN update would poison every weight
                    if nonfinite >= cfg.max_nonfinite_steps:
                        raise NonFiniteError(f"{stage}: the loss was NaN or infinite {nonfinite} steps in a row"
                                             f" (last at step {step}, epoch {epoch + 1}); stopping without"
                                             " saving non-finite weights. Try a lower learning rate.")
                    optimizer.zero_grad(set_to_none=True)
                else:
                    nonfinite = 0
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    if ema is not None:
                        ema.update(model)
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
                if step % cfg.log_every == 0:
                    self._log_metrics({"stage": stage, "epoch": epoch + 1, "step": step, "loss": float(loss),
                                       "lr": optimizer.param_groups[0]["lr"], **_floats(stats), **_usage(model)})
                next_batch = batch + 1
                at_epoch_end = next_batch == per_epoch
                if at_epoch_end or step % cfg.checkpoint_every == 0 or self._stop.requested:
                    position = (epoch + 1, 0) if at_epoch_end else (epoch, next_batch)
                    self._checkpoint(stage, model, optimizer, step, position, nonfinite, ema)
                if self._stop.requested:
                    self.log(f"stopped on request at {stage} step {step}; resume with --resume")
                    return
            if bar is not None:
                bar.close()
            start_batch = 0
            if self.is_main:
                with ema.applied(model) if ema is not None else nullcontext():
                    epoch_end(epoch)
        if ema is not None:
            ema.copy_to(model)  # what is evaluated and saved from here on

    @staticmethod
    def _accumulate(wrapped: nn.Module, step_fn: Callable[[nn.Module, Any], tuple[Tensor, dict[str, Any]]],
                    micro_batches: list[Any]) -> tuple[Tensor, dict[str, Any], bool]:
        """Sum the gradients of the micro-batches of one step: (mean loss, last stats, all finite).

        Each loss is divided by the count, so N micro-batches give the gradient of their mean, as
        one batch N times larger would. DDP synchronises gradients on the last one only.
        """
        count = len(micro_batches)
        total = torch.zeros(())
        stats: dict[str, Any] = {}
        for m, micro in enumerate(micro_batches):
            no_sync = getattr(wrapped, "no_sync", None)
            with no_sync() if no_sync is not None and m < count - 1 else nullcontext():
                loss, stats = step_fn(wrapped, micro)
                if not torch.isfinite(loss):
                    return loss.detach(), stats, False
                (loss / count if count > 1 else loss).backward()
            total = total.to(loss.device) + loss.detach().float() / count
        return total, stats, True

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
                    position: tuple[int, int], nonfinite: int, ema: WeightEMA | None = None) -> None:
        if not self.is_main:
            return
        weights = model.state_dict()
        bad = [name for name, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(f"{stage} step {step}: non-finite weights in {bad[:5]}; not saving a checkpoint")
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        state = {"stage": stage, "epoch": position[0], "batch": position[1], "step": step, "nonfinite": nonfinite,
                 "optimizer": opt_meta, "config": self.config.to_dict(), "torch_version": torch.__version__}
        files = {"model": weights, "optimizer": opt_tensors, "rng": rng_to_tensors()}
        if ema is not None:
            files["ema"] = ema.state_dict()
        self.checkpoints[stage].save(step, files, state)

    def _claim_folder(self) -> None:
        """Make ``out_dir`` this run's, or refuse it: runs never mix in one folder."""
        cfg, run_file = self.config, self.out / RUN_NAME
        previous = read_json(run_file).get("config") if run_file.is_file() else None
        entries = sorted(p.name for p in self.out.iterdir() if p.name != ".lock")
        if cfg.resume:
            if previous is None and entries:
                raise ConfigError(f"cannot resume in {self.out}: it holds {entries[:5]} but no {RUN_NAME}, so it is"
                                  " not a training run's folder; choose a fresh out_dir")
            if previous is not None:
                self._check_same_run(TrainConfig.from_dict(previous, source=str(run_file)), run_file)
        elif cfg.stage == "prior" and cfg.vqvae_from:
            if entries:
                raise ConfigError(f"out_dir {self.out} is not empty (it holds {entries[:5]}): --vqvae_from starts a new"
                                  " run, in a fresh out_dir")
            vqvae = _vqvae_of(cfg.vqvae_from)  # loaded (and so checked) before anything is written
            if self.is_main:
                vqvae.save_pretrained(self.out / "vqvae")
            if distributed.is_distributed():
                torch.distributed.barrier()  # every rank loads the copy once it is complete
        elif cfg.stage == "prior":
            if previous is None or not (self.out / "vqvae" / "model.safetensors").is_file():
                raise ConfigError(f"--stage=prior trains a prior on the finished VQ-VAE of a run folder, and"
                                  f" {self.out} holds none (no {RUN_NAME} or vqvae/); train stage 1 there first,"
                                  " or name a trained VQ-VAE with --vqvae_from")
            if self.is_main:  # a new stage 2: the previous prior's checkpoints are not this run's
                shutil.rmtree(self.out / "checkpoints" / "prior", ignore_errors=True)
        elif entries:
            raise ConfigError(f"out_dir {self.out} is not empty (it holds {entries[:5]}): it belongs to another run."
                              " Pass --resume to continue the run it holds, or choose a fresh out_dir")
        if self.is_main:
            write_json(run_file, {"config": cfg.to_dict()})

    def _check_same_run(self, saved: TrainConfig, source: Path) -> None:
        ours, theirs = self.config.to_dict(), saved.to_dict()
        changed = sorted(k for k, v in theirs.items() if ours[k] != v and k not in RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(f"cannot resume from {source}: the run's settings changed ({changed}); use a fresh"
                              " out_dir or restore the settings")

    def _load_resume_point(self) -> None:
        if not self.config.resume:
            return
        stages = ("prior", "vqvae") if self.config.stage != "vqvae" else ("vqvae",)
        for stage in stages:  # the later stage's checkpoint is the newer point of the run
            folder = self.checkpoints[stage].latest()
            if folder is not None:
                files, state = self.checkpoints[stage].load(folder)
                self._check_same_run(TrainConfig.from_dict(state["config"], source=str(folder)), folder)
                self._resume_state, self._resume_files = state, files
                return
        self.log(f"no complete checkpoint in {self.out / 'checkpoints'}; starting from scratch")

    def _stage_done(self, stage: str) -> bool:
        state = self._resume_state
        done = state is not None and (state["stage"] != stage or state["epoch"] >= self._epochs(stage))
        return done and (self.out / stage / "model.safetensors").is_file()

    def _epochs(self, stage: str) -> int:
        return self.config.vqvae_epochs if stage == "vqvae" else self.config.prior_epochs

    def _training_codes(self, vqvae: VQVAE, images: ImageSource) -> Tensor:
        """The training set's codes, cached in ``codes.safetensors`` with the VQ-VAE weights they came from."""
        path, key = self.out / CODES_NAME, fingerprint(vqvae)
        if path.is_file():
            try:
                if read_metadata(path).get("vqvae") == key:
                    codes = read_safetensors(path)["codes"]
                    if len(codes) == len(images):
                        return codes.long()
                self.log(f"{path.name} was made by another VQ-VAE or dataset; encoding the training set again")
            except (CheckpointFormatError, KeyError) as err:
                self.log(f"{path.name} is unreadable ({err}); encoding the training set again")
        codes = encode_all(vqvae.eval(), images)
        if self.is_main:
            write_safetensors(path, {"codes": codes.to(torch.int32)}, metadata={"vqvae": key})
        return codes

    def _progress(self, total: int, desc: str, initial: int) -> Any:
        if not (self.config.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=2.0, file=sys.stderr)

    def _log_metrics(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.metrics_log.append(record)

    def _truncate_log(self, stage: str, step: int) -> None:
        """Drop log lines written after the checkpoint being resumed, so each step appears once."""
        if self.is_main:
            self.metrics_log.truncate_after(stage, step)

    def _save_grid(self, images: Tensor, name: str, nrow: int = 8) -> None:
        from ..images import save_grid

        (self.out / "images").mkdir(exist_ok=True)
        save_grid(images.float().cpu().clamp(0, 1), self.out / "images" / name, nrow=nrow)


def encode_all(vqvae: VQVAE, images: ImageSource) -> Tensor:
    """The codes of every image of ``images``, in order, on the CPU."""
    return torch.cat([vqvae.encode(batch).cpu() for batch, _ in images.in_order(ENCODE_BATCH)])


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

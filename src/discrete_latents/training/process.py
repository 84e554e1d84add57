"""Everything a training process sets up around the loop, and undoes afterwards.

The distributed group (``torchrun``), the run lock on the output folder, a SIGTERM handler that
asks the loop to checkpoint and stop, the thread count and flushing of denormal floats: one
context manager, so the loop itself only trains.
"""

from __future__ import annotations

import gc
import os
import platform
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .. import _distributed as distributed
from .._checks import check_device
from .checkpoint import RunLock


def pick_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if name != "auto":
        return check_device(name, "device")  # "garbage" or an absent GPU fails here, before any work
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class StopFlag:
    """Set by SIGTERM: the loop finishes its step, checkpoints and returns."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


@contextmanager
def training_process(out_dir: Path, device: torch.device, num_threads: int, stop: StopFlag) -> Iterator[None]:
    """Join the ``torchrun`` group if there is one, lock ``out_dir`` (rank 0), route SIGTERM to ``stop``.

    Denormal floats (tiny gradients) make CPU matmuls up to 30x slower, so they are flushed to
    zero on the CPU. Everything is restored on exit, the group destroyed if it was started here.
    """
    started_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        started_group = True
    previous_handler = signal.getsignal(signal.SIGTERM)
    flush_denormal = device.type == "cpu" and torch.set_flush_denormal(True)
    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        with RunLock(out_dir) if distributed.rank() == 0 else nullcontext():
            signal.signal(signal.SIGTERM, stop)
            yield
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


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, e.g. "AMD EPYC"), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()

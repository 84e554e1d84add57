"""Thin wrappers over torch.distributed that are no-ops in a single process.

The quantizers call these inside ``forward`` in training mode. A collective blocks until every
rank has issued it, so callers must issue the same collectives, with the same shapes, in the same
order on every rank; the quantizers guarantee this by deciding only from all-reduced statistics.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Copy rank ``src``'s ``tensor`` to every rank, in place."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor

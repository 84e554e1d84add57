"""Quantizer state stays identical across DDP ranks: two gloo processes on 127.0.0.1, CPU only.

Each rank trains on different data with k-means initialisation and dead-code restarts on; EMA
statistics, k-means and restarts are synchronised inside the quantizers, so every state tensor
must be bit-identical on both ranks afterwards (reliability case VQ-17).
"""

from __future__ import annotations

import datetime
import gc
import inspect
import json
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytest import MonkeyPatch

from discrete_latents.quantizers import QUANTIZERS

DDP = torch.nn.parallel.DistributedDataParallel
# Buffers are synchronised inside the quantizers, so DDP's per-forward buffer broadcast is off
# (the name of that switch changed in torch 2.13).
NO_BUFFER_SYNC = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                  else {"broadcast_buffers": False})

WORLD = 2
DIM, K = 8, 32
HEALTH = {"kmeans_init": True, "restart_dead_codes": True, "dead_code_threshold": 0.5, "usage_decay": 0.8}
# label -> (registry name, kwargs, wrap in DDP: quantizers with parameters learn by averaged gradients)
CONFIGS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "vq_ema": ("vq_ema", {"codebook_size": K, **HEALTH}, False),
    "vq": ("vq", {"codebook_size": K, **HEALTH}, True),
    "vq_cosine": ("vq_cosine", {"codebook_size": K, **HEALTH}, True),
    "rvq_ema": ("rvq", {"codebook_size": K, "num_quantizers": 2, "stage": "vq_ema", **HEALTH}, False),
}
STEPS = 25


def _rank_data(rank: int, step: int) -> torch.Tensor:
    """(8, DIM, 4, 4) latents from 4 Gaussians that only this rank sees, plus noise."""
    centers = 3.0 * torch.randn(8, DIM, generator=torch.Generator().manual_seed(7))[4 * rank: 4 * rank + 4]
    g = torch.Generator().manual_seed(1000 * rank + step)
    flat = centers[torch.randint(0, 4, (128,), generator=g)] + 0.1 * torch.randn(128, DIM, generator=g)
    return flat.reshape(8, 4, 4, DIM).permute(0, 3, 1, 2).contiguous()


def _same_on_all_ranks(tensor: torch.Tensor) -> bool:
    gathered = [torch.empty_like(tensor) for _ in range(WORLD)]
    dist.all_gather(gathered, tensor.contiguous())
    return all(torch.equal(gathered[0], t) for t in gathered[1:])


def _train_and_report(rank: int, name: str, kwargs: dict[str, Any], wrap: bool) -> dict[str, Any]:
    torch.manual_seed(0)  # the same initial model on every rank, as DDP would broadcast it
    quantizer = QUANTIZERS.create(name, dim=DIM, **kwargs).train()
    torch.manual_seed(100 + rank)  # then rank-specific randomness (restart picks, k-means seeds)
    model: torch.nn.Module = DDP(quantizer, **NO_BUFFER_SYNC) if wrap else quantizer
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5) if wrap else None
    perplexity_equal = True
    for step in range(STEPS):
        out = model(_rank_data(rank, step))
        perplexity_equal &= _same_on_all_ranks(out.perplexity.detach())  # usage summed first
        if optimizer is not None:
            optimizer.zero_grad()
            (out.loss + out.quantized.square().mean()).backward()
            optimizer.step()
    quantizer.eval()
    local_indices = quantizer(_rank_data(rank, STEPS)).indices
    state = quantizer.state_dict()
    return {
        "state_keys": sorted(state),
        "differing": [k for k in sorted(state) if not _same_on_all_ranks(state[k])],
        "perplexity_equal": perplexity_equal,
        # Sanity: the ranks did see different data, so agreement is not trivial.
        "local_indices_differ": not _same_on_all_ranks(local_indices),
        "restarts": float(quantizer.usage_stats()["restarts"]),
        "initialized": all(bool(v) for k, v in state.items() if k.endswith("initialized")),
    }


def _worker(rank: int, port: int, out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    try:
        report = {label: _train_and_report(rank, *config) for label, config in CONFIGS.items()}
    finally:
        # A DDP wrapper that outlives its process group makes gloo abort at interpreter exit.
        gc.collect()
        dist.destroy_process_group()
    if rank == 0:
        Path(out_path).write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_state_is_identical_on_two_gloo_ranks(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    # Spawned children import this module by name: make its folder and the repo root importable.
    here = Path(__file__).resolve().parent
    for folder in (str(here), str(here.parent)):
        monkeypatch.syspath_prepend(folder)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "report.json"
    context = mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = 300  # a hang guard, not a timing assertion: a deadlocked collective fails the test
    waited = 0
    while not context.join(timeout=5):
        waited += 5
        if waited >= deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"the {WORLD} gloo ranks did not finish within {deadline} s (deadlock?)")
    report = json.loads(out.read_text())
    assert sorted(report) == sorted(CONFIGS)
    for label, result in report.items():
        assert result["differing"] == [], f"{label}: state differs across ranks: {result['differing']}"
        assert result["perplexity_equal"], label
        assert result["local_indices_differ"], label
        assert result["restarts"] > 0, f"{label}: no restart happened, the test would not exercise them"
        assert result["initialized"], label
        assert len(result["state_keys"]) >= 4, label
    assert "cluster_size" in report["vq_ema"]["state_keys"] and "embed_sum" in report["vq_ema"]["state_keys"]

"""Cross-entropy through a linear output layer without the (N, K) logits matrix."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Logits per chunk: 2**23 (32 MiB in float32), e.g. 128 positions at K = 65,536. The full matrix
# for a 16x16 grid at batch 64 and K = 65,536 would be 4 GiB, and autograd would keep it.
_CHUNK_ELEMENTS = 1 << 23


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                          row_weights: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of ``logits = hidden @ weight.T + bias`` against ``targets``.

    The rows are taken in chunks into one reused (rows, K) buffer: the forward pass keeps only
    each row's log-sum-exp, and the backward pass computes each chunk's logits again, turns them
    into ``softmax - one_hot`` in place and accumulates the gradients of ``hidden``, ``weight``
    and ``bias`` from it. Memory holds one chunk of logits, and nothing is allocated and freed per
    chunk but a few rows' worth (on CPU, freed blocks interleaved with live small tensors grow the
    C heap). In float32 whatever the autocast state: 65,536 logits in bfloat16 lose the target's.

    Args:
        hidden: (N, C) states before the output layer.
        weight: (K, C) output layer weight.
        bias: (K,) or ``None``.
        targets: (N,) int64 ids in [0, K).
        row_weights: (N,) float weights of the rows (a masked prior's 0/1 "hidden" flags), or
            ``None`` for all 1. The rows are still computed (a fixed shape: no row count is read
            back to the host).

    Returns:
        () float32 weighted mean over the rows, sum(w_i CE_i) / max(sum(w_i), 1), in nats; same
        value and gradients as from the full logits, up to float rounding.
    """
    rows = max(1, _CHUNK_ELEMENTS // weight.shape[0])
    if row_weights is None:
        row_weights = hidden.new_ones(targets.shape[0], dtype=torch.float32)
    total: Tensor = _LinearCrossEntropy.apply(hidden, weight, bias, targets, row_weights.float(), rows)
    return total / row_weights.float().sum().clamp_min(1)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                row_weights: Tensor, rows: int) -> Tensor:
        """sum_i w_i CE_i over the N rows."""
        n = hidden.shape[0]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            h, w = hidden.float(), weight.float()
            buffer = hidden.new_empty(min(rows, n) * w.shape[0], dtype=torch.float32)
            log_norm = hidden.new_empty(n, dtype=torch.float32)  # log-sum-exp of each row's logits
            total = hidden.new_zeros((), dtype=torch.float32)
            for start in range(0, n, rows):
                logits = _logits_into(buffer, h[start:start + rows], w, bias)
                target = logits.gather(1, targets[start:start + rows, None]).squeeze(1)
                peak = logits.amax(dim=1)
                # log sum exp(l) = m + log sum exp(l - m), computed in the buffer itself.
                chunk_norm = logits.sub_(peak[:, None]).exp_().sum(dim=1).log_().add_(peak)
                log_norm[start:start + rows] = chunk_norm
                total += ((chunk_norm - target) * row_weights[start:start + rows]).sum()
        ctx.save_for_backward(hidden, weight, bias, targets, row_weights, log_norm)
        ctx.rows = rows
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, targets, row_weights, log_norm = ctx.saved_tensors
        rows, n, k = ctx.rows, hidden.shape[0], weight.shape[0]
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            h, w = hidden.float(), weight.float()
            buffer = h.new_empty(min(rows, n) * k)
            minus_one = h.new_full((min(rows, n), 1), -1.0)
            grad_hidden = torch.empty_like(h) if need_hidden else None
            grad_weight = torch.zeros_like(w) if need_weight else None
            grad_bias = h.new_zeros(k) if need_bias else None
            scale = row_weights[:, None] * grad.float()  # (N, 1)
            for start in range(0, n, rows):
                part = h[start:start + rows]
                # d(sum of w_i CE_i)/d(logits) = w_i (softmax - one_hot), built in place.
                g = _logits_into(buffer, part, w, bias).sub_(log_norm[start:start + rows, None]).exp_()
                g.scatter_add_(1, targets[start:start + rows, None], minus_one[: part.shape[0]])
                g.mul_(scale[start:start + rows])
                if grad_hidden is not None:
                    torch.mm(g, w, out=grad_hidden[start:start + rows])
                if grad_weight is not None:
                    grad_weight.addmm_(g.t(), part)
                if grad_bias is not None:
                    grad_bias += g.sum(dim=0)
        return (grad_hidden.to(hidden.dtype) if grad_hidden is not None else None,
                grad_weight.to(weight.dtype) if grad_weight is not None else None,
                grad_bias.to(bias.dtype) if grad_bias is not None else None, None, None, None)


def _logits_into(buffer: Tensor, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """(r, K) float32 logits of ``hidden`` (r, C), written into the front of ``buffer``."""
    logits = buffer[: hidden.shape[0] * weight.shape[0]].view(hidden.shape[0], weight.shape[0])
    if bias is None:
        return torch.mm(hidden, weight.t(), out=logits)
    return torch.addmm(bias.float(), hidden, weight.t(), out=logits)

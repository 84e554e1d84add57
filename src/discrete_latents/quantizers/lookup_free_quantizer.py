"""Lookup-free quantization: each latent channel becomes one bit, its sign; no codebook."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .. import _distributed as distributed
from .._checks import check_float, check_int
from .._outputs import QuantizerOutput
from .base import QUANTIZERS, BaseQuantizer, straight_through

_MAX_BITS = 24  # the histogram and a prior's vocabulary both need K = 2**bits entries
_USAGE_DECAY = 0.99  # usage is tracked over about the last 100 training batches
_ACTIVE_LEVEL = 0.03  # a code is active above this share of uniform use (the codebook default)


@QUANTIZERS.register("lfq")
class LookupFreeQuantizer(BaseQuantizer):
    """LFQ (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual
    Generation", MAGVIT-v2, arXiv 2310.05737, §3.1).

    Each of the d = log2(K) channels is quantized to its sign, -1 or +1, so the implicit
    codebook is {-1, 1}^d and K = 2^d codes need no lookup: the id of a cell is its bits read
    as a binary number, bit i (weight 2^i) set where channel i is positive. The latent is
    projected to d channels by a 1x1 linear map only when ``codebook_size`` asks for d != D.
    The gradient crosses by the straight-through copy.

    The loss is the paper's: a commitment term ``||z - sg[q]||^2`` weighed by ``beta``, and an
    entropy penalty weighed by ``entropy_weight`` that makes each cell's code confident
    (per-sample entropy down) while the batch uses many codes (entropy of the batch-average
    code distribution up); see `entropy_terms`. LFQ has no codebook to learn, so its
    ``codebook_loss`` field carries the weighted penalty, which keeps
    ``loss = codebook_loss + beta * commitment_loss`` true for every quantizer. The penalty is
    negative when the batch spreads over many codes; its floor is -d ln 2.

    Args:
        dim: D, the width of the latents.
        codebook_size: K, a power of two from 2 to 2**24; default ``2 ** dim`` (one bit per
            channel, no projection).
        beta: weight of the commitment term. Default 0.25.
        entropy_weight: weight of the entropy penalty; 0 turns it off. Default 0.1.
        entropy_temperature: tau of the soft code assignment p(c | z) ~ exp(-||z - c||^2 / tau)
            the entropies are taken of. Default 0.01.
        entropy_group_bits: the batch-average distribution is taken over groups of at most this
            many bits, 2**bits entries per row each (see `entropy_terms`); with d at most
            this, it is exact. Default 9 (d = 18 in two groups of 512 entries).

    Examples:
        >>> import torch
        >>> lfq = LookupFreeQuantizer(dim=10)
        >>> out = lfq(torch.randn(2, 10, 4, 4))
        >>> lfq.codebook_size, out.indices.shape, out.quantized.abs().unique().tolist()
        (1024, torch.Size([2, 4, 4]), [1.0])
    """

    usage: Tensor  # (K,) windowed share of assignments per code
    _powers: Tensor  # (d,) 2**i, the weight of bit i in an id

    def __init__(self, dim: int, codebook_size: int | None = None, beta: float = 0.25, entropy_weight: float = 0.1,
                 entropy_temperature: float = 0.01, entropy_group_bits: int = 9) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 1)
        if codebook_size is None:
            if dim > _MAX_BITS:
                raise ValueError(f"dim: {dim} channels would give 2**{dim} codes, more than 2**{_MAX_BITS};"
                                 " pass codebook_size to project to fewer bits")
            codebook_size = 2 ** dim
        check_int("codebook_size", codebook_size, 2)
        if codebook_size & (codebook_size - 1) or codebook_size > 2 ** _MAX_BITS:
            raise ValueError(f"codebook_size: expected a power of two from 2 to 2**{_MAX_BITS}, got {codebook_size!r}")
        self.codebook_size = codebook_size
        self.bits = codebook_size.bit_length() - 1
        self.beta = check_float("beta", beta, 0.0, float("inf"))
        self.entropy_weight = check_float("entropy_weight", entropy_weight, 0.0, float("inf"))
        self.entropy_temperature = check_float("entropy_temperature", entropy_temperature, 1e-12, float("inf"))
        self.entropy_group_bits = check_int("entropy_group_bits", entropy_group_bits, 1)
        if entropy_group_bits > 16:
            raise ValueError(f"entropy_group_bits: expected an integer from 1 to 16 (2**bits entries per row),"
                             f" got {entropy_group_bits!r}")
        self.register_buffer("_powers", 2 ** torch.arange(self.bits), persistent=False)
        # Persistent, as for the codebook quantizers: a resumed model keeps its statistics.
        self.register_buffer("usage", torch.full((codebook_size,), 1.0 / codebook_size))
        self.project_in = nn.Linear(dim, self.bits) if dim != self.bits else None
        self.project_out = nn.Linear(self.bits, dim) if dim != self.bits else None

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize each channel to its sign.

        Args:
            z: (B, D, h, w) float latents.

        Returns:
            `QuantizerOutput` with ``quantized`` (B, D, h, w) (codes in
            {-1, 1}^D without projections), ``indices`` (B, h, w) in [0, 2**d), the weighted
            entropy penalty as ``codebook_loss``, and the batch perplexity.
        """
        z = self.check_latents(z)
        b, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):  # signs and entropies in float32
            flat = rearrange(z, "b d h w -> (b h w) d").float()
            x = self.project_in(flat) if self.project_in is not None else flat  # (N, d)
            positive = x > 0
            codes = torch.where(positive, 1.0, -1.0)  # (N, d); a zero channel counts as negative
            indices = (positive.long() * self._powers).sum(1)  # (N,) bit i weighs 2**i
            commitment_loss = F.mse_loss(x, codes)
            if self.entropy_weight > 0:
                per_sample, batch = entropy_terms(x, self.entropy_temperature, self.entropy_group_bits)
                codebook_loss = self.entropy_weight * (per_sample - batch)
            else:
                codebook_loss = commitment_loss.new_zeros(())
            quantized = straight_through(x, codes)
            out = self.project_out(quantized) if self.project_out is not None else quantized  # (N, D)
            counts = self.histogram(indices, self.codebook_size)
            if self.training:
                counts = self._track_usage(x.detach(), counts)
        return QuantizerOutput(
            quantized=rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w).to(z.dtype),
            indices=rearrange(indices, "(b h w) -> b h w", b=b, h=h, w=w),
            loss=codebook_loss + self.beta * commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=self.perplexity_of(counts),
        )

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) int ids in [0, 2**d) -> (B, D, h, w) codes (exactly ``quantized`` in eval).

        Raises:
            ValueError: wrong shape, or an id outside [0, K).
        """
        indices = self.check_indices(indices)
        b, h, w = indices.shape
        bits = (rearrange(indices, "b h w -> (b h w) 1") // self._powers) % 2  # (N, d)
        codes = bits.float() * 2.0 - 1.0
        out = self.project_out(codes) if self.project_out is not None else codes
        return rearrange(out, "(b h w) d -> b d h w", b=b, h=h, w=w)

    def usage_stats(self) -> dict[str, float]:
        """Usage over about the last 100 training batches: ``active_codes`` (above 3% of uniform
        use) and ``perplexity`` (exp of the entropy of the windowed usage)."""
        return {"active_codes": float((self.usage > _ACTIVE_LEVEL / self.codebook_size).sum()),
                "perplexity": float(self.perplexity_of(self.usage))}

    @torch.no_grad()
    def _track_usage(self, x: Tensor, counts: Tensor) -> Tensor:
        """Sum ``counts`` over ranks and fold them into ``usage``; return the global counts."""
        # Rows holding NaN or inf (none on CPU, where forward has raised already) ride along
        # with the histogram: one all-reduce, and every rank skips that batch alike.
        bad = (~torch.isfinite(x)).any(1).sum(dtype=torch.float32)
        summed = distributed.all_reduce_sum(torch.cat([counts, bad[None]]))
        counts, finite = summed[:-1], summed[-1] == 0
        self.usage.lerp_(counts / counts.sum().clamp_min(1), (1.0 - _USAGE_DECAY) * finite.float())
        return counts


def bit_groups(bits: int, group_bits: int) -> list[int]:
    """Sizes of the fewest groups of at most ``group_bits`` that cover ``bits``, as equal as can be.

    Examples:
        >>> bit_groups(18, 9), bit_groups(10, 9), bit_groups(7, 9)
        ([9, 9], [5, 5], [7])
    """
    count = -(-bits // group_bits)
    return [bits // count + (1 if i < bits % count else 0) for i in range(count)]


def entropy_terms(x: Tensor, temperature: float, group_bits: int) -> tuple[Tensor, Tensor]:
    """The two entropies of the LFQ penalty (arXiv 2310.05737, Eq. 5), in nats, memory O(N 2**g).

    The soft assignment of a row x (d channels) to the codes c in {-1, 1}^d is
    p(c | x) ~ exp(-||x - c||^2 / tau). The squared distance is a sum over channels, so
    p(c | x) is a product of one Bernoulli per bit, P(bit i = +1) = sigmoid(4 x_i / tau):

    * per-sample entropy, mean over rows of H(p(. | x)) = sum_i H(bit i): exact, O(N d);
    * batch entropy, H(mean over rows of p(. | x)): the average of products is no product, so
      its 2**d entries are never formed. The bits are split into groups of at most
      ``group_bits`` (`bit_groups`); each group's average distribution (2**g entries, from
      an (N, 2**g) matrix) is exact, and the batch entropy is taken as the sum of the group
      entropies. That sum is an upper bound of the joint entropy (subadditivity), equal to it when
      the groups are independent under the batch average; with one group it is exact. The
      same split as Open-MAGVIT2's two sub-codebooks for d = 18.

    Args:
        x: (N, d) float32 pre-quantization channels.
        temperature: tau > 0.
        group_bits: g, the largest group.

    Returns:
        (per-sample entropy, batch entropy), two scalars; the penalty is their difference.
    """
    # log P(+1) - log P(-1) per bit, (N, d). Beyond +-64 a bit is certain to float32 precision;
    # the clamp keeps huge inputs from making inf * 0 = NaN below.
    logits = (x * (4.0 / temperature)).clamp(-64.0, 64.0)
    log_neg = -F.softplus(logits)  # log P(bit = -1)
    log_pos = -F.softplus(-logits)  # log P(bit = +1)
    # H(bit) = -P(+1) log P(+1) - P(-1) log P(-1), stable for large |logits|.
    per_sample = -(log_pos.exp() * log_pos + log_neg.exp() * log_neg).sum(1).mean()
    batch = x.new_zeros(())
    first = 0
    for size in bit_groups(x.shape[1], group_bits):
        # All 2**g sign patterns of the group, bit j of pattern c set where code c has +1 on channel j.
        patterns = ((torch.arange(2 ** size, device=x.device)[:, None] >> torch.arange(size, device=x.device))
                    & 1).float()  # (2**g, g)
        # log p(c_group | x) = sum_j log P(-1) + sum_j [c_j = +1] (log P(+1) - log P(-1)).
        group_log_probs = log_neg[:, first:first + size].sum(1, keepdim=True) + logits[:, first:first + size] \
            @ patterns.t()  # (N, 2**g)
        # exp below e^-87 is a float32 denormal, many times slower on x86; e^-80 is as good as 0.
        average = group_log_probs.clamp_min(-80.0).exp().mean(0)  # (2**g,)
        # -p log p with the log clamped: entr's gradient, -1 - log p, is infinite at an unused code.
        batch = batch - (average * average.clamp_min(1e-30).log()).sum()
        first += size
    return per_sample, batch

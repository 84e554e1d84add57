"""A masked prior (MaskGIT, Chang et al. 2022, arXiv 2202.04200): a bidirectional transformer that
fills hidden codes, drawing a whole grid in a few parallel steps instead of one code per step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_indices, check_positive_int
from .._configs import MaskedPriorConfig
from .._outputs import PriorOutput
from .._sampling import filter_logits, sample_logits
from ..errors import NonFiniteError
from ._chunked_loss import chunked_cross_entropy
from ._transformer import Block, init_weights
from .base import PRIORS, BasePrior

DEFAULT_STEPS = 8  # the paper's setting for 256x256 ImageNet; 12 samples a little better on MNIST
# Scale of the Gumbel noise added to the confidences at the first step, annealed linearly to 0
# (the paper's "choice temperature", 4.5; on MNIST 4.5 to 12 are within noise, 2 is worse: docs/masked_prior.md).
DEFAULT_CHOICE_TEMPERATURE = 4.5


def cosine_schedule(progress: Tensor) -> Tensor:
    """The paper's mask schedule gamma(r) = cos(pi r / 2): the share of codes still hidden at ``progress`` r.

    gamma(0) = 1 (all hidden), gamma(1) = 0 (none). Training draws r ~ U[0, 1) per sample;
    sampling step t of T leaves gamma((t + 1) / T) of the initially hidden codes hidden (Sec. 3.2).
    """
    return torch.cos(math.pi / 2 * progress)


def random_mask(batch: int, length: int, device: torch.device | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool, true at ceil(gamma(r) * L) >= 1 positions chosen uniformly, r ~ U[0, 1) per row.

    Draws from ``generator`` (default: torch's global generator, which the trainer's checkpoints
    save, so a resumed run draws the same masks).
    """
    ratio = cosine_schedule(torch.rand(batch, 1, device=device, generator=generator))
    count = torch.ceil(ratio * length).clamp(1, length)  # (B, 1); at least one code to predict
    scores = torch.rand(batch, length, device=device, generator=generator)
    rank = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation per row
    return rank < count


def random_box_mask(batch: int, grid: tuple[int, int], device: torch.device | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """(B, h, w) bool, true inside one axis-aligned box per grid: the shape of an inpainting mask.

    Height and width are uniform in 1..h and 1..w, the position uniform among those that fit.
    """
    size = torch.tensor(grid, device=device)
    extent = (torch.rand(batch, 2, device=device, generator=generator) * size).long() + 1  # (B, 2) in [1, size]
    start = (torch.rand(batch, 2, device=device, generator=generator) * (size - extent + 1)).long()
    rows = torch.arange(grid[0], device=device)[None, :]
    cols = torch.arange(grid[1], device=device)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + extent[:, :1])  # (B, h)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + extent[:, 1:])  # (B, w)
    return in_rows[:, :, None] & in_cols[:, None, :]


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over the masked positions only: (B, L, K), (B, L), (B, L) bool -> ()."""
    per_code = F.cross_entropy(rearrange(logits.float(), "b l k -> b k l"), targets, reduction="none")  # (B, L)
    return (per_code * mask).sum() / mask.sum().clamp_min(1)


@PRIORS.register("masked_transformer")
class MaskedPrior(BasePrior):
    """A bidirectional transformer that predicts hidden codes from the visible ones (MaskGIT).

    The sequence is ``[class token] c_0 ... c_{L-1}`` where a hidden code is the mask token
    (id K); the class token is present only when ``num_classes > 0`` (its id ``num_classes``
    means "no label", learnt by label dropout for classifier-free guidance). The output head is
    tied to the code embeddings, plus a bias per code.

    Training hides a cosine-schedule share of each grid and scores the hidden codes only.
    Sampling starts from an all-hidden grid and, over ``steps`` parallel steps, draws every hidden
    code and keeps the most confident ones. A masked model has no exact likelihood: `nll`
    raises and `nll_bound` gives an upper bound.

    Args:
        config: a `MaskedPriorConfig`; default 128 wide, 8 heads,
            3 blocks over 7x7 grids of 100 codes (the causal prior's size).

    Examples:
        >>> import torch
        >>> from discrete_latents import MaskedPriorConfig
        >>> prior = MaskedPrior(MaskedPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1,
        ...                                       n_head=2, n_embd=16))
        >>> prior(torch.randint(0, 16, (2, 3, 3))).logits.shape
        torch.Size([2, 3, 3, 16])
        >>> prior.sample(2, steps=4).shape
        torch.Size([2, 3, 3])
    """

    config_class = MaskedPriorConfig
    config: MaskedPriorConfig
    raster_order = False
    exact_likelihood = False

    def __init__(self, config: MaskedPriorConfig | None = None) -> None:
        super().__init__(config if config is not None else MaskedPriorConfig())
        cfg = self.config
        self.prefix = 1 if cfg.num_classes else 0  # the class token
        self.wte = nn.Embedding(cfg.codebook_size + 1, cfg.n_embd)  # codes + the mask token
        self.wpe = nn.Embedding(self.num_codes + self.prefix, cfg.n_embd)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.n_embd) if cfg.num_classes else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, layer, causal=False) for layer in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head_bias = nn.Parameter(torch.zeros(cfg.codebook_size))
        init_weights(self, cfg.n_layer)

    @property
    def mask_id(self) -> int:
        """The mask token's id, K."""
        return self.codebook_size

    def _hidden(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        """(B, h, w) ids in [0, K], K = hidden, and (B,) labels -> (B, h*w, C) states before the head."""
        x = self.wte(rearrange(indices, "b h w -> b (h w)"))
        if cond is not None:
            x = torch.cat([self.class_emb(cond)[:, None], x], dim=1)  # type: ignore[misc]
        x = self.drop(x + self.wpe.weight)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x[:, self.prefix:])

    def _logits(self, indices: Tensor, cond: Tensor | None) -> Tensor:
        """(B, h, w) ids in [0, K], K = hidden, and (B,) labels -> (B, h, w, K) logits at every position."""
        logits = F.linear(self._hidden(indices, cond), self.wte.weight[: self.codebook_size], self.head_bias)
        return rearrange(logits, "b (h w) k -> b h w k", h=self.grid_size[0])

    # training ----------------------------------------------------------------------------------
    def forward(self, indices: Tensor, labels: Tensor | None = None,  # type: ignore[override]
                return_logits: bool = True, mask: Tensor | None = None) -> PriorOutput | Tensor:
        """Hide codes, predict them, and score the hidden ones.

        Args:
            indices: (B, h, w) int64 codes in [0, K).
            labels: (B,) int64 classes, for a conditional prior; ``None`` means "no label".
            return_logits: ``False`` returns the loss alone (as the trainer asks).
            mask: (B, h, w) bool, true where a code is hidden; ``None`` draws one per grid from
                torch's global generator: a ``cosine_schedule`` share of its codes (at least one)
                or, with chance ``config.box_mask_prob``, one random box (`random_box_mask`).

        Returns:
            `PriorOutput` with ``logits`` (B, h, w, K) at every position
            of the masked input and ``loss``, the mean cross-entropy in nats over the hidden codes.
        """
        indices = check_indices(indices, self.codebook_size, self.grid_size)
        batch = indices.shape[0]
        if mask is None:  # drawn before label dropout, so eval and training calls draw the same masks
            mask = self._training_mask(batch, indices.device)
        else:
            indices, mask = self._check_fill(indices, mask)
        cond = self._drop_labels(self._condition(labels, batch))
        if not return_logits:  # the trainer's path: no (B, h, w, K) logits (see BasePrior.loss)
            hidden = self._hidden(indices.masked_fill(mask, self.mask_id), cond)
            return chunked_cross_entropy(hidden.flatten(0, 1), self.wte.weight[: self.codebook_size], self.head_bias,
                                         indices.flatten(), row_weights=mask.flatten().float())
        logits = self._logits(indices.masked_fill(mask, self.mask_id), cond)
        flat = "b h w -> b (h w)"
        loss = masked_cross_entropy(rearrange(logits, "b h w k -> b (h w) k"), rearrange(indices, flat),
                                    rearrange(mask, flat))
        return PriorOutput(logits=logits, loss=loss) if return_logits else loss

    def _training_mask(self, batch: int, device: torch.device) -> Tensor:
        """(B, h, w) bool: the hidden codes of each training grid (see `forward`)."""
        mask = rearrange(random_mask(batch, self.num_codes, device), "b (h w) -> b h w", h=self.grid_size[0])
        if self.config.box_mask_prob > 0:  # no extra draws otherwise: older runs resume unchanged
            boxes = random_box_mask(batch, self.grid_size, device)
            mask = torch.where(torch.rand(batch, 1, 1, device=device) < self.config.box_mask_prob, boxes, mask)
        return mask

    # likelihood --------------------------------------------------------------------------------
    def nll(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Not available: a masked prior defines no exact likelihood; see `nll_bound`.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"nll: {type(self).__name__} has no exact likelihood (it predicts hidden codes in parallel, not one"
            " code given all earlier ones), so it has no bits per image comparable with a causal prior's; use"
            " nll_bound() for an upper bound on the negative log-likelihood")

    @torch.no_grad()
    def nll_bound(self, indices: Tensor, labels: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
        """A one-sample estimate of an upper bound on the NLL, in nats per code (eval mode).

        The model's conditionals define an autoregressive model for every order of the codes;
        averaged over orders, the NLL is at most E_m[mean cross-entropy of m hidden codes given
        the others], m ~ U{1..L}, hidden set uniform (the order-agnostic bound, Hoogeboom et al.
        2022, arXiv 2110.02037). Each image gets one draw: unbiased for the bound, noisy per image.

        Args:
            indices: (B, h, w) int64 codes in [0, K).
            labels: (B,) classes for a conditional prior; ``None`` scores unconditionally.
            generator: a ``torch.Generator`` for reproducible masks.

        Returns:
            (B,) float32 nats per code, an upper bound in expectation (not an exact NLL).
        """
        indices = check_indices(indices, self.codebook_size, self.grid_size)
        batch, length = indices.shape[0], self.num_codes
        device = indices.device
        count = torch.randint(1, length + 1, (batch, 1), device=device, generator=generator)
        rank = torch.rand(batch, length, device=device, generator=generator).argsort(1).argsort(1)
        hidden = rearrange(rank < count, "b (h w) -> b h w", h=self.grid_size[0])
        cond = self._condition(labels, batch)
        was_training = self.training
        self.eval()
        try:
            logits = self._logits(indices.masked_fill(hidden, self.mask_id), cond).float()
        finally:
            self.train(was_training)
        per_code = F.cross_entropy(rearrange(logits, "b h w k -> b k h w"), indices, reduction="none")
        return (per_code * hidden).flatten(1).sum(1) / count.squeeze(1)

    # sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, labels: Tensor | None = None, guidance_scale: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True, *, steps: int = DEFAULT_STEPS,
               choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE) -> Tensor:
        """Generate code grids by iterative parallel decoding (paper Sec. 3.2).

        Each step predicts every hidden code, draws one for each, and keeps the most confident
        draws; the rest are hidden again, ``floor(cosine_schedule((t + 1) / steps) * h*w)`` of
        them, but at least one code is revealed per step.

        Args:
            num_samples: N >= 1.
            temperature: softmax temperature of the draws, finite and >= 0; 0 is greedy (argmax
                draws and no confidence noise: deterministic without a generator). Default 1.
            top_k: draw only among the k most likely codes (None = all).
            top_p: nucleus sampling mass in (0, 1] (None = all).
            labels: (N,) classes; ``None`` draws them as `BasePrior.sample` does.
            guidance_scale: classifier-free guidance s, logits = u + s * (c - u); 0 = "no label".
            generator: a ``torch.Generator``; the same seed gives the same codes.
            use_cache: ignored (every step sees the whole grid; there is nothing to cache).
            steps: parallel decoding steps, in [1, h*w]. Default 8.
            choice_temperature: scale of the Gumbel noise added to the log-confidences at the first
                step, annealed linearly to 0 at the last (more diverse choices early). Default 4.5.

        Returns:
            (N, h, w) int64 codes in [0, K).

        Raises:
            ValueError: an argument out of range (the message starts with its name).
            NonFiniteError: the model produced NaN or infinite logits.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        cond, guided = self._sampling_condition(num_samples, labels, guidance_scale, generator, temperature,
                                                top_k, top_p)
        device = next(self.parameters()).device
        codes = torch.zeros(num_samples, *self.grid_size, dtype=torch.long, device=device)
        return self._decode(codes, torch.ones_like(codes, dtype=torch.bool), cond, guided, guidance_scale,
                            temperature, top_k, top_p, generator, steps, choice_temperature)

    @torch.no_grad()
    def fill(self, codes: Tensor, mask: Tensor, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, labels: Tensor | None = None, guidance_scale: float = 1.0,
             generator: torch.Generator | None = None, use_cache: bool = True, *, steps: int = DEFAULT_STEPS,
             choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE) -> Tensor:
        """Redraw the codes where ``mask`` is true given all kept codes, by parallel decoding.

        The schedule runs over each grid's own number of hidden codes; an all-true mask draws
        what `sample` draws for the same labels and generator.

        Args:
            codes: (B, h, w) int64 codes in [0, K).
            mask: (B, h, w) bool, true where a code is redrawn.
            labels: (B,) classes; ``None`` is the "no label" mode (never a drawn class).
            temperature, top_k, top_p, guidance_scale, generator: as in `sample`.
            use_cache, steps, choice_temperature: as in `sample`.

        Returns:
            (B, h, w) int64 codes, equal to ``codes`` wherever ``mask`` is false.
        """
        codes, mask = self._check_fill(codes, mask)
        cond, guided = self._fill_condition(labels, codes.shape[0], guidance_scale, temperature, top_k, top_p)
        return self._decode(codes.clone(), mask, cond, guided, guidance_scale, temperature, top_k, top_p,
                            generator, steps, choice_temperature)

    def _decode(self, codes: Tensor, mask: Tensor, cond: Tensor | None, guided: bool, guidance_scale: float,
                temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None,
                steps: int, choice_temperature: float) -> Tensor:
        """Fill ``codes`` (B, h, w) where ``mask`` (B, h, w) is true, in ``steps`` parallel steps."""
        steps = check_positive_int(steps, "steps")
        if steps > self.num_codes:
            raise ValueError(f"steps: expected at most h*w = {self.num_codes} (one code per step), got {steps}")
        if isinstance(choice_temperature, bool) or not isinstance(choice_temperature, (int, float)) \
                or not math.isfinite(choice_temperature) or choice_temperature < 0:
            raise ValueError(f"choice_temperature: expected a finite number >= 0, got {choice_temperature!r}")
        flat = "b h w -> b (h w)"
        tokens = rearrange(codes.masked_fill(mask, self.mask_id), flat)  # (B, L), K where hidden
        hidden = rearrange(mask, flat)
        initially_hidden = hidden.sum(1)  # (B,); the schedule is a share of each grid's own count
        # Every step reveals at least one code of each grid that has some, so the grid with the most
        # hidden codes is done after that many steps: read once here, not once per step. The first
        # step with NaN or infinite logits stays on the device and is read once at the end.
        last = min(steps, int(initially_hidden.max()))
        first_bad = torch.full((), steps, dtype=torch.long, device=tokens.device)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for step in range(last):
                    grid = rearrange(tokens, "b (h w) -> b h w", h=self.grid_size[0])
                    logits = self._logits(grid.repeat(2, 1, 1) if guided else grid, cond)
                    # The model's own logits are checked (guidance may overflow to -inf legitimately);
                    # a non-finite grid draws from zeros instead and the call raises below.
                    finite = torch.isfinite(logits).flatten(1).all(1)  # (B,), or (2B,) when guided
                    first_bad = torch.minimum(first_bad, torch.where(finite.all(), steps, step))
                    logits = torch.where(finite[:, None, None, None], logits, 0.0)
                    logits = rearrange(self._guide(logits, guided, guidance_scale).float(), "b h w k -> b (h w) k")
                    tokens, hidden = self._step(tokens, hidden, logits, step, steps, initially_hidden, temperature,
                                                top_k, top_p, generator, choice_temperature)
                bad = int(first_bad)
                if bad < steps:
                    raise NonFiniteError(f"sample: the prior produced NaN or infinite logits at step {bad};"
                                         " check its weights")
        finally:
            self.train(was_training)
        out = rearrange(tokens, "b (h w) -> b h w", h=self.grid_size[0])
        return codes.copy_(out)  # into the ordinary (non-inference) tensor

    def _step(self, tokens: Tensor, hidden: Tensor, logits: Tensor, step: int, steps: int, initially_hidden: Tensor,
              temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None,
              choice_temperature: float) -> tuple[Tensor, Tensor]:
        """One decoding step: (B, L) tokens and hidden flags, (B, L, K) logits -> the next ones."""
        batch, length, size = logits.shape
        # Every row has a logit above -inf (non-finite grids were replaced): no per-step check.
        drawn = sample_logits(logits.reshape(-1, size), temperature, top_k, top_p, generator,
                              validate=False).view(batch, length)
        drawn = torch.where(hidden, drawn, tokens)  # kept codes never change
        # Confidence: the log-probability of each draw under the distribution it came from.
        scaled = logits if temperature == 0 else filter_logits(logits / temperature, top_k, top_p)
        confidence = scaled.log_softmax(-1).gather(-1, drawn[..., None]).squeeze(-1)  # (B, L)
        progress = (step + 1) / steps
        noise = choice_temperature * (1 - progress)  # annealed to 0 (the paper's choice temperature)
        if noise > 0 and temperature > 0:
            uniform = torch.rand(confidence.shape, device=confidence.device, generator=generator)
            confidence = confidence - noise * torch.log(-torch.log(uniform.clamp(1e-20, 1 - 1e-7)))  # + Gumbel
        confidence = confidence.masked_fill(~hidden, math.inf)  # kept or revealed codes stay
        # How many stay hidden: gamma(progress) of the grid's initial count (none after the last
        # step), and at least one fewer than now: every step reveals a code, so a grid with fewer
        # hidden codes than steps is done early.
        remain = torch.floor(initially_hidden * math.cos(math.pi / 2 * progress)).long()
        remain = torch.minimum(remain, hidden.sum(1) - 1).clamp_min(0)
        rank = confidence.argsort(dim=1, stable=True).argsort(dim=1)  # 0 = least confident
        still = rank < remain[:, None]
        return drawn.masked_fill(still, self.mask_id), still

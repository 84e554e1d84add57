"""Lookup-free quantization: signs and ids by hand, the entropy penalty against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from discrete_latents import VQVAE, VQVAEConfig
from discrete_latents.quantizers import QUANTIZERS, LookupFreeQuantizer
from discrete_latents.quantizers.lookup_free_quantizer import bit_groups, entropy_terms

LN2 = math.log(2)


def cells(*rows: list[float]) -> torch.Tensor:
    """(1, d, 1, n) latents whose n cells are the given rows of d channels."""
    return torch.tensor(rows).t()[None, :, None, :]


def brute_force_entropies(x: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Both entropies from the full (N, 2**d) soft assignment softmax(-||x - c||^2 / tau), float64."""
    d = x.shape[1]
    codebook = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=torch.float64)
    probs = (-torch.cdist(x.double(), codebook) ** 2 / temperature).softmax(dim=1)  # (N, 2**d)
    per_sample = torch.special.entr(probs).sum(1).mean()
    batch = torch.special.entr(probs.mean(0)).sum()
    return per_sample, batch


def test_registered_and_k_is_two_to_the_dim() -> None:
    q = QUANTIZERS.create("lfq", dim=10)
    assert isinstance(q, LookupFreeQuantizer)
    assert q.codebook_size == 1024 and q.bits == 10 and q.project_in is None and list(q.parameters()) == []


def test_signs_and_ids_by_hand() -> None:
    q = LookupFreeQuantizer(dim=3).eval()
    out = q(cells([0.5, -2.0, 3.0], [-0.1, 0.2, 0.3], [0.0, -0.0, 1e-6], [-1.0, -1.0, -1.0]))
    # bit i (weight 2**i) is set where channel i is positive; zero counts as negative.
    assert out.indices.flatten().tolist() == [1 + 4, 2 + 4, 4, 0]
    assert out.quantized[0, :, 0, :].t().tolist() == [[1, -1, 1], [-1, 1, 1], [-1, -1, 1], [-1, -1, -1]]
    # Commitment: mean of (x - sign x)^2 over the 12 entries.
    diffs = [0.5, 1.0, 2.0, 0.9, 0.8, 0.7, 1.0, 1.0, 1 - 1e-6, 0.0, 0.0, 0.0]
    assert float(out.commitment_loss) == pytest.approx(sum(v * v for v in diffs) / 12, rel=1e-6)


def test_indices_to_codes_by_hand() -> None:
    q = LookupFreeQuantizer(dim=3)
    codes = q.indices_to_codes(torch.tensor([[[6, 1]]]))  # 6 = 0b110, 1 = 0b001
    assert codes[0, :, 0, :].t().tolist() == [[-1, 1, 1], [1, -1, -1]]


def test_codebook_size_projects_to_fewer_bits() -> None:
    q = LookupFreeQuantizer(dim=32, codebook_size=128).eval()
    assert q.bits == 7 and q.project_in is not None and q.project_out is not None
    z = torch.randn(2, 32, 3, 3)
    out = q(z)
    assert out.indices.max() < 128 and out.quantized.shape == z.shape
    assert torch.equal(q.indices_to_codes(out.indices), out.quantized)


@pytest.mark.parametrize("kwargs", [
    {"dim": 8, "codebook_size": 100},  # not a power of two
    {"dim": 8, "codebook_size": 2 ** 25},
    {"dim": 8, "codebook_size": 1},
    {"dim": 25},  # 2**25 codes without a codebook_size
    {"dim": 8, "entropy_weight": -0.1},
    {"dim": 8, "entropy_temperature": 0.0},
    {"dim": 8, "entropy_group_bits": 0},
    {"dim": 8, "entropy_group_bits": 17},
    {"dim": 8, "beta": float("nan")},
])
def test_bad_arguments_name_the_argument(kwargs: dict[str, object]) -> None:
    name = [k for k in kwargs if k != "dim"] or ["dim"]
    with pytest.raises(ValueError, match=name[0]):
        LookupFreeQuantizer(**kwargs)  # type: ignore[arg-type]


def test_bit_groups() -> None:
    assert bit_groups(18, 9) == [9, 9]
    assert bit_groups(17, 9) == [9, 8]
    assert bit_groups(19, 9) == [7, 6, 6]
    assert bit_groups(4, 9) == [4]
    assert bit_groups(5, 1) == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_entropies_match_brute_force_when_one_group_holds_every_bit(temperature: float) -> None:
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    per_sample, batch = entropy_terms(x, temperature, group_bits=6)
    want_per_sample, want_batch = brute_force_entropies(x, temperature)
    assert float(per_sample) == pytest.approx(float(want_per_sample), rel=1e-5)
    assert float(batch) == pytest.approx(float(want_batch), rel=1e-5)


def test_grouped_batch_entropy_is_the_sum_of_group_entropies_and_bounds_the_joint() -> None:
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    per_sample, grouped = entropy_terms(x, 1.0, group_bits=2)  # groups of bits (0, 1), (2, 3), (4, 5)
    group_sum = sum(float(brute_force_entropies(x[:, i:i + 2], 1.0)[1]) for i in (0, 2, 4))
    assert float(grouped) == pytest.approx(group_sum, rel=1e-5)
    _, joint = brute_force_entropies(x, 1.0)
    assert float(grouped) >= float(joint) - 1e-6
    assert float(per_sample) == pytest.approx(float(brute_force_entropies(x, 1.0)[0]), rel=1e-5)


def test_entropies_at_the_extremes_by_hand() -> None:
    # x = 0: every bit a fair coin, both entropies d ln 2, no penalty.
    per_sample, batch = entropy_terms(torch.zeros(5, 4), 0.01, group_bits=9)
    assert float(per_sample) == pytest.approx(4 * LN2) and float(batch) == pytest.approx(4 * LN2)
    # Two certain, opposite codes, each for half the batch: per sample 0; the batch uses two
    # codes, ln 2 exactly; split into 2 groups, each group also sees two patterns: 2 ln 2.
    x = torch.tensor([[3.0, 3.0, 3.0, 3.0]] * 3 + [[-3.0, -3.0, -3.0, -3.0]] * 3)
    per_sample, joint = entropy_terms(x, 0.01, group_bits=4)
    _, grouped = entropy_terms(x, 0.01, group_bits=2)
    assert float(per_sample) == pytest.approx(0.0, abs=1e-6)
    assert float(joint) == pytest.approx(LN2, rel=1e-6)
    assert float(grouped) == pytest.approx(2 * LN2, rel=1e-6)


def test_loss_is_the_weighted_penalty_plus_commitment() -> None:
    z = torch.randn(2, 6, 3, 3, generator=torch.Generator().manual_seed(2))
    q = LookupFreeQuantizer(dim=6, beta=0.5, entropy_weight=0.3, entropy_temperature=1.0)
    out = q(z)
    per_sample, batch = brute_force_entropies(z.permute(0, 2, 3, 1).reshape(-1, 6), 1.0)
    assert float(out.codebook_loss) == pytest.approx(0.3 * float(per_sample - batch), rel=1e-5)
    assert float(out.commitment_loss) == pytest.approx(float(F.mse_loss(z, z.sign())), rel=1e-6)
    assert torch.allclose(out.loss, out.codebook_loss + 0.5 * out.commitment_loss)
    off = LookupFreeQuantizer(dim=6, entropy_weight=0.0)(z)
    assert float(off.codebook_loss) == 0.0 and not off.codebook_loss.requires_grad


def test_entropy_penalty_spreads_a_collapsed_batch_over_codes() -> None:
    # Every cell starts near the same code; descending the penalty alone must spread them.
    g = torch.Generator().manual_seed(3)
    z = (1.0 + 0.3 * torch.randn(8, 4, 4, 4, generator=g)).requires_grad_()
    q = LookupFreeQuantizer(dim=4, entropy_weight=1.0, entropy_temperature=1.0)
    before = float(q(z).perplexity)
    optimizer = torch.optim.Adam([z], lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        q(z).codebook_loss.backward()
        optimizer.step()
    after = q(z)
    assert before < 2.0
    assert float(after.perplexity) > 8.0  # of 16 codes
    assert float(after.codebook_loss.detach()) < -2.0 * LN2  # the floor is -4 ln 2


def test_usage_is_tracked_in_training_only() -> None:
    q = LookupFreeQuantizer(dim=2)  # 4 codes
    z = cells([1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0])  # ids 3, 1, 3, 3
    q.eval()(z)
    assert torch.equal(q.usage, torch.full((4,), 0.25))
    q.train()(z)
    expected = torch.tensor([0.99 * 0.25, 0.99 * 0.25 + 0.01 * 0.25, 0.99 * 0.25, 0.99 * 0.25 + 0.01 * 0.75])
    torch.testing.assert_close(q.usage, expected)
    stats = q.usage_stats()
    assert stats["active_codes"] == 4.0
    assert stats["perplexity"] == pytest.approx(math.exp(float(torch.special.entr(expected).sum())), rel=1e-6)
    assert "usage" in q.state_dict() and "_powers" not in q.state_dict()


def test_eighteen_bits_quantize_and_round_trip() -> None:
    q = LookupFreeQuantizer(dim=18).eval()
    z = torch.randn(2, 18, 8, 8, generator=torch.Generator().manual_seed(4))
    out = q(z)
    assert q.codebook_size == 2 ** 18 and int(out.indices.max()) < 2 ** 18
    assert torch.equal(q.indices_to_codes(out.indices), out.quantized)
    assert torch.isfinite(out.loss)


def test_trains_inside_a_vqvae_and_gives_one_grid_for_a_prior() -> None:
    config = VQVAEConfig(channels=(8, 16), latent_dim=16, quantizer="lfq", quantizer_kwargs={"codebook_size": 64})
    model = VQVAE(config)
    out = model(torch.rand(2, 1, 28, 28))
    (F.mse_loss(out.reconstruction, torch.rand(2, 1, 28, 28)) + out.loss).backward()
    assert model.codebook_size == 64 and out.indices.shape == (2, 7, 7)
    assert model.quantizer.project_in.weight.grad is not None

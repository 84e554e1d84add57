"""Temperature, top-k, nucleus filtering and the categorical draw (discrete_latents._sampling)."""

from __future__ import annotations

import math

import pytest
import torch

from discrete_latents._sampling import check_sampling_args, draw_categorical, filter_logits, sample_logits

NEG_INF = float("-inf")


def test_check_sampling_args_accepts_valid_values() -> None:
    check_sampling_args(0, None, None, 1.0)
    check_sampling_args(0.7, 1, 1.0, 0.0)
    check_sampling_args(2, 10_000, 0.01, -1.5)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ((-1e-9, None, None, 1.0), "temperature"),
        ((math.nan, None, None, 1.0), "temperature"),
        ((math.inf, None, None, 1.0), "temperature"),
        (("1", None, None, 1.0), "temperature"),
        ((True, None, None, 1.0), "temperature"),
        ((1.0, 0, None, 1.0), "top_k"),
        ((1.0, 3.0, None, 1.0), "top_k"),
        ((1.0, True, None, 1.0), "top_k"),
        ((1.0, None, 0.0, 1.0), "top_p"),
        ((1.0, None, -0.1, 1.0), "top_p"),
        ((1.0, None, 1.0001, 1.0), "top_p"),
        ((1.0, None, math.nan, 1.0), "top_p"),
        ((1.0, None, None, math.inf), "guidance_scale"),
    ],
)
def test_check_sampling_args_names_the_bad_argument(args: tuple, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        check_sampling_args(*args)


def test_top_k_keeps_the_k_largest_and_clamps_above_k() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    kept = filter_logits(logits, top_k=2)
    assert torch.equal(torch.isfinite(kept), torch.tensor([[False, True, False, True]]))
    assert torch.equal(kept[torch.isfinite(kept)], torch.tensor([3.0, 2.0]))  # values untouched
    assert torch.equal(filter_logits(logits, top_k=4), logits)
    assert torch.equal(filter_logits(logits, top_k=1000), logits)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.6)).tolist() == [[True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True]]
    assert torch.isfinite(filter_logits(logits, top_p=1e-6)).tolist() == [[True, False, False]]  # top one stays
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)
    # Rows are independent, and order in the row does not matter.
    two = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]]).log()
    assert torch.isfinite(filter_logits(two, top_p=0.6)).tolist() == [[False, True, True], [True, True, False]]


def test_temperature_zero_is_argmax() -> None:
    logits = torch.randn(5, 11)
    assert torch.equal(sample_logits(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_logits(logits, temperature=0, top_k=3, top_p=0.1), logits.argmax(-1))


def test_draw_matches_the_distribution() -> None:
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    draws = draw_categorical(probs.expand(40_000, 4), torch.Generator().manual_seed(0))
    assert draws.dtype == torch.long and draws.shape == (40_000,)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[1] == 0  # never a zero-probability id
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)


def test_draw_accepts_unnormalised_rows_and_is_reproducible() -> None:
    weights = torch.tensor([[2.0, 0.0, 6.0], [0.0, 0.0, 5.0]])
    a = draw_categorical(weights.repeat(500, 1), torch.Generator().manual_seed(1))
    b = draw_categorical(weights.repeat(500, 1), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert set(a[0::2].tolist()) == {0, 2} and set(a[1::2].tolist()) == {2}


def test_draw_never_runs_past_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a uniform draw that rounds up to the total mass must land on an id with mass."""
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: real_rand(*args, **kwargs).fill_(1.0))
    probs = torch.tensor([[0.25, 0.75, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert draw_categorical(probs).tolist() == [1, 1]
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: real_rand(*args, **kwargs).fill_(0.0))
    assert draw_categorical(probs).tolist() == [0, 1]  # the first id with mass, not a zero-mass one


def test_sample_logits_respects_filters_and_temperature() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(4000, 4)
    g = torch.Generator().manual_seed(0)
    assert set(sample_logits(logits, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(sample_logits(logits, top_p=0.5, generator=g).tolist()) == {0}
    # A low temperature concentrates the mass on the argmax, a high one spreads it.
    cold = sample_logits(logits, temperature=0.1, generator=g)
    hot = sample_logits(logits, temperature=10.0, generator=g)
    assert (cold == 0).float().mean() > 0.99
    assert 0.17 < (hot == 3).float().mean() < 0.26  # p = 0.214
    # Same generator state, same draws; the filtered-out ids are never drawn.
    assert torch.equal(sample_logits(logits, generator=torch.Generator().manual_seed(5)),
                       sample_logits(logits, generator=torch.Generator().manual_seed(5)))
    masked = logits.clone()
    masked[:, 0] = NEG_INF
    assert 0 not in sample_logits(masked, generator=g).tolist()

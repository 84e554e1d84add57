"""Arguments at the edge (issue 17, class 5): extreme sampling settings, huge sample counts,
NumPy and 0-d tensor integers, images of any float precision."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import discrete_latents._checks as validation
import discrete_latents.priors.base as prior_base
from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig, VQVAEPipeline
from discrete_latents._checks import check_device, check_images, check_positive_int
from discrete_latents._sampling import check_sampling_args, filter_logits, sample_logits

K = 16
TINY_FLOAT = float(np.finfo(np.float32).smallest_subnormal)  # 1.4e-45: anything below rounds to 0 in float32


pytestmark = pytest.mark.usefixtures("one_thread")


def conditional_prior() -> CausalPrior:
    config = CausalPriorConfig(codebook_size=K, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16, num_classes=3,
                               label_dropout=0.1)
    return CausalPrior(config).eval()


# --- sampling never returns code K ------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1e-30, 1e-38, 1e-40, 1e-45, 1e-300, 5e-324])
def test_a_vanishing_temperature_is_greedy(temperature: float) -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, -1.0, 1.9999], [-3.0, -3.5, -2.0]])
    draws = torch.stack([sample_logits(logits, temperature=temperature) for _ in range(20)])
    assert (draws == torch.tensor([1, 0, 2])).all()  # argmaxes read off the rows


def test_a_vanishing_temperature_shares_exact_ties() -> None:
    """The limit of softmax(l / T) as T -> 0 spreads the mass evenly over the tied best codes."""
    logits = torch.tensor([[3.0, 0.0, 3.0, -1.0]]).expand(4000, 4)
    draws = sample_logits(logits, temperature=1e-40, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == counts[3] == 0 and 1800 < counts[0] < 2200


@pytest.mark.parametrize("top_p", [1e-46, TINY_FLOAT / 2, 5e-324, 1e-10])
def test_a_top_p_below_float32_resolution_keeps_the_best_code(top_p: float) -> None:
    logits = torch.tensor([[0.1, 0.9, 0.5, -2.0], [4.0, 0.0, 0.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, top_p=top_p)).tolist() == [[False, True, False, False],
                                                                          [True, False, False, False]]
    assert sample_logits(logits, top_p=top_p).tolist() == [1, 0]


def test_infinite_logits_keep_only_the_infinite_codes() -> None:
    inf = float("inf")
    logits = torch.tensor([[0.0, inf, 2.0, inf], [-inf, 1.0, -inf, 0.0]]).repeat(500, 1)
    draws = sample_logits(logits, temperature=0.7, generator=torch.Generator().manual_seed(1))
    assert set(draws[0::2].tolist()) == {1, 3} and set(draws[1::2].tolist()) == {1, 3}


@pytest.mark.parametrize("row", [[float("-inf")] * 4, [float("nan"), 0.0, 1.0, 2.0]])
def test_a_row_without_any_probable_code_is_refused(row: list[float]) -> None:
    with pytest.raises(ValueError, match="logits: every row needs a logit above -inf"):
        sample_logits(torch.tensor([[0.0, 1.0, 2.0, 3.0], row]))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(st.floats(-1e4, 1e4, width=32), min_size=K, max_size=K), min_size=1, max_size=4),
       temperature=st.one_of(st.floats(5e-324, 1e-30), st.floats(1e-30, 1e30)),
       top_k=st.one_of(st.none(), st.integers(1, 2 * K)),
       top_p=st.one_of(st.none(), st.floats(5e-324, 1.0, exclude_min=False)))
def test_any_accepted_setting_draws_a_code_in_range(rows: list[list[float]], temperature: float, top_k: int | None,
                                                    top_p: float | None) -> None:
    check_sampling_args(temperature, top_k, top_p, 1.0)
    draws = sample_logits(torch.tensor(rows), temperature, top_k, top_p, torch.Generator().manual_seed(0))
    assert ((draws >= 0) & (draws < K)).all()


@pytest.mark.parametrize("scale", [1e30, 1e38, 1e300, 1.7e308, -1e300, -1.7e308])
@pytest.mark.parametrize("temperature", [0.0, 1.0, 1e-40])
def test_a_huge_guidance_scale_draws_codes_in_range(scale: float, temperature: float) -> None:
    prior = conditional_prior()
    with torch.no_grad():  # wide logits (the head is tied to the embedding), so s * (c - u) overflows float32
        prior.wte.weight.mul_(50)
    codes = prior.sample(6, labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance_scale=scale, temperature=temperature,
                         generator=torch.Generator().manual_seed(0))
    assert codes.shape == (6, 3, 3) and int(codes.min()) >= 0 and int(codes.max()) < K


@pytest.mark.parametrize("shift", [0.0, -10.0, 10.0])
@pytest.mark.parametrize("scale", [1e39, 1.7e308, -1.7e308])
def test_a_huge_scale_where_the_label_changes_no_probability(scale: float, shift: float,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """c = u + shift is u's distribution. On raw logits, s * (c - u) would be NaN (inf * 0) or -inf
    for every code (s * -10): no code left to draw."""
    prior = conditional_prior()
    u = torch.randn(1, K)
    rows = torch.cat([u + shift, u])  # the conditional row, then the unconditional one

    monkeypatch.setattr(prior, "_next_logits", lambda codes, position, cond, state: rows)
    codes = prior.sample(1, labels=torch.tensor([1]), guidance_scale=scale, temperature=0 if shift == 0 else 1,
                         generator=torch.Generator().manual_seed(0))
    if shift == 0:
        assert (codes == u.argmax()).all()  # c - u is exactly 0: the codes are u's
    else:  # rounding leaves c - u near 0, not at it, and s amplifies that noise: any code in range
        assert int(codes.min()) >= 0 and int(codes.max()) < K


def test_guidance_on_log_probabilities_is_the_same_distribution() -> None:
    """Normalising c and u first shifts each row by a constant: greedy codes are those of u + s (c - u)."""
    prior = conditional_prior()
    labels = torch.tensor([0, 1, 2])
    out = torch.zeros(3, 3, 3, dtype=torch.long)
    with torch.no_grad():
        for p in range(9):
            i, j = divmod(p, 3)
            c, u = prior(out, labels).logits[:, i, j], prior(out).logits[:, i, j]
            out[:, i, j] = (u + 3.0 * (c - u)).argmax(-1)
    assert torch.equal(prior.sample(3, temperature=0, labels=labels, guidance_scale=3.0), out)


# --- generate(10**9): refused before memory is spent -------------------------------------------
@pytest.fixture(scope="module")
def pipe() -> VQVAEPipeline:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": K}))
    prior = CausalPrior(CausalPriorConfig(codebook_size=K, n_layer=1, n_head=2, n_embd=16))
    return VQVAEPipeline(vqvae=vqvae, prior=prior)


def test_generate_a_billion_fails_early_with_a_message(pipe: VQVAEPipeline) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^num_samples: 1000000000 code grids of 7x7 need 392 GB, more than the"):
        pipe.generate(10**9)
    assert time.perf_counter() - start < 30  # generous: refused before any work, not after minutes of it


def test_the_bound_is_the_memory_free_now(pipe: VQVAEPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "available_memory", lambda device: 1000)  # bytes
    assert pipe.prior.sample(2).shape == (2, 7, 7)  # 2 x 49 codes x 8 bytes = 784
    with pytest.raises(ValueError, match="num_samples: 3 code grids of 7x7 need 1.18e-06 GB"):
        pipe.prior.sample(3)  # 1176 bytes
    monkeypatch.setattr(validation, "available_memory", lambda device: None)  # unknown: not checked
    assert pipe.prior.sample(3).shape == (3, 7, 7)


def test_sampling_runs_in_bounded_chunks(pipe: VQVAEPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    prior = pipe.prior
    greedy = prior.sample(7, temperature=0)
    batches: list[int] = []
    real_start = prior._start_sampling

    def record(batch: int, cond: object, use_cache: bool) -> object:
        batches.append(batch)
        return real_start(batch, cond, use_cache)  # type: ignore[arg-type]

    monkeypatch.setattr(prior_base, "SAMPLE_CHUNK", 3)
    monkeypatch.setattr(prior, "_start_sampling", record)
    assert torch.equal(prior.sample(7, temperature=0), greedy)  # greedy codes do not depend on the chunking
    assert batches == [3, 3, 1]
    drawn = prior.sample(7, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (7, 7, 7) and int(drawn.max()) < K


def test_chunks_with_guidance_keep_each_row_with_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    prior = conditional_prior()
    labels = torch.tensor([2, 0, 1, 1, 0])
    whole = prior.sample(5, temperature=0, labels=labels, guidance_scale=2.0)
    monkeypatch.setattr(prior_base, "SAMPLE_CHUNK", 2)
    assert torch.equal(prior.sample(5, temperature=0, labels=labels, guidance_scale=2.0), whole)


# --- integers of other types --------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.int64(2), np.int32(2), np.uint8(2), torch.tensor(2),
                                   torch.tensor(2, dtype=torch.int32), torch.tensor(2, dtype=torch.uint8), 2])
def test_numpy_and_0d_tensor_integers_are_positive_integers(value: object) -> None:
    result = check_positive_int(value, "num_samples")
    assert result == 2 and type(result) is int


@pytest.mark.parametrize("value", [np.int64(0), torch.tensor(-1), torch.tensor(2.0), torch.tensor([2]),
                                   torch.tensor(True), np.float64(2.0), np.bool_(True), True, 2.0, "2", None])
def test_other_values_are_not_positive_integers(value: object) -> None:
    with pytest.raises(ValueError, match="^num_samples: expected a positive integer, got"):
        check_positive_int(value, "num_samples")


def test_generate_and_sample_take_numpy_and_tensor_counts(pipe: VQVAEPipeline) -> None:
    assert pipe.generate(np.int64(2)).shape == (2, 1, 28, 28)
    assert pipe.prior.sample(torch.tensor(3)).shape == (3, 7, 7)
    drawn = pipe.prior.sample(2, top_k=np.int64(3), temperature=np.float32(0.5), top_p=np.float64(0.9))
    assert drawn.shape == (2, 7, 7)


# --- images of another float precision ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_another_precision_are_converted(pipe: VQVAEPipeline, dtype: torch.dtype) -> None:
    images = torch.rand(2, 1, 28, 28).to(dtype)
    as_float32 = images.float()  # the same values, exactly representable in float32
    vqvae = pipe.vqvae.eval()
    assert torch.equal(vqvae.encode(images), vqvae.encode(as_float32))
    assert torch.equal(vqvae(images).reconstruction, vqvae(as_float32).reconstruction)
    assert torch.equal(pipe.reconstruct(images), pipe.reconstruct(as_float32))


def test_check_images_converts_only_when_asked() -> None:
    images = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    assert check_images(images, 1).dtype == torch.float64
    assert check_images(images, 1, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64])
def test_images_of_other_kinds_are_refused_by_dtype(pipe: VQVAEPipeline, dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"images: expected a float tensor .* got dtype {dtype}"):
        pipe.vqvae(torch.zeros(1, 1, 28, 28, dtype=dtype))


def test_a_bfloat16_model_takes_float32_images() -> None:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": K})).eval()
    images = torch.rand(2, 1, 28, 28)
    expected = vqvae.to(torch.bfloat16).encode(images.to(torch.bfloat16))
    assert torch.equal(vqvae.encode(images), expected)


# --- devices --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [("garbage", "is not a device"), ("", "is not a device"),
                                           ("cuda:-1", "is not a device"), (None, "is not a device")])
def test_device_strings_that_name_no_device(name: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^device: .*{message}"):
        check_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3", torch.device("cuda")])
def test_cuda_without_cuda_is_named(name: object) -> None:
    with pytest.raises(ValueError, match="needs CUDA, which this torch .* cannot use"):
        check_device(name)


def test_existing_devices_pass() -> None:
    assert check_device("cpu") == torch.device("cpu") and check_device(torch.device("cpu")).type == "cpu"

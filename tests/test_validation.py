"""Public entry points with bad input: a clear TypeError/ValueError before any kernel runs.

Covers the input side of VQ-01..VQ-05 for the VQ-VAE (forward, encode, reconstruct,
decode), the prior's index and label checks, and the helpers in ``_checks.py``.
Non-finite input raises :class:`NonFiniteError` (a ``FloatingPointError``, as documented).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig
from discrete_latents._checks import check_finite, check_images, check_indices, check_labels, check_positive_int
from discrete_latents.errors import NonFiniteError

SRC = Path(__file__).resolve().parents[1] / "src" / "discrete_latents"


@pytest.fixture
def model(tiny_vqvae_config: VQVAEConfig) -> VQVAE:
    return VQVAE(tiny_vqvae_config)


@pytest.fixture
def ema_model() -> VQVAE:
    config = VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="vq_ema", quantizer_kwargs={"codebook_size": 16})
    return VQVAE(config).train()


ENTRY_POINTS = ["forward", "encode", "reconstruct"]


def call(model: VQVAE, method: str, images: object):
    return model(images) if method == "forward" else getattr(model, method)(images)


# images -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ENTRY_POINTS)
@pytest.mark.parametrize("images, error, fragment", [
    (torch.rand(1, 28, 28), ValueError, r"expected shape \(B, 1, 28, 28\), got \(1, 28, 28\)"),
    (torch.rand(28, 28), ValueError, r"expected shape \(B, 1, 28, 28\)"),
    (torch.rand(2, 1, 1, 28, 28), ValueError, r"expected shape \(B, 1, 28, 28\)"),
    (torch.rand(2, 3, 28, 28), ValueError, r"expected 1 channel\(s\).*got \(2, 3, 28, 28\)"),
    (torch.rand(2, 28, 28, 1), ValueError, r"expected 1 channel\(s\)"),
    (torch.rand(2, 1, 32, 32), ValueError, r"expected 28x28 images.*got \(2, 1, 32, 32\)"),
    (torch.rand(2, 1, 28, 14), ValueError, "expected 28x28 images"),
    (torch.rand(0, 1, 28, 28), ValueError, "the batch is empty"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.int64), TypeError, "expected a float tensor"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.bool), TypeError, "expected a float tensor"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.complex64), TypeError, "expected a float tensor"),
    ([[0.0] * 28] * 28, TypeError, r"expected a torch.Tensor of shape \(B, 1, H, W\), got list"),
    (None, TypeError, "got NoneType"),
])
def test_bad_images(model: VQVAE, method: str, images: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment) as info:
        call(model, method, images)
    assert str(info.value).startswith("images:")


def test_forward_refuses_uint8_images(model: VQVAE) -> None:
    """Training takes floats; encode and reconstruct read uint8 as x / 255 (tested below)."""
    with pytest.raises(TypeError, match=r"images: .*float tensor.*torch.uint8.*/ 255"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_decode_in_batches_gives_the_same_images(model: VQVAE) -> None:
    codes = torch.randint(0, 16, (5, 7, 7), generator=torch.Generator().manual_seed(0))
    whole = model.eval().decode(codes)
    assert whole.shape == (5, 1, 28, 28)
    torch.testing.assert_close(model.decode(codes, batch_size=2), whole, rtol=0, atol=1e-6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
            model.decode(codes, batch_size=bad)  # type: ignore[arg-type]


def test_encode_reads_uint8_images_as_a_255th(model: VQVAE) -> None:
    pixels = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(model.encode(pixels), model.encode(pixels.float() / 255))
    assert torch.equal(model.encode(pixels, batch_size=2), model.encode(pixels.float() / 255))


@pytest.mark.parametrize("method", ENTRY_POINTS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_images(model: VQVAE, method: str, value: float) -> None:
    images = torch.rand(2, 1, 28, 28)
    images[1, 0, 3, 4] = value
    with pytest.raises(NonFiniteError, match="images: holds NaN or infinite values"):
        call(model, method, images)


def test_vq01_bad_input_leaves_codebook_and_ema_buffers_unchanged(ema_model: VQVAE) -> None:
    ema_model(torch.rand(4, 1, 28, 28))  # a normal step first, so the buffers are live
    before = {k: v.clone() for k, v in ema_model.state_dict().items()}
    bad = torch.rand(4, 1, 28, 28)
    bad[0, 0, 0, 0] = float("nan")
    for images in (bad, torch.rand(0, 1, 28, 28), torch.rand(4, 3, 28, 28)):
        with pytest.raises((ValueError, NonFiniteError)):
            ema_model(images)
    after = ema_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_other_image_sizes_follow_the_config() -> None:
    model = VQVAE(VQVAEConfig(in_channels=3, image_size=32, channels=(8, 16), latent_dim=4,
                              quantizer_kwargs={"codebook_size": 8}))
    assert model.encode(torch.rand(2, 3, 32, 32)).shape == (2, 8, 8)
    with pytest.raises(ValueError, match=r"expected 3 channel\(s\), shape \(B, 3, 32, 32\)"):
        model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="expected 32x32 images"):
        model.encode(torch.rand(2, 3, 28, 28))


def test_valid_inputs_pass(model: VQVAE) -> None:
    """Control: the same calls with good input work, so the errors above come from the checks."""
    images = torch.rand(2, 1, 28, 28)
    assert model(images).reconstruction.shape == images.shape
    assert model.encode(images).shape == (2, 7, 7)
    assert model.reconstruct(images.double().float()).shape == images.shape
    assert model.decode(torch.randint(0, 16, (2, 7, 7))).shape == images.shape
    assert model.decode(torch.randint(0, 16, (2, 7, 7), dtype=torch.int32)).shape == images.shape


# indices --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("indices, error, fragment", [
    (torch.full((2, 7, 7), 16), ValueError, r"code ids must lie in \[0, 16\), got values in \[16, 16\]"),
    (torch.full((2, 7, 7), 10**6), ValueError, r"must lie in \[0, 16\)"),
    (torch.full((2, 7, 7), -1), ValueError, r"got values in \[-1, -1\]"),
    (torch.tensor([[[0, 1], [2, -5]]]), ValueError, r"expected a 7x7 grid.*got \(1, 2, 2\)"),
    (torch.arange(49).reshape(1, 7, 7) % 3 - 1, ValueError, r"got values in \[-1, 1\]"),
    (torch.zeros(2, 7, 7), TypeError, "expected an integer tensor of code ids, got dtype torch.float32"),
    (torch.zeros(2, 7, 7, dtype=torch.float16), TypeError, "integer tensor"),
    (torch.zeros(2, 7, 7, dtype=torch.bool), TypeError, "integer tensor"),
    (torch.zeros(2, 49, dtype=torch.long), ValueError, r"expected shape \(B, 7, 7\) with B >= 1, got \(2, 49\)"),
    (torch.zeros(2, 7, 7, 1, dtype=torch.long), ValueError, "expected shape"),
    (torch.zeros(0, 7, 7, dtype=torch.long), ValueError, "B >= 1"),
    (torch.zeros(2, 0, 7, dtype=torch.long), ValueError, "expected a 7x7 grid"),
    ([[0, 1], [2, 3]], TypeError, "expected a torch.Tensor of int64 code ids, got list"),
])
def test_bad_indices_fail_before_any_lookup(model: VQVAE, monkeypatch, indices: object,
                                            error: type[Exception], fragment: str) -> None:
    import torch.nn.functional as F

    def no_lookup(*args, **kwargs):
        raise AssertionError("a code lookup ran before the indices were checked")

    monkeypatch.setattr(F, "embedding", no_lookup)
    with pytest.raises(error, match=fragment) as info:
        model.decode(indices)
    assert str(info.value).startswith("indices:")


def test_check_indices_with_grid_and_trailing_axes() -> None:
    good = torch.zeros(2, 3, 4, 2, dtype=torch.long)
    assert check_indices(good, 4, (3, 4), trailing=(2,)).dtype == torch.long
    with pytest.raises(ValueError, match=r"expected a 3x4 grid"):
        check_indices(torch.zeros(2, 4, 3, 2, dtype=torch.long), 4, (3, 4), trailing=(2,))
    with pytest.raises(ValueError, match=r"expected shape \(B, 3, 4, 2\)"):
        check_indices(torch.zeros(2, 3, 4, 3, dtype=torch.long), 4, (3, 4), trailing=(2,))
    assert check_indices(torch.zeros(1, 1, 1, dtype=torch.uint8), 2).dtype == torch.long


# the prior's inputs -----------------------------------------------------------------------------------------
@pytest.fixture
def prior() -> CausalPrior:
    return CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16,
                                         num_classes=4))


@pytest.mark.parametrize("indices, labels, error, fragment", [
    (torch.zeros(2, 3, 4, dtype=torch.long), [0, 1], ValueError, "expected a 3x3 grid"),
    (torch.full((2, 3, 3), 16), [0, 1], ValueError, r"\[0, 16\)"),
    (torch.zeros(2, 3, 3), [0, 1], TypeError, "integer tensor"),
    (torch.zeros(2, 3, 3, dtype=torch.long), [0, 4], ValueError, r"class ids must lie in \[0, 4\)"),
    (torch.zeros(2, 3, 3, dtype=torch.long), [0, -1], ValueError, r"\[0, 4\)"),
    (torch.zeros(2, 3, 3, dtype=torch.long), [0], ValueError, "expected 2 labels, got 1"),
    (torch.zeros(2, 3, 3, dtype=torch.long), [0.0, 1.0], TypeError, "1-D integer tensor"),
    (torch.zeros(2, 3, 3, dtype=torch.long), ["a", "b"], TypeError, "labels"),
    (torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), TypeError, "1-D"),
    (torch.zeros(2, 3, 3, dtype=torch.long), "0", TypeError, "labels"),
])
def test_bad_prior_inputs(prior: CausalPrior, indices, labels, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        prior(indices, labels)


def test_unconditional_prior_refuses_labels() -> None:
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="unconditional"):
        prior(torch.zeros(2, 3, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))


# helpers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, True, 1.0, "3", None])
def test_check_positive_int(value: object) -> None:
    with pytest.raises(ValueError, match="expected a positive integer"):
        check_positive_int(value, "num_samples")
    assert check_positive_int(3, "num_samples") == 3


def test_check_labels_accepts_ints_and_sequences() -> None:
    assert check_labels(2, 4).tolist() == [2]
    assert check_labels((1, 3), 4).tolist() == [1, 3]
    with pytest.raises(TypeError, match="got NoneType"):
        check_labels(None, 4)


def test_check_images_without_a_size_and_check_finite() -> None:
    assert check_images(torch.rand(1, 2, 5, 7), 2).shape == (1, 2, 5, 7)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        check_images(torch.rand(1, 5, 7), 2)
    check_finite(torch.ones(3), "x")
    with pytest.raises(NonFiniteError, match="x: holds NaN"):
        check_finite(torch.tensor([1.0, float("nan")]), "x")
    assert isinstance(NonFiniteError("x"), FloatingPointError)


def test_no_assert_statements_in_the_library() -> None:
    """Checks must survive ``python -O``: the library raises documented errors, never ``assert``."""
    files = sorted(SRC.rglob("*.py"))
    assert SRC / "_checks.py" in files
    offenders = [f"{path.relative_to(SRC)}:{node.lineno}" for path in files
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Assert)]
    assert offenders == []

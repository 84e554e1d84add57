"""Inpainting with any prior: pixel mask -> code mask, kept codes untouched, bad masks refused, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_latents import PRIORS, VQVAE, BasePrior, MaskedPrior, MaskedPriorConfig, VQVAEConfig, VQVAEPipeline
from discrete_latents._editing import check_pixel_mask, code_mask
from discrete_latents.cli import main

K = 16
TINY = {"causal_transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "masked_transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "pixelcnn": {"hidden_channels": 8, "n_layer": 1}}
NAMES = PRIORS.names()


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_prior(name: str, num_classes: int = 3, **overrides: object) -> BasePrior:
    cls = PRIORS.get(name)
    config = cls.config_class(codebook_size=K, grid_size=(7, 7), num_classes=num_classes,
                              **{**TINY.get(name, {}), **overrides})
    prior = cls(config).eval()
    with torch.no_grad():  # away from the near-uniform init, so contexts matter
        for param in prior.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return prior


def tiny_pipe(name: str, **overrides: object) -> VQVAEPipeline:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": K}))
    return VQVAEPipeline(vqvae, tiny_prior(name, **overrides)).eval()


def bottom_rows(batch: int, rows: int = 12) -> torch.Tensor:
    mask = torch.zeros(batch, 1, 28, 28, dtype=torch.bool)
    mask[:, :, 28 - rows:] = True
    return mask


# --- pixel mask -> code mask ---------------------------------------------------------------------
def test_a_code_is_redrawn_where_any_pixel_of_its_footprint_is() -> None:
    mask = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    mask[0, :, 16:] = True  # rows 16-27: code rows 4-6 exactly
    mask[1, :, 15, 27] = True  # one pixel: row 15 is in code row 3 (pixels 12-15), column 27 in code column 6
    mask[2, :, 4:8, 0:5] = True  # pixels 4-7 x 0-4: code row 1, code columns 0 and 1
    codes = code_mask(mask, (7, 7))
    assert codes.shape == (3, 7, 7) and codes.dtype == torch.bool
    assert codes[0].nonzero()[:, 0].unique().tolist() == [4, 5, 6] and int(codes[0].sum()) == 21
    assert codes[1].nonzero().tolist() == [[3, 6]]
    assert codes[2].nonzero().tolist() == [[1, 0], [1, 1]]


def test_masks_of_numbers_0_and_1_are_accepted() -> None:
    as_bool = bottom_rows(2)
    for mask in (as_bool.float(), as_bool.long(), as_bool.to(torch.uint8)):
        assert torch.equal(check_pixel_mask(mask, 2, (28, 28)), as_bool)


@pytest.mark.parametrize(("mask", "error", "message"), [
    (np.ones((1, 1, 28, 28), dtype=bool), TypeError, "mask: expected a torch.Tensor"),
    (torch.ones(1, 28, 28, dtype=torch.bool), ValueError, r"mask: expected shape \(B, 1, H, W\)"),
    (torch.ones(2, 1, 28, 28, dtype=torch.bool), ValueError, r"mask: expected shape.*\(1, 1, 28, 28\)"),
    (torch.ones(1, 1, 14, 14, dtype=torch.bool), ValueError, "mask: expected shape"),
    (torch.full((1, 1, 28, 28), 0.5), ValueError, "only the values 0 and 1"),
    (torch.full((1, 1, 28, 28), 2), ValueError, "only the values 0 and 1"),
    (torch.zeros(1, 1, 28, 28, dtype=torch.bool), ValueError, r"nothing to redraw in image\(s\) \[0\]"),
])
def test_bad_masks_are_refused(mask: object, error: type[Exception], message: str) -> None:
    pipe = tiny_pipe("masked_transformer")
    with pytest.raises(error, match=message):
        pipe.inpaint(torch.rand(1, 1, 28, 28), mask)  # type: ignore[arg-type]


def test_an_image_with_nothing_to_redraw_is_named() -> None:
    mask = bottom_rows(3)
    mask[1] = False
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        tiny_pipe("causal_transformer").inpaint(torch.rand(3, 1, 28, 28), mask)


# --- kept codes, every prior -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_kept_codes_never_change(name: str) -> None:
    pipe = tiny_pipe(name)
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.02  # scattered pixels
    codes = pipe.encode(images)
    redraw = code_mask(mask, (7, 7))
    assert 0 < int(redraw.sum()) < redraw.numel()
    filled = pipe.prior.fill(codes, redraw, generator=torch.Generator().manual_seed(2))
    assert torch.equal(filled[~redraw], codes[~redraw])  # exactly
    assert filled.shape == codes.shape and int(filled.max()) < K
    # The pipeline decodes exactly that grid.
    images_out = pipe.inpaint(images, mask, generator=torch.Generator().manual_seed(2))
    assert torch.equal(images_out, pipe.decode(filled))


@pytest.mark.parametrize("name", NAMES)
def test_a_mask_covering_everything_is_plain_generation(name: str) -> None:
    pipe = tiny_pipe(name)
    labels = torch.tensor([0, 2, 1])
    everything = torch.ones(3, 1, 28, 28, dtype=torch.bool)
    inpainted = pipe.inpaint(torch.rand(3, 1, 28, 28), everything, labels=labels,
                             generator=torch.Generator().manual_seed(4))
    assert torch.equal(inpainted, pipe.generate(3, labels=labels, generator=torch.Generator().manual_seed(4)))
    # No labels: the "no label" mode, which plain generation reaches with guidance 0.
    no_label = pipe.inpaint(torch.rand(3, 1, 28, 28), everything, generator=torch.Generator().manual_seed(5))
    assert torch.equal(no_label, pipe.generate(3, guidance_scale=0.0, generator=torch.Generator().manual_seed(5)))


def raster_greedy_reference(prior: BasePrior, codes: torch.Tensor, redraw: torch.Tensor,
                            labels: torch.Tensor | None) -> torch.Tensor:
    """Greedy raster redraw with full forward passes: position p takes the argmax given the codes before it."""
    out = codes.clone()
    with torch.no_grad():
        for p in range(49):
            i, j = divmod(p, 7)
            best = prior(out, labels).logits[:, i, j].argmax(-1)
            out[:, i, j] = torch.where(redraw[:, i, j], best, out[:, i, j])
    return out


@pytest.mark.parametrize("name", [n for n in NAMES if PRIORS.get(n).raster_order])
def test_raster_priors_condition_on_the_codes_before_each_position(name: str) -> None:
    prior = tiny_prior(name)
    codes = torch.randint(0, K, (3, 7, 7), generator=torch.Generator().manual_seed(0))
    redraw = code_mask(bottom_rows(3), (7, 7))
    redraw[2, 1, 3] = True  # and one code in the middle: later kept codes are forced, not seen
    expected = raster_greedy_reference(prior, codes, redraw, None)
    assert torch.equal(prior.fill(codes, redraw, temperature=0), expected)
    assert torch.equal(prior.fill(codes, redraw, temperature=0, use_cache=False), expected)


def greedy_reference(prior: BasePrior, codes: torch.Tensor, redraw: torch.Tensor,
                     labels: torch.Tensor | None) -> torch.Tensor:
    """What greedy filling must give: raster order, or all hidden codes in one step for a masked prior."""
    if prior.raster_order:
        return raster_greedy_reference(prior, codes, redraw, labels)
    with torch.no_grad():
        best = prior(codes, labels, mask=redraw).logits.argmax(-1)  # type: ignore[call-arg]
    return torch.where(redraw, best, codes)


@pytest.mark.parametrize("name", [n for n in NAMES if n in TINY])
def test_without_labels_no_class_is_drawn(name: str) -> None:
    """Sampling without labels draws a class; inpainting must not (it could contradict the kept codes)."""
    prior = tiny_prior(name, class_frequencies=(0.0, 1.0, 0.0))  # a drawn class would always be 1
    codes = torch.randint(0, K, (2, 7, 7), generator=torch.Generator().manual_seed(0))
    redraw = code_mask(bottom_rows(2), (7, 7))
    one_step = {} if prior.raster_order else {"steps": 1}
    no_label = prior.fill(codes, redraw, temperature=0, **one_step)  # type: ignore[arg-type]
    assert torch.equal(no_label, greedy_reference(prior, codes, redraw, None))
    ones = torch.tensor([1, 1])
    class_one = prior.fill(codes, redraw, temperature=0, labels=ones, **one_step)  # type: ignore[arg-type]
    assert torch.equal(class_one, greedy_reference(prior, codes, redraw, ones))
    with torch.no_grad():  # the two modes differ, so the check above can tell them apart
        assert float((prior(codes, ones).logits - prior(codes).logits).abs().max()) > 1e-3
    # A prior that never learnt "no label" needs labels, clearly.
    with pytest.raises(ValueError, match="labels: .*without label dropout"):
        tiny_prior(name, label_dropout=0.0).fill(codes, redraw)


def test_steps_reach_a_masked_prior_and_are_refused_for_a_causal_one() -> None:
    masked, causal = tiny_pipe("masked_transformer"), tiny_pipe("causal_transformer")
    images, mask = torch.rand(2, 1, 28, 28), bottom_rows(2)
    one = masked.inpaint(images, mask, steps=1, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(one, masked.inpaint(images, mask, steps=21, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(masked.generate(2, steps=3, generator=torch.Generator().manual_seed(1)),
                       masked.generate(2, steps=3, generator=torch.Generator().manual_seed(1)))
    for call in (lambda: causal.generate(2, steps=8), lambda: causal.inpaint(images, mask, steps=8)):
        with pytest.raises(ValueError, match="steps: the 'causal_transformer' prior draws one code per step"):
            call()


def test_a_prior_that_cannot_condition_says_so() -> None:
    class ParallelOnly(MaskedPrior):  # not raster order, and no fill of its own
        def fill(self, *args: object, **kwargs: object) -> torch.Tensor:
            return BasePrior.fill(self, *args, **kwargs)  # type: ignore[arg-type]

    pipe = VQVAEPipeline(tiny_pipe("causal_transformer").vqvae,
                         ParallelOnly(MaskedPriorConfig(codebook_size=K, n_layer=1, n_head=2, n_embd=16)))
    with pytest.raises(NotImplementedError, match="ParallelOnly cannot redraw part of a grid"):
        pipe.inpaint(torch.rand(1, 1, 28, 28), bottom_rows(1))


# --- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inpaint") / "pipe"
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": K}))
    prior = MaskedPrior(MaskedPriorConfig(codebook_size=K, n_layer=1, n_head=2, n_embd=16, num_classes=10))
    VQVAEPipeline(vqvae, prior).save_pretrained(folder)
    return folder


def test_cli_inpaints_image_files_with_a_rectangle_or_a_mask_file(saved_pipeline: Path, tmp_path: Path) -> None:
    digit = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(digit)
    out = tmp_path / "grid.png"
    assert main(["inpaint", "--pipeline", str(saved_pipeline), "--image", str(digit), str(digit),
                 "--rect", "16", "0", "12", "28", "--num-completions", "3", "--steps", "4", "--out", str(out)]) == 0
    with Image.open(out) as grid:  # 2 rows of original, masked input and 3 completions
        assert grid.size == (5 * 28 + 6 * 2, 2 * 28 + 3 * 2)
    mask_file = tmp_path / "mask.png"
    mask = np.zeros((28, 28), dtype=np.uint8)
    mask[:, 20:] = 255
    Image.fromarray(mask, mode="L").save(mask_file)
    again = tmp_path / "again.png"
    assert main(["inpaint", "--pipeline", str(saved_pipeline), "--image", str(digit), "--mask", str(mask_file),
                 "--num-completions", "2", "--label", "3", "--guidance-scale", "2", "--out", str(again)]) == 0
    with Image.open(again) as grid:
        pixels = np.asarray(grid)
    assert grid.size == (4 * 28 + 5 * 2, 28 + 2 * 2)
    masked_input = pixels[2:30, 32:60]  # the second tile: the image with the region shown gray
    assert (masked_input[:, 20:] == 128).all() and not (masked_input[:, :20] == 128).all()


MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason="the real MNIST files are not next to this checkout")
def test_cli_inpaints_test_set_digits(saved_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["inpaint", "--pipeline", str(saved_pipeline), "--index", "0", "7", "--data-dir", str(MNIST),
                 "--rect", "16", "0", "12", "28", "--num-completions", "2", "--out", str(out)]) == 0
    with Image.open(out) as grid:
        assert grid.size == (4 * 28 + 5 * 2, 2 * 28 + 3 * 2)


@pytest.mark.parametrize(("args", "message"), [
    (["--rect", "20", "0", "12", "28"], "--rect: expected TOP LEFT HEIGHT WIDTH"),
    (["--rect", "0", "0", "0", "5"], "--rect"),
    (["--rect", "16", "0", "12", "28", "--num-completions", "0"], "--num-completions"),
])
def test_cli_bad_regions_exit_with_a_message(saved_pipeline: Path, tmp_path: Path, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    digit = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), mode="L").save(digit)
    assert main(["inpaint", "--pipeline", str(saved_pipeline), "--image", str(digit), *args,
                 "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_an_image_of_the_wrong_size(saved_pipeline: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8), mode="L").save(big)
    assert main(["inpaint", "--pipeline", str(saved_pipeline), "--image", str(big), "--rect", "0", "0", "4", "4",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "expected a 28x28 image" in capsys.readouterr().err

"""The masked prior (MaskGIT): mask schedule, masked-only loss, parallel decoding, likelihood, training."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from discrete_latents import PRIORS, MaskedPrior, MaskedPriorConfig, VQVAEPipeline, pretrained_path
from discrete_latents._presets import prior_preset
from discrete_latents._safetensors import read_safetensors
from discrete_latents.datasets import load_mnist
from discrete_latents.priors import build_prior
from discrete_latents.priors.masked_prior import (
    cosine_schedule,
    masked_cross_entropy,
    random_box_mask,
    random_mask,
)
from discrete_latents.training import TrainConfig, Trainer
from discrete_latents.training.evaluate import evaluate_prior

K = 16
GRID = (4, 5)
L = GRID[0] * GRID[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_prior(num_classes: int = 0, **overrides: object) -> MaskedPrior:
    config = MaskedPriorConfig(codebook_size=K, grid_size=GRID, n_layer=2, n_head=2, n_embd=16,
                               num_classes=num_classes, **overrides)  # type: ignore[arg-type]
    return MaskedPrior(config).eval()


def codes(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (batch, *GRID), generator=torch.Generator().manual_seed(seed))


def all_hidden(batch: int) -> torch.Tensor:
    return torch.ones(batch, *GRID, dtype=torch.bool)


def test_registered_with_a_preset() -> None:
    assert PRIORS.get("masked_transformer") is MaskedPrior
    assert not MaskedPrior.raster_order and not MaskedPrior.exact_likelihood
    prior = build_prior(prior_preset("mnist_masked"))
    assert type(prior) is MaskedPrior and prior.num_codes == 49 and prior.codebook_size == 100
    assert prior.num_classes == 10 and prior.config.label_dropout > 0


# --- mask schedule and loss ---------------------------------------------------------------------
def test_cosine_schedule_values() -> None:
    r = torch.tensor([0.0, 1 / 3, 0.5, 2 / 3, 1.0])
    expected = torch.tensor([1.0, math.sqrt(3) / 2, math.sqrt(2) / 2, 0.5, 0.0])  # cos(pi r / 2) by hand
    torch.testing.assert_close(cosine_schedule(r), expected, atol=1e-6, rtol=0)


def test_random_mask_follows_the_schedule() -> None:
    mask = random_mask(40_000, 100, generator=torch.Generator().manual_seed(0))
    counts = mask.sum(1)
    assert mask.dtype == torch.bool and int(counts.min()) >= 1 and int(counts.max()) <= 100
    # E[ceil(100 cos(pi r / 2))] / 100 = 2 / pi (the integral of the schedule) + about 0.5 / 100.
    assert abs(float(counts.double().mean()) / 100 - (2 / math.pi + 0.005)) < 0.005
    # Half the draws have r < 0.5, so hide more than 100 cos(pi / 4) = 70.7 codes.
    assert abs(float((counts > 70.7).double().mean()) - 0.5) < 0.01
    # Every position is hidden equally often.
    per_position = mask.double().mean(0)
    assert float((per_position - per_position.mean()).abs().max()) < 0.015
    same = random_mask(8, 100, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, random_mask(8, 100, generator=torch.Generator().manual_seed(1)))


def test_random_box_mask_hides_one_box_of_every_size() -> None:
    boxes = random_box_mask(20_000, (7, 5), generator=torch.Generator().manual_seed(0))
    assert boxes.shape == (20_000, 7, 5) and boxes.dtype == torch.bool
    rows, cols = boxes.any(2), boxes.any(1)  # (B, 7), (B, 5)
    # A box: exactly the product of its rows and columns, each a contiguous run of at least one.
    assert torch.equal(boxes, rows[:, :, None] & cols[:, None, :])
    for run in (rows, cols):
        assert int(run.sum(1).min()) >= 1
        first, last = run.float().argmax(1), run.shape[1] - 1 - run.flip(1).float().argmax(1)
        assert torch.equal(last - first + 1, run.sum(1))
    # Heights uniform in 1..7 and widths in 1..5: each 1/7 and 1/5 of the draws.
    heights = torch.bincount(rows.sum(1), minlength=8)[1:].double() / 20_000
    widths = torch.bincount(cols.sum(1), minlength=6)[1:].double() / 20_000
    assert float((heights - 1 / 7).abs().max()) < 0.01 and float((widths - 1 / 5).abs().max()) < 0.01
    # The bottom three full rows, the benchmark's inpainting mask, is among them.
    bottom = torch.zeros(7, 5, dtype=torch.bool)
    bottom[4:] = True
    assert bool((boxes == bottom).flatten(1).all(1).any())


def test_box_mask_prob_chooses_the_training_mask_shape() -> None:
    prior = MaskedPrior(MaskedPriorConfig(codebook_size=K, grid_size=(6, 6), n_layer=1, n_head=2, n_embd=16,
                                          box_mask_prob=1.0))
    masks = prior._training_mask(500, torch.device("cpu"))
    assert torch.equal(masks, masks.any(2)[:, :, None] & masks.any(1)[:, None, :])  # every one a box
    scattered = MaskedPrior(MaskedPriorConfig(codebook_size=K, grid_size=(6, 6), n_layer=1, n_head=2, n_embd=16))
    masks = scattered._training_mask(500, torch.device("cpu"))
    assert not torch.equal(masks, masks.any(2)[:, :, None] & masks.any(1)[:, None, :])
    with pytest.raises(ValueError, match="box_mask_prob"):
        MaskedPriorConfig(box_mask_prob=1.5)


def test_masked_cross_entropy_scores_hidden_positions_only() -> None:
    targets = torch.tensor([[0, 1, 2, 3]])
    mask = torch.tensor([[True, False, True, False]])
    uniform = torch.zeros(1, 4, 5)
    torch.testing.assert_close(masked_cross_entropy(uniform, targets, mask), torch.tensor(math.log(5)))
    # Right (very confident) at the hidden positions, wrong at the kept ones: the loss is about 0.
    logits = torch.full((1, 4, 5), -30.0)
    logits[0, 0, 0] = logits[0, 2, 2] = 30.0
    logits[0, 1, 4] = logits[0, 3, 4] = 30.0  # kept positions predict the wrong code
    assert float(masked_cross_entropy(logits, targets, mask)) < 1e-20
    logits.requires_grad_()
    masked_cross_entropy(logits, targets, mask).backward()
    assert logits.grad is not None and float(logits.grad[0, [1, 3]].abs().max()) == 0.0


def test_forward_hides_codes_and_scores_only_them() -> None:
    prior = make_prior()
    x = codes(3)
    mask = torch.zeros(3, *GRID, dtype=torch.bool)
    mask[:, 1:3] = True
    out = prior(x, mask=mask)
    assert out.logits.shape == (3, *GRID, K)
    manual = F.cross_entropy(out.logits[mask], x[mask])  # mean over the 30 hidden codes
    torch.testing.assert_close(out.loss, manual)
    # The hidden codes' values are never seen: changing them changes no logit.
    changed = x.clone()
    changed[mask] = (changed[mask] + 1) % K
    torch.testing.assert_close(prior(changed, mask=mask).logits, out.logits, atol=0, rtol=0)
    # Without a mask one is drawn from the global generator: reproducible under a seed.
    torch.manual_seed(5)
    first = prior(x)
    torch.manual_seed(5)
    assert torch.equal(prior(x).logits, first.logits)
    with pytest.raises(ValueError, match="mask: expected the codes' shape"):
        prior(x, mask=mask[:, :2])
    with pytest.raises(TypeError, match="mask: expected a bool tensor"):
        prior(x, mask=mask.long())


# --- likelihood -----------------------------------------------------------------------------------
def test_nll_is_refused_and_the_bound_is_named() -> None:
    prior = make_prior()
    with pytest.raises(NotImplementedError, match="no exact likelihood.*nll_bound"):
        prior.nll(codes(2))
    # A model whose every weight is zero predicts the uniform distribution: the bound is ln K.
    with torch.no_grad():
        for param in prior.parameters():
            param.zero_()
    bound = prior.nll_bound(codes(4), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bound, torch.full((4,), math.log(K)))
    metrics = evaluate_prior(prior, codes(6))
    assert set(metrics) == {"nll_bound_nats_per_code", "nll_bound_bits_per_image"}
    assert metrics["nll_bound_bits_per_image"] == pytest.approx(L * math.log2(K))


# --- sampling -------------------------------------------------------------------------------------
def test_one_step_draws_every_code_from_the_all_hidden_logits() -> None:
    prior = make_prior(num_classes=3)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        cond = prior(codes(3), labels, mask=all_hidden(3)).logits
        uncond = prior(codes(3), mask=all_hidden(3)).logits
    for scale in (1.0, 0.0, 3.0):
        expected = (uncond + scale * (cond - uncond)).argmax(-1)
        drawn = prior.sample(3, temperature=0, labels=labels, guidance_scale=scale, steps=1)
        assert torch.equal(drawn, expected), scale


def hidden_counts_per_step(prior: MaskedPrior, **kwargs: object) -> list[int]:
    """Sample one grid and record how many mask tokens the model sees at each step."""
    seen: list[int] = []
    logits = prior._logits

    def spy(indices: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        seen.append(int((indices == prior.mask_id).sum()))
        return logits(indices, cond)

    prior._logits = spy  # type: ignore[method-assign]
    prior.sample(1, generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]
    del prior._logits
    return seen


def test_decoding_follows_the_cosine_schedule() -> None:
    prior = make_prior()
    # 8 steps over 20 codes: floor(20 cos(pi/2 * t/8)) still hidden before step t, by hand:
    # 20 cos(pi/16) = 19.6, 20 cos(pi/8) = 18.5, 16.6, 14.1, 11.1, 7.65, 3.9.
    assert hidden_counts_per_step(prior, steps=8) == [20, 19, 18, 16, 14, 11, 7, 3]
    # As many steps as codes: exactly one code revealed per step (the schedule alone would
    # reveal none at some steps and two at others).
    assert hidden_counts_per_step(prior, steps=L) == list(range(L, 0, -1))
    assert hidden_counts_per_step(prior, steps=1) == [L]


def perturbed(prior: MaskedPrior) -> MaskedPrior:
    """Move the weights far from the near-uniform init, so codes and contexts change the logits."""
    with torch.no_grad():
        for param in prior.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return prior


def greedy_one_per_step(prior: MaskedPrior, labels: torch.Tensor | None, grid: torch.Tensor,
                        hidden: torch.Tensor) -> torch.Tensor:
    """Reference for one step per hidden code at temperature 0: reveal the most confident argmax each step."""
    batch = grid.shape[0]
    grid, hidden = grid.reshape(batch, L).clone(), hidden.reshape(batch, L).clone()
    rows = torch.arange(batch)
    with torch.no_grad():
        while bool(hidden.any()):
            logits = prior(grid.view(batch, *GRID), labels, mask=hidden.view(batch, *GRID)).logits
            best = logits.view(batch, L, K).log_softmax(-1).max(-1)
            pick = best.values.masked_fill(~hidden, -math.inf).argmax(1)
            grid[rows, pick] = best.indices[rows, pick]
            hidden[rows, pick] = False
    return grid.view(batch, *GRID)


def test_steps_equal_to_the_grid_size_reveal_one_code_per_step() -> None:
    prior = perturbed(make_prior(num_classes=3))
    labels = torch.tensor([2, 0])
    expected = greedy_one_per_step(prior, labels, codes(2), all_hidden(2))
    assert torch.equal(prior.sample(2, temperature=0, labels=labels, steps=L), expected)


def test_sampling_is_deterministic_for_a_seeded_generator() -> None:
    prior = make_prior(num_classes=3)

    def draw(seed: int, **kwargs: object) -> torch.Tensor:
        return prior.sample(4, generator=torch.Generator().manual_seed(seed), **kwargs)  # type: ignore[arg-type]

    for kwargs in ({}, {"steps": 3, "top_k": 4}, {"guidance_scale": 2.0, "choice_temperature": 0.0}):
        assert torch.equal(draw(0, **kwargs), draw(0, **kwargs))
        assert not torch.equal(draw(0, **kwargs), draw(1, **kwargs))
    assert torch.equal(prior.sample(2, temperature=0), prior.sample(2, temperature=0))  # greedy: no noise either


def test_confidence_noise_changes_which_codes_are_kept() -> None:
    prior = perturbed(make_prior())
    quiet = prior.sample(16, steps=4, choice_temperature=0.0, generator=torch.Generator().manual_seed(0))
    noisy = prior.sample(16, steps=4, choice_temperature=50.0, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(quiet, noisy)  # same draws of the first step, different choices of which to keep


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "steps"), ({"steps": L + 1}, r"steps: expected at most h\*w = 20"), ({"steps": 2.5}, "steps"),
    ({"choice_temperature": -1.0}, "choice_temperature"), ({"choice_temperature": float("nan")}, "choice_temperature"),
])
def test_bad_decoding_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_prior().sample(2, **kwargs)  # type: ignore[arg-type]


# --- filling (the prior side of inpainting) --------------------------------------------------------
def test_fill_keeps_every_kept_code_and_matches_sample_when_all_hidden() -> None:
    prior = make_prior(num_classes=3)
    x = codes(6, seed=2)
    mask = torch.rand(6, *GRID, generator=torch.Generator().manual_seed(0)) < 0.4
    mask[0] = True
    filled = prior.fill(x, mask, labels=torch.tensor([0, 1, 2, 0, 1, 2]), generator=torch.Generator().manual_seed(1))
    assert torch.equal(filled[~mask], x[~mask])
    assert not torch.equal(filled[mask], x[mask])
    labels = torch.tensor([1, 2])
    for kwargs in ({}, {"guidance_scale": 2.0, "steps": 5}):
        sampled = prior.sample(2, labels=labels, generator=torch.Generator().manual_seed(3), **kwargs)  # type: ignore[arg-type]
        refilled = prior.fill(x[:2], all_hidden(2), labels=labels, generator=torch.Generator().manual_seed(3),
                              **kwargs)  # type: ignore[arg-type]
        assert torch.equal(refilled, sampled)


def test_fill_conditions_on_the_kept_codes() -> None:
    prior = perturbed(make_prior())
    mask = torch.zeros(2, *GRID, dtype=torch.bool)
    mask[:, -1] = True  # redraw the bottom row, greedily: one code per step
    x = torch.cat([codes(1, seed=0), codes(1, seed=9)])
    with torch.no_grad():  # the two contexts predict the bottom row differently
        logits = prior(x, mask=mask).logits[:, -1]
    assert float((logits[0] - logits[1]).abs().max()) > 0.1
    filled = prior.fill(x, mask, temperature=0, steps=GRID[1])
    assert torch.equal(filled, greedy_one_per_step(prior, None, x, mask))


# --- training through the Trainer -------------------------------------------------------------------
def test_trains_saves_and_resumes_through_the_trainer(digit_folder: Path, tmp_path: Path,
                                                      tiny_train_settings: Callable[..., dict[str, object]]) -> None:
    tiny = {"codebook_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}

    def settings(out: Path, **extra: object) -> TrainConfig:
        return TrainConfig(**tiny_train_settings(digit_folder, out, prior_preset="mnist_masked",  # type: ignore[arg-type]
                                                 prior_overrides=tiny, vqvae_epochs=1, prior_epochs=2, **extra))

    metrics = Trainer(settings(tmp_path / "full")).fit()
    assert {"nll_bound_nats_per_code", "nll_bound_bits_per_image"} <= set(metrics)
    assert not any(key.startswith("nll_") and "bound" not in key for key in metrics)
    logged = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    prior_lines = [line for line in logged if line.get("stage") == "prior"]
    assert prior_lines and all("masked_cross_entropy" in line and "nll" not in line for line in prior_lines)
    pipe = VQVAEPipeline.from_pretrained(tmp_path / "full" / "pipeline")
    assert isinstance(pipe.prior, MaskedPrior) and pipe.prior.config.n_embd == 16
    assert "nll_bound_bits_per_image" in (tmp_path / "full" / "pipeline" / "README.md").read_text()
    # Stopped after a mid-run checkpoint and resumed: the same prior weights (masks come from the saved RNG).
    cut = Trainer(settings(tmp_path / "cut"))
    real_checkpoint, calls = cut._checkpoint, {"n": 0}

    def checkpoint_then_stop(stage: str, *args: object, **kwargs: object) -> None:
        real_checkpoint(stage, *args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += stage == "prior"
        if calls["n"] == 2:
            cut._stop.requested = True

    cut._checkpoint = checkpoint_then_stop  # type: ignore[method-assign]
    assert cut.fit() == {}
    Trainer(settings(tmp_path / "cut", resume=True)).fit()
    full, resumed = (read_safetensors(tmp_path / run / "prior" / "model.safetensors") for run in ("full", "cut"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


DDP_SCRIPT = """
import gc, json, os, sys
from pathlib import Path
import torch
from discrete_latents import VQVAE, VQVAEConfig
from discrete_latents._safetensors import write_safetensors
from discrete_latents.training import Trainer, TrainConfig
from discrete_latents.training.data import InMemory
from discrete_latents.training.process import training_process

settings = json.loads(sys.argv[1])
Path(settings["out_dir"]).mkdir(parents=True, exist_ok=True)
trainer = Trainer(TrainConfig(**settings))
with training_process(trainer.out, trainer.device, 1, trainer._stop):  # joins the gloo group torchrun describes
    torch.manual_seed(int(os.environ["RANK"]))  # each rank draws its own masks
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})).eval()
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prior = trainer.train_prior(vqvae, InMemory(images, torch.arange(64) % 10))
    write_safetensors(os.path.join(settings["out_dir"], f"rank{os.environ['RANK']}.safetensors"), prior.state_dict())
    del prior
"""


def test_two_gloo_processes_train_identical_masked_priors(tmp_path: Path, two_gloo_ranks: Callable) -> None:
    """Data-parallel training: different masks per rank, gradients averaged, the same weights after."""
    settings = {"out_dir": str(tmp_path / "ddp"), "prior_preset": "mnist_masked", "prior_epochs": 1,
                "prior_batch_size": 16, "warmup_steps": 1, "progress": False, "num_threads": 1, "device": "cpu",
                "prior_overrides": {"codebook_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}}
    first, second = two_gloo_ranks(DDP_SCRIPT, settings)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    untrained = MaskedPrior(MaskedPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16)).state_dict()
    assert not torch.equal(first["head_bias"], untrained["head_bias"])  # it did train


# --- the bundled pipeline ---------------------------------------------------------------------------
def test_bundled_mnist_masked_pipeline_loads_and_samples() -> None:
    pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist_masked"))
    mnist = VQVAEPipeline.from_pretrained(pretrained_path("mnist"))
    assert isinstance(pipe.prior, MaskedPrior)
    expected = prior_preset("mnist_masked")
    assert pipe.prior.config.replace(class_frequencies=()) == expected
    vq, same = pipe.vqvae.state_dict(), mnist.vqvae.state_dict()  # the same VQ-VAE as the causal pipeline
    assert vq.keys() == same.keys() and all(torch.equal(vq[k], same[k]) for k in vq)
    images = pipe.generate(2, labels=torch.tensor([3, 7]), steps=4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 28, 28)


MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"the real MNIST files are not in {MNIST_DIR}")
def test_bundled_mnist_masked_prior_fits_real_digits() -> None:
    """The bundled prior is trained: on real test digits its NLL bound is far below a uniform guess."""
    pipe = VQVAEPipeline.from_pretrained(pretrained_path("mnist_masked"))
    images, labels = load_mnist(MNIST_DIR, "test")
    codes = pipe.encode(images[:1000])
    bound = pipe.prior.nll_bound(codes, labels[:1000], generator=torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    # Uniform over 100 codes is ln 100 = 4.61 nats per code; the model card reports 2.90 on all
    # 10,000 test digits, the previous bundled prior 3.02.
    assert float(bound.mean()) < 2.98


DOC = Path(__file__).resolve().parents[1] / "docs" / "masked_prior.md"


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL))
def test_the_docs_python_blocks_run(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own code
    if "completions" in namespace:
        assert tuple(namespace["completions"].shape) == (10, 1, 28, 28)  # type: ignore[attr-defined]

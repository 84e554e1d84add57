"""One contract for every registered prior (built-in or plugin), plus prior-specific checks."""

from __future__ import annotations

import math

import pytest
import torch

from discrete_latents import PRIORS, BasePrior, CausalPrior, CausalPriorConfig, PixelCNNPriorConfig, PriorOutput
from discrete_latents._presets import prior_preset
from discrete_latents.errors import ConfigError, NonFiniteError, UnknownComponentError
from discrete_latents.priors import PixelCNNPrior, build_prior

K = 16  # codebook size of every test prior
GRID = (4, 5)  # small, but not square: catches transposed raster scans
L = GRID[0] * GRID[1]
# Tiny per-architecture settings; a plugin prior is built with its config's defaults.
TINY = {
    "causal_transformer": {"n_layer": 2, "n_head": 2, "n_embd": 16},
    "pixelcnn": {"hidden_channels": 16, "n_layer": 2},
    "masked_transformer": {"n_layer": 2, "n_head": 2, "n_embd": 16},
}
NAMES = PRIORS.names()
# Priors that draw one code at a time in raster order: causality and the raster sampling loop apply.
RASTER = [name for name in NAMES if PRIORS.get(name).raster_order]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_prior(name: str, num_classes: int = 0, label_dropout: float = 0.1, **overrides: object) -> BasePrior:
    cls = PRIORS.get(name)
    config = cls.config_class(codebook_size=K, grid_size=GRID, num_classes=num_classes,
                              label_dropout=label_dropout, **{**TINY.get(name, {}), **overrides})
    return cls(config).eval()


def codes(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (batch, *GRID), generator=torch.Generator().manual_seed(seed))


def seeded(prior: BasePrior, x: torch.Tensor, labels: torch.Tensor | None = None) -> PriorOutput:
    """``prior(x, labels)`` after seeding torch's generator, so random draws inside forward repeat."""
    torch.manual_seed(0)
    return prior(x, labels)


def test_builtin_priors_are_registered() -> None:
    assert {"causal_transformer", "pixelcnn", "masked_transformer"} <= set(NAMES)
    assert {"causal_transformer", "pixelcnn"} <= set(RASTER) and "masked_transformer" not in RASTER
    assert PRIORS.get("pixelcnn") is PixelCNNPrior and PixelCNNPrior.config_class is PixelCNNPriorConfig
    assert PRIORS.get("causal_transformer") is CausalPrior


# --- shapes and losses ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_and_nll_units(name: str) -> None:
    prior = make_prior(name)
    x = codes(3)
    out = prior(x)
    assert out.logits.shape == (3, *GRID, K) and out.logits.dtype == torch.float32
    assert out.loss.shape == () and torch.isfinite(out.loss)
    if not prior.exact_likelihood:  # e.g. a masked prior: a clear error, never a comparable number
        with pytest.raises(NotImplementedError, match="nll"):
            prior.nll(x)
        return
    manual = torch.nn.functional.cross_entropy(out.logits.reshape(-1, K), x.reshape(-1))
    torch.testing.assert_close(out.loss, manual)
    nll = prior.nll(x)  # nats per code, per image
    assert nll.shape == (3,)
    torch.testing.assert_close(nll.mean(), out.loss)
    bits = prior.bits_per_image(nll)
    torch.testing.assert_close(bits, nll * L / math.log(2))


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_range(name: str) -> None:
    samples = make_prior(name).sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, *GRID) and samples.dtype == torch.long
    assert int(samples.min()) >= 0 and int(samples.max()) < K
    assert not samples.is_inference()  # usable as training input
    assert make_prior(name).training is False


@pytest.mark.parametrize("name", NAMES)
def test_sample_restores_training_mode(name: str) -> None:
    prior = make_prior(name).train()
    prior.sample(1)
    assert prior.training


# --- causality --------------------------------------------------------------------------------
def dependency_matrix(prior: BasePrior) -> torch.Tensor:
    """dep[p, q] = max |change of position p's logits| when only code q changes (float64)."""
    prior = prior.double().requires_grad_(False)
    x = codes(1, seed=3)
    base = prior(x).logits.reshape(L, K)
    dep = torch.zeros(L, L, dtype=torch.float64)
    for q in range(L):
        changed = x.clone().reshape(L)
        changed[q] = (changed[q] + 1 + q % (K - 1)) % K  # always a different code
        logits = prior(changed.reshape(1, *GRID)).logits.reshape(L, K)
        dep[:, q] = (logits - base).abs().amax(-1)
    return dep


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", RASTER)
def test_causality_at_every_position(name: str, conditional: bool) -> None:
    dep = dependency_matrix(make_prior(name, num_classes=3 if conditional else 0))
    later_or_same = torch.triu(torch.ones(L, L, dtype=torch.bool))
    # Changing code q never changes the logits of positions <= q (q itself included: no leak).
    assert float(dep[later_or_same].max()) <= 1e-10
    # ... and later positions do see earlier codes. The built-ins see every earlier code from
    # every position (no blind spot anywhere); a plugin may have a smaller receptive field.
    earlier = dep[~later_or_same]
    assert float(earlier.min() if name in TINY else earlier.max()) > 1e-8


@pytest.mark.parametrize("name", RASTER)
def test_no_blind_spot_up_right(name: str) -> None:
    """The original PixelCNN never sees codes up and to the right; the gated one must."""
    dep = dependency_matrix(make_prior(name))
    h, w = GRID
    pairs = [(i * w + j, (i - 1) * w + j + dj) for i in range(1, h) for j in range(w - 1)
             for dj in range(1, w - j)]  # (position, a code up and to its right, in the row above)
    seen = [bool(dep[p, q] > 1e-8) for p, q in pairs]
    assert any(seen)  # the contract: the receptive field includes codes up-right of some position
    if name in TINY:  # the built-ins: of every position
        assert all(seen), [divmod(p, w) for (p, _), ok in zip(pairs, seen) if not ok]


# --- determinism, cache, greedy -----------------------------------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_deterministic_and_cache_matches(name: str, conditional: bool) -> None:
    prior = make_prior(name, num_classes=3 if conditional else 0)
    labels = torch.tensor([0, 2, 1, 0]) if conditional else None

    def draw(seed: int, use_cache: bool, **kwargs: object) -> torch.Tensor:
        return prior.sample(4, labels=labels, generator=torch.Generator().manual_seed(seed),
                            use_cache=use_cache, **kwargs)  # type: ignore[arg-type]

    cached = draw(0, True)
    assert torch.equal(cached, draw(0, True))
    assert torch.equal(cached, draw(0, False))  # the cache changes speed, never the codes
    assert not torch.equal(cached, draw(1, True))
    for kwargs in ({"top_k": 3}, {"top_p": 0.7, "temperature": 0.8}):
        assert torch.equal(draw(5, True, **kwargs), draw(5, False, **kwargs))
    if conditional:  # guided batches run conditional and unconditional rows together
        assert torch.equal(draw(2, True, guidance_scale=2.5), draw(2, False, guidance_scale=2.5))


@pytest.mark.parametrize("name", NAMES)
def test_greedy_is_the_argmax_path(name: str) -> None:
    prior = make_prior(name)
    greedy = prior.sample(3, temperature=0)
    assert torch.equal(greedy, prior.sample(3, temperature=0))  # no generator needed
    assert torch.equal(greedy, prior.sample(3, temperature=0, use_cache=False))
    if not prior.raster_order:  # a parallel decoder's greedy path is checked in its own tests
        return
    # Every code is the argmax of the model's logits given the codes before it.
    assert torch.equal(prior(greedy).logits.argmax(-1), greedy)
    # top_k = 1 keeps only the argmax, whatever the random draw.
    assert torch.equal(prior.sample(3, top_k=1, generator=torch.Generator().manual_seed(7)), greedy)


@pytest.mark.parametrize("name", NAMES)
def test_top_k_above_codebook_is_clamped(name: str) -> None:
    prior = make_prior(name)
    plain = prior.sample(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(prior.sample(2, top_k=10 * K, generator=torch.Generator().manual_seed(3)), plain)
    assert torch.equal(prior.sample(2, top_k=K, top_p=1.0, generator=torch.Generator().manual_seed(3)), plain)


# --- conditioning and guidance ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_labels_change_the_logits(name: str) -> None:
    prior = make_prior(name, num_classes=3)
    x = codes(2)
    # Each call re-seeded: a prior that draws something in forward (a masked prior's mask) draws alike.
    a = seeded(prior, x, torch.tensor([0, 0])).logits
    b = seeded(prior, x, torch.tensor([1, 1])).logits
    none = seeded(prior, x).logits  # the "no label" id
    assert (a - b).abs().max() > 1e-6 and (a - none).abs().max() > 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_label_dropout_in_training_uses_the_null_label(name: str) -> None:
    prior = make_prior(name, num_classes=3, label_dropout=0.999)  # no dropout layers in TINY
    x, labels = codes(4), torch.tensor([0, 1, 2, 1])
    unconditional = seeded(prior, x).logits
    torch.testing.assert_close(seeded(prior.train(), x, labels).logits, unconditional)
    assert (seeded(prior.eval(), x, labels).logits - unconditional).abs().max() > 1e-6  # eval keeps labels


def guided_greedy_reference(prior: BasePrior, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Greedy classifier-free guidance decoded with full forward passes only (relies on causality)."""
    out = torch.zeros(len(labels), *GRID, dtype=torch.long)
    with torch.no_grad():
        for p in range(L):
            i, j = divmod(p, GRID[1])
            cond = prior(out, labels).logits[:, i, j]
            uncond = prior(out).logits[:, i, j]
            out[:, i, j] = (uncond + scale * (cond - uncond)).argmax(-1)
    return out


@pytest.mark.parametrize("name", RASTER)
def test_classifier_free_guidance(name: str) -> None:
    prior = make_prior(name, num_classes=3)
    labels = torch.tensor([0, 1, 2])
    for scale in (0.0, 1.0, 3.0):
        expected = guided_greedy_reference(prior, labels, scale)
        assert torch.equal(prior.sample(3, temperature=0, labels=labels, guidance_scale=scale), expected), scale
    # Guidance 0 is the unconditional model; with labels=None it is sampled directly.
    assert torch.equal(prior.sample(3, temperature=0, guidance_scale=0.0), guided_greedy_reference(prior, labels, 0.0))


@pytest.mark.parametrize("name", NAMES)
def test_sampling_without_labels_draws_classes_by_frequency(name: str) -> None:
    prior = make_prior(name, num_classes=3, class_frequencies=(0.0, 1.0, 0.0))
    ones = torch.ones(4, dtype=torch.long)
    assert torch.equal(prior.sample(4, temperature=0), prior.sample(4, temperature=0, labels=ones))
    assert torch.equal(prior.draw_labels(4), ones)
    skewed = make_prior(name, num_classes=3, class_frequencies=(0.7, 0.2, 0.1))
    counts = torch.bincount(skewed.draw_labels(20_000, torch.Generator().manual_seed(0)), minlength=3)
    assert torch.allclose(counts / 20_000, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)
    uniform = make_prior(name, num_classes=3)  # no frequencies recorded: every class alike
    counts = torch.bincount(uniform.draw_labels(30_000, torch.Generator().manual_seed(0)), minlength=3)
    assert torch.allclose(counts / 30_000, torch.full((3,), 1 / 3), atol=0.02)
    with pytest.raises(ConfigError, match="class_frequencies"):
        make_prior(name, num_classes=3, class_frequencies=(0.5, 0.5))
    with pytest.raises(ValueError, match="unconditional"):
        make_prior(name).draw_labels(2)


@pytest.mark.parametrize("name", NAMES)
def test_conditioning_errors(name: str) -> None:
    unconditional = make_prior(name)
    with pytest.raises(ValueError, match="labels"):
        unconditional(codes(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        unconditional.sample(2, labels=torch.tensor([0, 1]))
    strict = make_prior(name, num_classes=3, label_dropout=0.0)
    for scale in (1.0, 0.0):  # it never learnt "no label": it does not guess classes either
        with pytest.raises(ValueError, match="labels: .*without label dropout.*draw_labels"):
            strict.sample(2, guidance_scale=scale)
    assert strict.sample(2, labels=strict.draw_labels(2)).shape == (2, *GRID)
    with pytest.raises(ValueError, match="labels"):
        strict(codes(2))
    with pytest.raises(ValueError, match="guidance_scale"):
        strict.sample(2, labels=torch.tensor([0, 1]), guidance_scale=2.0)
    conditional = make_prior(name, num_classes=3)
    assert conditional.sample(2).shape == (2, *GRID)  # trained with label dropout: unconditional works
    for bad in (torch.tensor([0, 3]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match=r"labels.*\[0, 3\)"):
            conditional(codes(2), bad)
        with pytest.raises(ValueError, match="labels"):
            conditional.sample(2, labels=bad)
    with pytest.raises(ValueError, match="labels: expected 2"):
        conditional.sample(2, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="labels"):
        conditional(codes(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="guidance_scale.*class-conditional"):
        unconditional.sample(2, guidance_scale=2.0)  # guidance without classes
    # Guidance without labels guides the drawn classes: the same as passing those classes.
    drawn = conditional.draw_labels(2, torch.Generator().manual_seed(3))
    assert torch.equal(conditional.sample(2, guidance_scale=2.0, generator=torch.Generator().manual_seed(3)),
                       conditional.sample(2, labels=drawn, guidance_scale=2.0,
                                          generator=_after_draw(torch.Generator().manual_seed(3), conditional)))


def _after_draw(generator: torch.Generator, prior: BasePrior) -> torch.Generator:
    prior.draw_labels(2, generator)  # advance the stream past the class draw
    return generator


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_bad_indices(name: str) -> None:
    prior = make_prior(name)
    for value in (K, -1):
        bad = codes(2)
        bad[1, 2, 3] = value
        with pytest.raises(ValueError, match=rf"indices: code ids must lie in \[0, {K}\)"):
            prior(bad)
    with pytest.raises(ValueError, match=r"indices: expected a 4x5 grid.*\(2, 5, 5\)"):  # both sizes
        prior(torch.zeros(2, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="indices"):
        prior(torch.zeros(2, L, dtype=torch.long))
    with pytest.raises(TypeError, match="indices"):
        prior(codes(2).float())
    if prior.exact_likelihood:
        with pytest.raises(ValueError, match="indices"):
            prior.nll(torch.full((1, *GRID), K))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": -3}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": float("nan")}, "top_p"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"num_samples": 0}, "num_samples"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_sampling_arguments(name: str, kwargs: dict[str, object], argument: str) -> None:
    prior = make_prior(name)
    kwargs = {"num_samples": 2, **kwargs}
    with pytest.raises(ValueError, match=argument):
        prior.sample(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_nan_weights_are_reported_while_sampling(name: str) -> None:
    prior = make_prior(name)
    with torch.no_grad():
        for param in prior.parameters():
            param.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="NaN"):
        prior.sample(2, generator=torch.Generator().manual_seed(0))


# --- training and saving ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    prior = make_prior(name, num_classes=3, label_dropout=0.5).train()
    out = prior(codes(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    out.loss.backward()
    for pname, param in prior.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_cover_every_parameter_once(name: str) -> None:
    prior = make_prior(name, num_classes=3)
    decay, no_decay = prior.param_groups(0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert sorted(ids) == sorted(id(p) for p in prior.parameters())
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name: str, tmp_path) -> None:
    prior = make_prior(name, num_classes=3)
    with torch.no_grad():  # move off the init so a silently re-initialised load would differ
        for param in prior.parameters():
            param.add_(0.01 * torch.randn_like(param))
    prior.save_pretrained(tmp_path)
    loaded = type(prior).from_pretrained(tmp_path)
    assert type(loaded) is type(prior) and loaded.config == prior.config
    x, labels = codes(3), torch.tensor([0, 2, 1])
    assert torch.equal(seeded(loaded, x, labels).logits, seeded(prior, x, labels).logits)
    seed = torch.Generator().manual_seed(4)
    assert torch.equal(loaded.sample(2, generator=seed), prior.sample(2, generator=torch.Generator().manual_seed(4)))


# --- choosing the architecture from a config ----------------------------------------------------
def test_build_prior_picks_the_class_from_the_config() -> None:
    assert type(build_prior(prior_preset("mnist"))) is CausalPrior
    pixelcnn = build_prior(prior_preset("mnist_pixelcnn"))
    assert type(pixelcnn) is PixelCNNPrior and pixelcnn.num_classes == 10
    assert type(build_prior(PixelCNNPriorConfig(codebook_size=K, grid_size=GRID, hidden_channels=8, n_layer=1))) \
        is PixelCNNPrior
    with pytest.raises(TypeError, match="config"):
        build_prior({"codebook_size": 16})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        CausalPrior(PixelCNNPriorConfig())  # type: ignore[arg-type]


def test_build_prior_unknown_config(restore_registries) -> None:
    from dataclasses import dataclass

    from discrete_latents._configs import PriorConfig

    @dataclass(frozen=True)
    class OtherConfig(PriorConfig):
        pass

    with pytest.raises(UnknownComponentError, match="OtherConfig"):
        build_prior(OtherConfig())


# --- transformer specifics ----------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [0, 3])
def test_kv_cache_with_a_query_block_shorter_than_the_keys(num_classes: int) -> None:
    """Feeding several new tokens after cached ones needs a mask aligned to the bottom-right corner
    (is_causal=True would align it top-left). The logits must equal the uncached forward pass."""
    prior = make_prior("causal_transformer", num_classes=num_classes)
    assert isinstance(prior, CausalPrior)
    x = codes(2)
    cond = torch.tensor([1, 2]) if num_classes else None
    full = prior(x, cond).logits.reshape(2, L, K)
    flat = x.reshape(2, L)
    state = prior._start_sampling(2, cond, use_cache=True)
    with torch.no_grad():
        first = prior._run(prior._embed(prior._tokens(flat, 3), cond, 0), state)[:, prior.prefix - 1:]
        block = prior._run(prior._embed(flat[:, 3:8], None, state.length), state)  # 5 queries, 9+ keys
        rest = [prior._next_logits(flat, p, cond, state) for p in range(9, L)]
    torch.testing.assert_close(first, full[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block, full[:, 4:9], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(rest, 1), full[:, 9:], atol=1e-5, rtol=1e-5)


def test_causal_prior_defaults_are_the_seed_settings() -> None:
    config = CausalPrior().config
    assert (config.n_embd, config.n_head, config.n_layer, config.codebook_size, config.grid_size) == \
        (128, 8, 3, 100, (7, 7))
    mnist = CausalPrior(prior_preset("mnist"))  # type: ignore[arg-type]
    assert mnist.num_codes == 49 and mnist.codebook_size == 100 and mnist.num_classes == 10
    assert isinstance(prior_preset("mnist"), CausalPriorConfig)


def test_cpu_autocast_runs_attention_in_float32() -> None:
    """Under CPU bf16 autocast the linear layers take bf16 while attention runs in float32 on the
    same (bf16-rounded) inputs, so it matches float32 SDPA exactly; its gradients still flow."""
    from discrete_latents.priors._transformer import attention

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=generator).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, is_causal=True)
    reference = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference.bfloat16(), atol=0, rtol=0)
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_bf16_autocast_loss_and_gradients_match_float32() -> None:
    prior = make_prior("causal_transformer", num_classes=3, n_embd=32, n_head=4).train()
    x, labels = codes(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    torch.manual_seed(0)
    exact = prior(x, labels).loss
    grads = torch.autograd.grad(exact, list(prior.parameters()))
    torch.manual_seed(0)  # the same label dropout draw
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = prior(x, labels).loss
    low_grads = torch.autograd.grad(low.float(), list(prior.parameters()))
    assert abs(low.detach().item() - exact.detach().item()) < 0.02 * exact.detach().item()
    cosine = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in grads]),
                                                   torch.cat([g.flatten() for g in low_grads]), dim=0)
    assert cosine > 0.99

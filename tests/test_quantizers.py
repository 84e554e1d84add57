"""Quantizers: one contract for every registered name, then the paper's loss and the variants."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from discrete_latents import VQVAE, VQVAEConfig
from discrete_latents.errors import NonFiniteError
from discrete_latents.quantizers import (
    QUANTIZERS,
    BaseQuantizer,
    CodebookQuantizer,
    FiniteScalarQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
)
from discrete_latents.quantizers import codebook as codebook_module
from discrete_latents.quantizers.base import rotation_trick
from discrete_latents.quantizers.codebook import nearest_code

DIM = 8
# Tiny configs per registered name; a plugin without an entry is built with dim only.
TINY: dict[str, dict[str, Any]] = {
    "vq": {"codebook_size": 16},
    "vq_ema": {"codebook_size": 16},
    "vq_cosine": {"codebook_size": 16},
    "rvq": {"codebook_size": 16, "num_quantizers": 3},
    "fsq": {"levels": [4, 4, 3]},  # d = 3 != D = 8: exercises the projections
}
HEALTH = {"kmeans_init": True, "restart_dead_codes": True, "dead_code_threshold": 0.5, "usage_decay": 0.5}


def make(name: str, health: bool = False, **overrides: Any) -> BaseQuantizer:
    kwargs = {**TINY.get(name, {}), **overrides}
    quantizer = QUANTIZERS.create(name, dim=DIM, **kwargs)
    if health and _has_health(quantizer):
        quantizer = QUANTIZERS.create(name, dim=DIM, **kwargs, **HEALTH)
    return quantizer


def _has_health(quantizer: BaseQuantizer) -> bool:
    return isinstance(quantizer, CodebookQuantizer) or (
        isinstance(quantizer, ResidualVectorQuantizer) and isinstance(quantizer.stages[0], CodebookQuantizer))


def latents(b: int = 4, h: int = 5, w: int = 3, dim: int = DIM) -> torch.Tensor:
    return torch.randn(b, dim, h, w)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


def gaussians(n_per: int, dim: int = DIM, k: int = 8, seed: int = 0, spread: float = 0.05) -> torch.Tensor:
    """(k * n_per // 16, dim, 4, 4) latents from k well-separated Gaussians; ``seed`` draws the samples."""
    centers = 3.0 * torch.randn(k, dim, generator=torch.Generator().manual_seed(12345))
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, k, (n_per * k,), generator=g)
    flat = centers[pick] + spread * torch.randn(n_per * k, dim, generator=g)
    return flat.reshape(-1, 4, 4, dim).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------
# The contract, for every registered quantizer
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_output_shapes_and_dtypes(name: str) -> None:
    q = make(name).train()
    z = latents()
    out = q(z)
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.indices.shape == (4, 5, 3, *q.index_shape)
    assert out.indices.dtype == torch.int64
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < q.codebook_size
    for field in ("loss", "codebook_loss", "commitment_loss", "perplexity"):
        value = getattr(out, field)
        assert value.ndim == 0 and bool(torch.isfinite(value)), field
    # The batch perplexity is that of its index histogram; with several codes per cell (rvq), the
    # mean over the per-stage histograms.
    columns = out.indices.reshape(-1, out.indices[0, 0, 0].numel())
    expected = torch.stack([BaseQuantizer.perplexity_of(torch.bincount(c, minlength=q.codebook_size))
                            for c in columns.T]).mean()
    assert torch.allclose(out.perplexity, expected, rtol=1e-5)
    assert torch.allclose(out.loss, out.codebook_loss + getattr(q, "beta", 0.0) * out.commitment_loss)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_eval_indices_to_codes_equals_quantized(name: str) -> None:
    q = make(name, health=True).train()
    q(latents())  # one training step: k-means, EMA and restarts have run
    q.eval()
    out = q(latents())
    codes = q.indices_to_codes(out.indices)
    assert codes.shape == out.quantized.shape
    assert torch.equal(codes, out.quantized)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_every_parameter_and_the_input_get_gradients(name: str) -> None:
    q = make(name).train()
    z = latents().requires_grad_()
    out = q(z)
    assert bool(torch.isfinite(out.loss))
    (out.quantized.square().mean() + out.loss).backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()) and float(z.grad.abs().sum()) > 0
    for pname, param in q.named_parameters():
        assert param.grad is not None, pname
        assert bool(torch.isfinite(param.grad).all()) and float(param.grad.abs().sum()) > 0, pname


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_eval_is_pure(name: str) -> None:
    q = make(name, health=True).eval()  # k-means still pending: eval must not run it
    before = state(q)
    for _ in range(3):
        q(latents())
    assert_same_state(before, q)
    q.train()
    q(latents())
    q.eval()
    before = state(q)
    q(latents())
    assert_same_state(before, q)


@pytest.mark.parametrize("name", QUANTIZERS.names())
@pytest.mark.parametrize("bad", ["rank3", "channels", "empty", "int", "nan", "inf", "not_tensor"])
def test_bad_input_raises_and_leaves_state(name: str, bad: str) -> None:
    q = make(name, health=True).train()
    z = latents()
    inputs: dict[str, Any] = {
        "rank3": z[0],
        "channels": latents(dim=DIM + 1),
        "empty": z[:0],
        "int": z.round().long(),
        "nan": z.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"))),
        "inf": z.clone().fill_(float("inf")),
        "not_tensor": z.tolist(),
    }
    before = state(q)
    with pytest.raises((ValueError, TypeError, NonFiniteError)) as info:
        q(inputs[bad])
    if bad in ("nan", "inf"):
        assert isinstance(info.value, NonFiniteError)
    if bad in ("rank3", "channels", "empty"):
        assert isinstance(info.value, ValueError) and f"(B, {DIM}, h, w)" in str(info.value)
    assert_same_state(before, q)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_indices_out_of_range_raise_value_error(name: str) -> None:
    q = make(name).eval()
    good = q(latents()).indices
    for value in (q.codebook_size, -1):
        bad = good.clone()
        bad.view(-1)[0] = value
        with pytest.raises(ValueError, match="code ids"):
            q.indices_to_codes(bad)
    with pytest.raises(TypeError):
        q.indices_to_codes(good.float())
    with pytest.raises(ValueError):
        q.indices_to_codes(good[0])  # a rank short
    assert q.indices_to_codes(good).shape == (4, DIM, 5, 3)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_bf16_autocast_keeps_fp32_indices_and_dtype(name: str) -> None:
    q = make(name).eval()
    z = latents(b=8)
    reference = q(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert torch.equal(out.indices, reference)
    assert out.quantized.dtype == torch.float32 and bool(torch.isfinite(out.loss))


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_usage_stats_are_floats(name: str) -> None:
    q = make(name, health=True).train()
    q(latents())
    stats = q.usage_stats()
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    if _has_health(q):
        assert {"active_codes", "perplexity", "restarts"} <= stats.keys()
        assert 0 <= stats["active_codes"] <= q.codebook_size
        # the windowed perplexity is that of the usage buffer (for rvq, the mean over its stages')
        stages = q._stage_list() if q.index_shape else [q]
        expected = sum(float(q.perplexity_of(stage.usage)) for stage in stages) / len(stages)
        assert stats["perplexity"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_builds_inside_a_vqvae(name: str) -> None:
    config = VQVAEConfig(channels=(8, 16), latent_dim=DIM, quantizer=name, quantizer_kwargs=dict(TINY.get(name, {})))
    model = VQVAE(config)
    images = torch.rand(2, 1, 28, 28)
    out = model(images)
    assert out.reconstruction.shape == images.shape
    assert out.indices.shape == (2, 7, 7, *model.quantizer.index_shape)
    model.eval()
    indices = model.encode(images)
    assert model.decode(indices).shape == images.shape


# --------------------------------------------------------------------------------------------
# The paper's loss (Eq. 3) on "vq"
# --------------------------------------------------------------------------------------------
def _pair(beta_a: float, beta_b: float) -> tuple[VectorQuantizer, VectorQuantizer]:
    a = VectorQuantizer(dim=DIM, codebook_size=16, beta=beta_a)
    b = VectorQuantizer(dim=DIM, codebook_size=16, beta=beta_b)
    b.load_state_dict(a.state_dict())
    return a, b


def test_codebook_gradient_is_independent_of_beta() -> None:
    a, b = _pair(0.25, 2.0)
    z = latents()
    a(z).loss.backward()
    b(z).loss.backward()
    assert a.weight.grad is not None and float(a.weight.grad.abs().sum()) > 0
    assert torch.allclose(a.weight.grad, b.weight.grad, rtol=1e-6, atol=1e-9)


def test_encoder_gradient_from_the_loss_scales_with_beta() -> None:
    a, b = _pair(0.5, 1.0)
    z_a = latents().requires_grad_()
    z_b = z_a.detach().clone().requires_grad_()
    a(z_a).loss.backward()
    b(z_b).loss.backward()
    assert float(z_a.grad.abs().sum()) > 0
    assert torch.allclose(z_b.grad, 2.0 * z_a.grad, rtol=1e-5, atol=1e-9)
    zero, _ = _pair(0.0, 1.0)
    z0 = z_a.detach().clone().requires_grad_()
    zero(z0).loss.backward()
    assert z0.grad is None or float(z0.grad.abs().sum()) == 0.0  # the codebook term never reaches z_e


@pytest.mark.parametrize("name", ["vq", "vq_ema", "vq_cosine", "rvq"])
def test_straight_through_gradient_equals_upstream(name: str) -> None:
    q = make(name).train()
    z = latents().requires_grad_()
    upstream = torch.randn_like(z)
    out = q(z)
    (out.quantized * upstream).sum().backward()
    if name == "vq_cosine":  # through the l2 normalisation: the upstream gradient projected
        flat = z.detach().permute(0, 2, 3, 1)
        _, expected = torch.autograd.functional.vjp(lambda t: F.normalize(t, dim=-1), flat,
                                                    upstream.permute(0, 2, 3, 1))
        assert torch.allclose(z.grad, expected.permute(0, 3, 1, 2), atol=1e-6)
    else:
        assert torch.equal(z.grad, upstream)


def test_rotation_trick_rotates_and_scales_the_gradient() -> None:
    torch.manual_seed(5)
    inputs, codes = torch.randn(64, DIM).requires_grad_(), torch.randn(64, DIM)
    out = rotation_trick(inputs, codes)
    assert torch.equal(out, codes)  # the value is the code, exactly
    # Upstream along each code's direction comes back along the input's, scaled by |q| / |e|.
    scale = codes.norm(dim=1, keepdim=True) / inputs.detach().norm(dim=1, keepdim=True)
    (out * F.normalize(codes, dim=1)).sum().backward()
    assert torch.allclose(inputs.grad, scale * F.normalize(inputs.detach(), dim=1), atol=1e-5)
    # A rotation keeps lengths: any upstream gradient comes back scaled, never distorted.
    inputs.grad = None
    upstream = torch.randn(64, DIM)
    (rotation_trick(inputs, codes) * upstream).sum().backward()
    assert torch.allclose(inputs.grad.norm(dim=1), scale.squeeze(1) * upstream.norm(dim=1), rtol=1e-4)
    assert not torch.allclose(inputs.grad, upstream, atol=1e-2)  # unlike the straight-through copy


@pytest.mark.parametrize("name", ["vq", "vq_ema", "vq_cosine", "rvq"])
def test_rotation_gradient_keeps_values_and_reaches_the_encoder(name: str) -> None:
    torch.manual_seed(0)
    ste, rotation = make(name).train(), make(name, gradient="rotation").train()
    rotation.load_state_dict(ste.state_dict())
    z = latents().requires_grad_()
    out_ste, out_rot = ste(z), rotation(z)
    assert torch.equal(out_ste.quantized, out_rot.quantized) and torch.equal(out_ste.indices, out_rot.indices)
    (out_rot.quantized.square().sum()).backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="gradient: expected one of"):
        make(name, gradient="gumbel")


def test_ties_go_to_the_lowest_index() -> None:
    q = VectorQuantizer(dim=4, codebook_size=6).eval()
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[9.0, 9, 9, 9], [1, 0, 0, 0], [5, 5, 5, 5],
                                     [1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]))
    z = torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1)
    assert q(z).indices.item() == 1  # duplicate rows 1, 3, 4: the first wins
    midway = torch.tensor([0.5, 0.5, 0, 0]).view(1, 4, 1, 1)  # equidistant from codes 1 and 5
    assert q(midway).indices.item() == 1
    codebook = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert nearest_code(torch.tensor([[0.0, 1.0], [0.5, 0.5]]), codebook).tolist() == [0, 0]


def test_bf16_autocast_gives_fp32_indices_where_bf16_would_not() -> None:
    torch.manual_seed(3)
    base = 4.0 * torch.randn(DIM)
    q = VectorQuantizer(dim=DIM, codebook_size=64).eval()
    with torch.no_grad():  # 64 codes within 1e-2 of each other: bf16 (8 bits of mantissa) merges them
        q.weight.copy_(base + 1e-2 * torch.randn(64, DIM))
    z = (base + 1e-2 * torch.randn(256, DIM)).reshape(4, 8, 8, DIM).permute(0, 3, 1, 2)
    reference = q(z).indices
    flat, e = z.permute(0, 2, 3, 1).reshape(-1, DIM), q.weight.detach()
    naive_bf16 = ((e * e).sum(1).bfloat16() - 2 * flat.bfloat16() @ e.bfloat16().t()).argmin(1)
    assert not torch.equal(naive_bf16, reference.flatten())  # the test can tell bf16 from fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(q(z).indices, reference)
        assert torch.equal(q(z.bfloat16()).indices, q(z.bfloat16().float()).indices)


def test_blocked_nearest_code_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    flat, codebook = torch.randn(1000, 16), torch.randn(37, 16)
    whole = nearest_code(flat, codebook)
    monkeypatch.setattr(codebook_module, "_SCORE_BLOCK", 37 * 64)  # 64 rows per block, 16 blocks
    assert torch.equal(nearest_code(flat, codebook), whole)
    brute = torch.cdist(flat.double(), codebook.double()).argmin(1)
    assert torch.equal(whole, brute)


# --------------------------------------------------------------------------------------------
# Codebook health
# --------------------------------------------------------------------------------------------
def _collapsed_vq(restart: bool) -> VectorQuantizer:
    q = VectorQuantizer(dim=DIM, codebook_size=32, restart_dead_codes=restart, usage_decay=0.9)
    with torch.no_grad():
        q.weight.copy_(torch.randn(DIM).expand(32, DIM))  # all codes equal: everything picks code 0
    return q.train()


def _train(q: BaseQuantizer, steps: int) -> None:
    # No optimiser: the codebook stays collapsed unless restarts move it.
    for step in range(steps):
        q(gaussians(16, seed=step))


def test_restarts_revive_a_collapsed_codebook() -> None:
    q = _collapsed_vq(restart=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no collapse warning while restarts revive codes
        _train(q, 80)
    assert int(q.restarts) >= 8
    assert q.usage_stats()["active_codes"] >= 8
    q.eval()
    assert q(gaussians(64, seed=999)).indices.unique().numel() >= 8  # one code per Gaussian at least


def test_collapse_without_restarts_warns() -> None:
    q = _collapsed_vq(restart=False)
    with pytest.warns(RuntimeWarning, match="collapsed"):
        _train(q, 80)
    assert int(q.restarts) == 0
    assert q.usage_stats()["active_codes"] == 1


def test_restart_with_fewer_vectors_than_dead_codes() -> None:
    q = VectorQuantizer(dim=DIM, codebook_size=64, restart_dead_codes=True, usage_decay=0.0,
                        dead_code_threshold=0.9).train()
    z = latents(b=1, h=2, w=2)  # 4 vectors, up to 63 dead codes
    q(z)
    assert int(q.restarts) > 4
    assert bool(torch.isfinite(q.weight).all())
    flat = z.permute(0, 2, 3, 1).reshape(-1, DIM)
    restarted = (q.usage == 1.0 / 64).nonzero().flatten()
    assert all(any(torch.equal(q.weight.detach()[i], v) for v in flat) for i in restarted.tolist())


@pytest.mark.parametrize("name", ["vq", "vq_ema", "vq_cosine"])
def test_kmeans_init_lowers_the_quantization_error(name: str) -> None:
    z = gaussians(32)
    plain = make(name, codebook_size=32).train()
    seeded = make(name, codebook_size=32, kmeans_init=True).train()
    assert not bool(seeded.initialized)
    error_plain = plain(z).commitment_loss
    error_seeded = seeded(z).commitment_loss
    assert bool(seeded.initialized)
    assert float(error_seeded) < 0.1 * float(error_plain)


def test_loaded_state_is_not_reinitialised_by_kmeans() -> None:
    trained = VectorQuantizer(dim=DIM, codebook_size=16, kmeans_init=True).train()
    trained(gaussians(8))
    fresh = VectorQuantizer(dim=DIM, codebook_size=16, kmeans_init=True).train()
    fresh(gaussians(8, seed=1))  # fresh runs its own k-means, caching that it is initialised
    fresh.load_state_dict(trained.state_dict())
    fresh(gaussians(8, seed=2))  # no optimiser step: the weight moves only if k-means ran again
    assert torch.equal(fresh.weight, trained.weight)
    blank = VectorQuantizer(dim=DIM, codebook_size=16, kmeans_init=True).train()
    blank.load_state_dict({**trained.state_dict(), "initialized": torch.tensor(False)})
    blank(gaussians(8, seed=2))
    assert bool(blank.initialized) and not torch.equal(blank.weight, trained.weight)


def test_ema_code_never_used_stays_finite() -> None:
    q = QUANTIZERS.create("vq_ema", dim=DIM, codebook_size=16, decay=0.5).train()
    z = gaussians(32, k=1)  # one cluster: most codes are never used
    with pytest.warns(RuntimeWarning, match="collapsed"):  # one cluster for 16 codes is a collapse
        for _ in range(300):  # 0.5 ** 300 underflows: the unused codes' counts reach exactly zero
            q(z)
    assert float(q.cluster_size.min()) == 0.0
    assert bool(torch.isfinite(q.weight).all()) and bool(torch.isfinite(q.embed_sum).all())
    out = q.eval()(z)
    assert bool(torch.isfinite(out.quantized).all()) and bool(torch.isfinite(out.loss))


def test_one_ema_step_matches_appendix_a1_by_hand() -> None:
    """Two codes in 1-D at 0 and 10, counts 1, decay 0.75; three inputs 1, 2 and 9.

    Assignments: 1 and 2 to code 0, 9 to code 1, so n = (2, 1) and the sums are (3, 9).
    N = 0.75 * (1, 1) + 0.25 * (2, 1) = (1.25, 1.0); m = 0.75 * (0, 10) + 0.25 * (3, 9) = (0.75, 9.75);
    e = m / N = (0.6, 9.75) (Laplace smoothing with eps = 1e-9 moves it by under 1e-8).
    The commitment loss uses the codes before the update: ((1 - 0)^2 + (2 - 0)^2 + (9 - 10)^2) / 3 = 2.
    """
    q = QUANTIZERS.create("vq_ema", dim=1, codebook_size=2, decay=0.75, eps=1e-9, beta=0.25).train()
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[0.0], [10.0]]))
        q.embed_sum.copy_(torch.tensor([[0.0], [10.0]]))
        q.cluster_size.fill_(1.0)
    out = q(torch.tensor([1.0, 2.0, 9.0]).view(1, 1, 1, 3))
    assert out.indices.flatten().tolist() == [0, 0, 1]
    assert float(out.commitment_loss) == pytest.approx(2.0) and float(out.loss) == pytest.approx(0.5)
    assert q.cluster_size.tolist() == pytest.approx([1.25, 1.0], abs=1e-7)
    assert q.embed_sum.flatten().tolist() == pytest.approx([0.75, 9.75], abs=1e-6)
    assert q.weight.flatten().tolist() == pytest.approx([0.6, 9.75], abs=1e-6)


def test_ema_follows_the_data_and_has_no_codebook_loss() -> None:
    q = QUANTIZERS.create("vq_ema", dim=DIM, codebook_size=16, decay=0.9).train()
    z = gaussians(16)
    first = q(z).commitment_loss
    for _ in range(50):
        out = q(z)
    assert float(out.codebook_loss) == 0.0 and not out.codebook_loss.requires_grad
    assert float(out.commitment_loss) < 0.5 * float(first)
    assert list(q.parameters()) == []


def test_bad_constructor_arguments_raise_value_error() -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("vq", {"codebook_size": 1}), ("vq", {"beta": -1.0}), ("vq", {"beta": float("nan")}),
        ("vq", {"kmeans_init": "yes"}), ("vq", {"usage_decay": 1.0}), ("vq", {"dead_code_threshold": 2.0}),
        ("vq", {"codebook_size": True}), ("vq_ema", {"decay": 1.0}), ("vq_ema", {"eps": 0.0}),
        ("rvq", {"num_quantizers": 0}), ("rvq", {"stage": "vq_cosine"}), ("rvq", {"stage": "fsq"}),
        ("rvq", {"stage": "no_such_quantizer"}), ("fsq", {"levels": []}), ("fsq", {"levels": [8, 1]}),
        ("fsq", {"levels": "855"}), ("fsq", {"levels": [2.5, 3]}), ("fsq", {"levels": [1 << 13, 1 << 13]}),
    ]
    for name, kwargs in bad:
        with pytest.raises(ValueError):
            QUANTIZERS.create(name, dim=DIM, **kwargs)
    with pytest.raises(TypeError):
        QUANTIZERS.create("vq", dim=DIM, no_such_option=1)


# --------------------------------------------------------------------------------------------
# Cosine, residual and FSQ specifics
# --------------------------------------------------------------------------------------------
def test_cosine_codes_are_unit_vectors_chosen_by_cosine_similarity() -> None:
    q = make("vq_cosine").eval()
    z = latents() * 10
    out = q(z)
    assert torch.allclose(out.quantized.norm(dim=1), torch.ones(4, 5, 3), atol=1e-5)
    flat = z.permute(0, 2, 3, 1).reshape(-1, DIM)
    cosine = F.normalize(flat, dim=1) @ F.normalize(q.weight.detach(), dim=1).t()
    assert torch.equal(out.indices.flatten(), cosine.argmax(1))
    assert torch.equal(q(z * 0.01).indices, out.indices)  # the scale of z does not matter


def test_residual_stages_reduce_the_error_and_index_per_stage() -> None:
    q = ResidualVectorQuantizer(dim=DIM, num_quantizers=3, codebook_size=16, kmeans_init=True).train()
    z = latents(b=16)
    q(z)  # k-means per stage on that stage's residuals
    q.eval()
    out = q(z)
    assert out.indices.shape[-1] == 3 and q.index_shape == (3,)
    flat = z.permute(0, 2, 3, 1).reshape(-1, DIM)
    partial, errors = torch.zeros_like(flat), []
    for stage, idx in zip(q.stages, out.indices.reshape(-1, 3).unbind(1)):
        partial = partial + stage.codebook.detach()[idx]
        errors.append(float((flat - partial).square().mean()))
    assert errors[0] > errors[1] > errors[2]
    assert torch.allclose(out.quantized.permute(0, 2, 3, 1).reshape(-1, DIM), partial)
    with pytest.raises(ValueError, match=r"\(B, h, w, 3\)"):
        q.indices_to_codes(out.indices[..., :2])


def test_residual_ema_stages_have_no_codebook_loss() -> None:
    q = QUANTIZERS.create("rvq", dim=DIM, num_quantizers=2, codebook_size=16, stage="vq_ema", decay=0.9)
    out = q.train()(latents())
    assert float(out.codebook_loss) == 0.0 and float(out.commitment_loss) > 0
    assert all(stage.decay == 0.9 for stage in q.stages)


def test_fsq_implicit_codebook() -> None:
    q = FiniteScalarQuantizer(dim=4, levels=(8, 5, 5, 5)).eval()
    assert q.codebook_size == 1000 and q.index_shape == () and list(q.parameters()) == []
    grid = q.indices_to_codes(torch.arange(1000).view(10, 10, 10))  # (10, 4, 10, 10)
    codes = grid.permute(0, 2, 3, 1).reshape(-1, 4)
    assert codes.unique(dim=0).shape[0] == 1000  # every id is a distinct code
    half_width = torch.tensor([4.0, 2, 2, 2])
    assert torch.equal((codes * half_width).round(), codes * half_width)  # on the integer grid
    assert float(codes.min()) == -1.0 and float(codes.max()) == 1.0
    out = q(3 * latents(b=64, dim=4))  # wide inputs reach every level, and no more
    levels_seen = [out.quantized[:, i].unique().numel() for i in range(4)]
    assert levels_seen == [8, 5, 5, 5]
    assert float(out.loss) == 0.0 and float(out.codebook_loss) == 0.0 and float(out.commitment_loss) == 0.0


def test_fsq_bound_is_centred() -> None:
    q = FiniteScalarQuantizer(dim=3, levels=(8, 5, 2)).eval()
    out = q(torch.zeros(1, 3, 1, 1))
    # bound(0) = 0 (atanh shift): zero maps to code 0 for odd and even L (for even L, L / 2 levels
    # lie below 0 and L / 2 - 1 above)
    assert out.quantized.flatten().tolist() == [0.0, 0.0, 0.0]
    assert q.indices_to_codes(out.indices).flatten().tolist() == [0.0, 0.0, 0.0]


def test_fsq_indices_form_one_grid_a_prior_can_model() -> None:
    q = QUANTIZERS.create("fsq", dim=DIM, levels=[8, 5, 5, 5])  # a list, as from JSON
    assert q.levels == (8, 5, 5, 5) and q.codebook_size == 1000
    out = q(latents())
    assert out.indices.shape == (4, 5, 3)

"""Large vocabularies in bounded memory, and hot paths that never wait on the device.

Memory is measured in a fresh subprocess as the growth of its peak resident set
(``resource.getrusage``) over one or two training steps, against a control run at a tiny K, at
sizes that keep each run to seconds: the search's score tiles are shrunk to 1 MiB so that an
(N, K) matrix would stand out. The full K = 65,536 figures are in benchmarks/bench_large_codebooks.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch

from discrete_latents import BasePrior, CausalPrior, CausalPriorConfig, MaskedPriorConfig, PixelCNNPriorConfig
from discrete_latents.errors import NonFiniteError
from discrete_latents.priors import _chunked_loss, build_prior
from discrete_latents.quantizers import QUANTIZERS, VectorQuantizer, base, codebook
from discrete_latents.quantizers.codebook import nearest_code

MIB = 2 ** 20
N, K, DIM = 2048, 16384, 8  # (N, K) float32 scores would be 128 MiB

_PRELUDE = """
import json, resource, torch
torch.set_num_threads(1)
torch.manual_seed(0)
from discrete_latents.quantizers import QUANTIZERS, codebook
codebook._SCORE_BLOCK, codebook._CODE_BLOCK = 1 << 18, 512  # 1 MiB score tiles
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
"""


def _peak_growth_mib(setup: str, step: str) -> float:
    """Growth of the peak RSS of a fresh interpreter while running ``step`` (twice) after ``setup``."""
    body = f"{_PRELUDE}\n{setup}\nbefore = peak()\nfor _ in range(2):\n{textwrap.indent(step, '    ')}\n" \
           "print(json.dumps((peak() - before) / 2 ** 20))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def _quantizer_step(name: str, k: int, dim: int = DIM, **kwargs: Any) -> tuple[str, str]:
    setup = (f"q = QUANTIZERS.create({name!r}, dim={dim}, codebook_size={k}, **{kwargs!r}).train()\n"
             f"z = torch.randn({N // 256}, {dim}, 16, 16, requires_grad=True)")
    return setup, "out = q(z)\n(out.loss + out.quantized.square().mean()).backward()"


@pytest.fixture(scope="module")
def control_mib() -> float:
    """Growth of a training step at K = 64: the runtime's own first-step allocations."""
    return _peak_growth_mib(*_quantizer_step("vq", 64))


HEALTH = {"kmeans_init": True, "restart_dead_codes": True, "usage_decay": 0.0}  # restarts every step


@pytest.mark.parametrize("name", ["vq", "vq_ema", "vq_cosine"])
def test_codebook_training_step_memory_does_not_grow_with_n_times_k(name: str, control_mib: float) -> None:
    # k-means on the first step, restarts on both: every (N, K)- or heap-growing path would show.
    growth = _peak_growth_mib(*_quantizer_step(name, K, **HEALTH))
    full = N * K * 4 / MIB
    assert growth - control_mib < full / 8, f"{name}: +{growth:.0f} MiB (control +{control_mib:.0f}), scores {full:.0f}"


def test_lfq_entropy_at_eighteen_bits_in_bounded_memory(control_mib: float) -> None:
    # The exact batch-average distribution would be N x 2**18 float32: 2 GiB.
    setup = f"q = QUANTIZERS.create('lfq', dim=18).train()\nz = torch.randn({N // 256}, 18, 16, 16, requires_grad=True)"
    growth = _peak_growth_mib(setup, "out = q(z)\n(out.loss + out.quantized.square().mean()).backward()")
    assert growth - control_mib < 128, f"+{growth:.0f} MiB"


PRIOR_K, PRIOR_GRID, PRIOR_BATCH = 65536, (8, 8), 16  # full logits: 1024 x 65,536 float32 = 256 MiB
PRIOR_NAMES = ["causal", "pixelcnn", "masked"]


def _tiny_prior(name: str, k: int, grid: tuple[int, int], **fields: Any) -> BasePrior:
    """A small prior of each built-in kind over K codes."""
    torch.manual_seed(0)
    if name == "causal":
        return build_prior(CausalPriorConfig(codebook_size=k, grid_size=grid, n_layer=1, n_head=2, n_embd=8, **fields))
    if name == "masked":
        return build_prior(MaskedPriorConfig(codebook_size=k, grid_size=grid, n_layer=1, n_head=2, n_embd=8, **fields))
    return build_prior(PixelCNNPriorConfig(codebook_size=k, grid_size=grid, hidden_channels=8, n_layer=1, **fields))


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_prior_loss_never_holds_the_logits(name: str) -> None:
    def growth(k: int) -> float:
        setup = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
                 f"from test_large_codebooks import _tiny_prior\n"
                 f"from discrete_latents.priors import _chunked_loss\n"
                 f"_chunked_loss._CHUNK_ELEMENTS = 1 << 20  # 4 MiB of logits per chunk\n"
                 f"prior = _tiny_prior({name!r}, {k}, {PRIOR_GRID}).train()\n"
                 f"codes = torch.randint(0, {k}, ({PRIOR_BATCH}, *{PRIOR_GRID}))")
        return _peak_growth_mib(setup, "prior.loss(codes).backward()")

    large, control = growth(PRIOR_K), growth(64)  # the control: the same step at K = 64
    full = PRIOR_BATCH * PRIOR_GRID[0] * PRIOR_GRID[1] * PRIOR_K * 4 / MIB
    assert large - control < full / 8, f"+{large:.0f} MiB (control +{control:.0f}), logits {full:.0f}"


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_priors_train_and_sample_with_65536_codes(name: str) -> None:
    k, grid = 65536, (2, 3)
    prior = _tiny_prior(name, k, grid).train()
    codes = torch.randint(0, k, (4, *grid), generator=torch.Generator().manual_seed(0))
    loss = prior.loss(codes)
    loss.backward()
    assert abs(float(loss.detach()) - math.log(k)) < 1.0  # an untrained prior is near uniform: ln K = 11.09 nats
    steps: dict[str, Any] = {"steps": 4} if name == "masked" else {}  # parallel steps, at most h*w
    samples = prior.sample(3, top_k=100, generator=torch.Generator().manual_seed(0), **steps)
    assert samples.shape == (3, *grid) and int(samples.min()) >= 0 and int(samples.max()) < k


# --- exactness of the bounded paths -------------------------------------------------------------
def test_tiled_search_matches_brute_force_and_keeps_ties_low(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    book = torch.randn(70, 5, generator=g)
    book[65] = book[3]  # the same code in a later tile: ties go to the lowest index, 3
    flat = torch.cat([torch.randn(50, 5, generator=g), book[3:4] + 1e-4])
    monkeypatch.setattr(codebook, "_CODE_BLOCK", 16)  # 16 codes x 4 rows: 5 code tiles, 13 row blocks
    monkeypatch.setattr(codebook, "_SCORE_BLOCK", 64)
    got = nearest_code(flat, book)
    brute = ((flat.double()[:, None] - book.double()[None]) ** 2).sum(-1).argmin(1)  # exact ties
    assert torch.equal(got, brute)
    assert int(got[-1]) == 3


def _count_searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = codebook.nearest_code

    def counted(flat: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        calls.append(flat.shape[0])
        return real(flat, book)

    monkeypatch.setattr(codebook, "nearest_code", counted)
    return calls


def test_kmeans_with_fewer_rows_than_codes_makes_every_row_a_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_searches(monkeypatch)
    q = VectorQuantizer(dim=4, codebook_size=64, kmeans_init=True, kmeans_iters=10).train()
    z = torch.randn(1, 4, 4, 5)  # 20 rows for 64 codes
    out = q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert all(any(torch.equal(code, row) for code in q.weight.detach()) for row in rows)
    assert float(out.commitment_loss) == 0.0  # each row is its own code
    assert len(calls) == 3  # k-means: one search, a second that moves nothing, then the step's own


def test_kmeans_stops_early_on_separated_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_searches(monkeypatch)
    centers = 10.0 * torch.eye(4)
    rows = centers.repeat(50, 1) + 0.01 * torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    q = VectorQuantizer(dim=4, codebook_size=4, kmeans_init=True, kmeans_iters=50).train()
    q(rows.reshape(1, 10, 20, 4).permute(0, 3, 1, 2))
    assert len(calls) < 10  # converged long before 50 iterations
    assert torch.allclose(q.weight.detach().sort(0).values, rows.reshape(50, 4, 4).mean(0).sort(0).values, atol=1e-5)


@pytest.mark.parametrize("name", ["vq", "vq_ema", "vq_cosine", "lfq"])
def test_non_finite_batch_changes_no_state_where_the_input_check_is_skipped(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # On an accelerator (or under compile) forward does not read the input back to raise; the
    # state updates are masked on the device instead. Take that path on CPU.
    kwargs = {} if name == "lfq" else {"codebook_size": 16, "restart_dead_codes": True, "usage_decay": 0.0}
    q = QUANTIZERS.create(name, dim=4, **kwargs).train()
    q(torch.randn(2, 4, 3, 3))
    before = {k: v.clone() for k, v in q.state_dict().items()}
    monkeypatch.setattr(base, "values_are_cheap", lambda tensor: False)
    z = torch.randn(2, 4, 3, 3)
    z[1, 2, 0, 0] = float("nan")
    out = q(z)
    assert not torch.isfinite(out.loss)  # the NaN shows where a training loop checks anyway
    after = q.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    q(torch.randn(2, 4, 3, 3))  # a finite batch updates again
    assert any(not torch.equal(before[k], q.state_dict()[k]) for k in before)


# --- the loss-only path of the priors ------------------------------------------------------------
def _small_prior(name: str) -> BasePrior:
    return _tiny_prior(name, 40, (3, 4), num_classes=3, label_dropout=0.0)


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_loss_equals_forward_loss_with_the_same_gradients(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chunked_loss, "_CHUNK_ELEMENTS", 5 * 40)  # 5 rows a chunk: 8 chunks of 36 rows
    prior = _small_prior(name).train()
    codes = torch.randint(0, 40, (3, 3, 4), generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 2, 1])
    # The masked prior scores the codes it hides: the same hidden set for both paths.
    hide: dict[str, Any] = {"mask": torch.rand(3, 3, 4, generator=torch.Generator().manual_seed(3)) < 0.5} \
        if name == "masked" else {}
    reference = prior(codes, labels, **hide).loss
    reference.backward()
    expected = {k: p.grad.clone() for k, p in prior.named_parameters() if p.grad is not None}
    prior.zero_grad()
    loss = prior(codes, labels, return_logits=False, **hide)
    loss.backward()
    torch.testing.assert_close(loss, reference)
    for key, grad in expected.items():
        torch.testing.assert_close(dict(prior.named_parameters())[key].grad, grad, msg=key)
    assert loss.shape == ()
    if name != "masked":
        assert torch.equal(prior.loss(codes, labels).detach(), loss.detach())
    with torch.no_grad():
        torch.testing.assert_close(prior(codes, labels, return_logits=False, **hide), reference.detach())


def test_loss_under_bf16_autocast_is_close_to_float32() -> None:
    prior = _small_prior("causal").train()
    codes = torch.randint(0, 40, (3, 3, 4), generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = prior.loss(codes, torch.tensor([0, 1, 2]))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, prior.loss(codes, torch.tensor([0, 1, 2])), rtol=2e-2, atol=2e-2)


# --- sampling without a read-back per code --------------------------------------------------------
_READ_BACKS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


def _count_read_backs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every Python-level read of a tensor's value (the calls that wait for a device)."""
    seen: list[str] = []
    for method in _READ_BACKS:
        real = getattr(torch.Tensor, method)

        def counted(self: torch.Tensor, *args: Any, _real: Any = real, _name: str = method, **kwargs: Any) -> Any:
            seen.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return seen


@pytest.mark.parametrize("grid", [(2, 2), (5, 6)])
@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_sampling_reads_values_back_a_fixed_number_of_times(name: str, grid: tuple[int, int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    prior = _tiny_prior(name, 16, grid)
    generator = torch.Generator().manual_seed(0)
    steps: dict[str, Any] = {"steps": 4} if name == "masked" else {}  # parallel steps, at most h*w
    seen = _count_read_backs(monkeypatch)
    prior.sample(3, top_k=5, top_p=0.9, generator=generator, **steps)
    # The final finiteness check, whatever the number of positions (or of parallel steps, for the
    # masked prior, which also reads once how many steps the grids need).
    assert len(seen) <= (2 if name == "masked" else 1), seen


def test_the_first_non_finite_position_is_named_once_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16))
    real = prior._next_logits

    def poisoned(codes: torch.Tensor, position: int, cond: Any, state: Any) -> torch.Tensor:
        logits = real(codes, position, cond, state)
        return logits.index_fill(0, torch.tensor([1]), float("nan")) if position >= 4 else logits

    monkeypatch.setattr(prior, "_next_logits", poisoned)
    with pytest.raises(NonFiniteError, match="at position 4;"):
        prior.sample(2, generator=torch.Generator().manual_seed(0))


def test_guidance_overflowing_to_minus_inf_is_not_taken_for_broken_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    # With s = 1e38, s * (c - u) overflows to -inf (and +inf at code 5): legitimate guided logits,
    # from finite model logits. The finiteness check belongs to the model's own logits.
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(2, 2), num_classes=3, label_dropout=0.1,
                                          n_layer=1, n_head=2, n_embd=16))
    unconditional = torch.randn(1, 16, generator=torch.Generator().manual_seed(0))
    conditional = unconditional.clone()
    conditional[0, 5] += 20.0
    rows = torch.cat([conditional, unconditional])
    monkeypatch.setattr(prior, "_next_logits", lambda codes, position, cond, state: rows)
    codes = prior.sample(1, labels=torch.tensor([1]), guidance_scale=1e38, generator=torch.Generator().manual_seed(0))
    assert codes.flatten().tolist() == [5, 5, 5, 5]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampling_synchronises_once() -> None:
    prior = CausalPrior(CausalPriorConfig(codebook_size=512, grid_size=(4, 4), n_layer=1, n_head=2,
                                          n_embd=32)).cuda()
    prior.sample(2)  # warm-up: lazy CUDA initialisation synchronises
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):  # the single check at the very end
            prior.sample(4, top_k=50, top_p=0.9)
        torch.cuda.set_sync_debug_mode("warn")
        with pytest.warns(UserWarning, match="synchroniz") as record:
            prior.sample(4, top_k=50, top_p=0.9)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in record if "synchroniz" in str(w.message)]) == 1

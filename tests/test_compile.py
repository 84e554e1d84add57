"""torch.compile: every quantizer's forward and every prior's training forward compile and match eager.

Every quantizer is traced whole (``fullgraph=True``) in training mode with its codebook-health
options on: a read of a tensor's value on the host (``.item()``, ``bool(t)``, ``nonzero``,
``bincount``), which would stall an accelerator once per step, cannot be traced and fails the
test. Those tests use the ``aot_eager`` backend (Dynamo and AOTAutograd without code generation),
which runs in seconds; a few use the default Inductor backend as well, skipped only where it
cannot run on the machine (no C++ compiler, say).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch

from discrete_latents import PRIORS, BasePrior
from discrete_latents.quantizers import QUANTIZERS, BaseQuantizer, CodebookQuantizer, ResidualVectorQuantizer

DIM = 8
TINY: dict[str, dict[str, Any]] = {
    "vq": {"codebook_size": 16},
    "vq_ema": {"codebook_size": 16},
    "vq_cosine": {"codebook_size": 16},
    "rvq": {"codebook_size": 16, "num_quantizers": 2},
    "fsq": {"levels": [4, 4, 3]},
}
# k-means on the eager first step, then restarts on every step (usage_decay 0: unused = dead).
HEALTH = {"kmeans_init": True, "restart_dead_codes": True, "dead_code_threshold": 0.5, "usage_decay": 0.0}
BUILTIN_QUANTIZERS = ["fsq", "lfq", "rvq", "vq", "vq_cosine", "vq_ema"]
BUILTIN_PRIORS = ["causal_transformer", "masked_transformer", "pixelcnn"]


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Any:
    torch._dynamo.reset()  # each test compiles from scratch: no cached graph or recompile limit carries over
    yield
    torch._dynamo.reset()


@functools.cache
def _inductor_available() -> str | None:
    """None where the default backend compiles and runs here, else why not."""
    try:
        torch.compile(lambda x: x.sin() + 1)(torch.ones(3))
    except Exception as err:  # no compiler, unsupported Python, ...: the reason goes in the skip
        return f"{type(err).__name__}: {err}"[:200]
    return None


def _quantizer(name: str) -> BaseQuantizer:
    torch.manual_seed(0)
    probe = QUANTIZERS.create(name, dim=DIM, **TINY.get(name, {}))
    health = isinstance(probe, (CodebookQuantizer, ResidualVectorQuantizer))
    return QUANTIZERS.create(name, dim=DIM, **TINY.get(name, {}), **(HEALTH if health else {}))


def _latents(seed: int) -> torch.Tensor:
    return torch.randn(4, DIM, 5, 3, generator=torch.Generator().manual_seed(seed))


def _assert_same_output(eager: Any, compiled: Any) -> None:
    assert torch.equal(eager.indices, compiled.indices)
    for field in ("quantized", "loss", "codebook_loss", "commitment_loss", "perplexity"):
        torch.testing.assert_close(getattr(compiled, field), getattr(eager, field), rtol=1e-5, atol=1e-5, msg=field)


def _check_quantizer(name: str, backend: str) -> None:
    eager = _quantizer(name).train()
    eager(_latents(0))  # the first step runs eagerly: k-means reads its convergence back, once
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True, backend=backend)
    for seed in (1, 2):
        torch.manual_seed(seed)  # the same restart draws in both
        expected = eager(_latents(seed))
        torch.manual_seed(seed)
        got = compiled(_latents(seed))
        _assert_same_output(expected, got)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[key], value, msg=key)
    eager.eval()
    twin.eval()
    _assert_same_output(eager(_latents(3)), compiled(_latents(3)))


@pytest.mark.parametrize("name", BUILTIN_QUANTIZERS)
def test_quantizer_training_forward_traces_whole_and_matches_eager(name: str) -> None:
    _check_quantizer(name, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vq_ema", "lfq"])
def test_quantizer_compiled_by_inductor_matches_eager(name: str) -> None:
    reason = _inductor_available()
    if reason is not None:
        pytest.skip(f"torch.compile cannot run here: {reason}")
    _check_quantizer(name, "inductor")


def _prior(name: str) -> BasePrior:
    torch.manual_seed(0)
    cls = PRIORS.get(name)
    tiny = {"causal_transformer": {"n_layer": 2, "n_head": 2, "n_embd": 16},
            "masked_transformer": {"n_layer": 2, "n_head": 2, "n_embd": 16},
            "pixelcnn": {"hidden_channels": 16, "n_layer": 2}}[name]
    return cls(cls.config_class(codebook_size=16, grid_size=(4, 5), num_classes=3, label_dropout=0.0, **tiny)).train()


def _check_prior(name: str, backend: str, loss_only: bool = True) -> None:
    prior = _prior(name)
    twin = copy.deepcopy(prior)
    compiled = torch.compile(twin, backend=backend)
    codes = torch.randint(0, 16, (3, 4, 5), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 1])
    # The masked prior hides codes at random: both calls hide the same ones.
    hide: dict[str, Any] = {"mask": torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(2)) < 0.5} \
        if name == "masked_transformer" else {}
    expected, got = prior(codes, labels, **hide), compiled(codes, labels, **hide)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)
    if loss_only:  # the trainer's path: the loss alone, and its gradients
        prior(codes, labels, return_logits=False, **hide).backward()
        compiled(codes, labels, return_logits=False, **hide).backward()
    else:
        expected.loss.backward()
        got.loss.backward()
    for (key, param), twin_param in zip(prior.named_parameters(), twin.parameters()):
        torch.testing.assert_close(twin_param.grad, param.grad, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", BUILTIN_PRIORS)
def test_prior_training_forward_compiles_and_matches_eager(name: str) -> None:
    _check_prior(name, "aot_eager")


@pytest.mark.slow
def test_prior_compiled_by_inductor_matches_eager() -> None:
    reason = _inductor_available()
    if reason is not None:
        pytest.skip(f"torch.compile cannot run here: {reason}")
    _check_prior("causal_transformer", "inductor", loss_only=False)

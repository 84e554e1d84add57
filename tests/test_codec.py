"""The codec: exact round trips (threads, batch sizes, modes, both priors), sizes against hand-computed
bit counts, the stream format, and hostile streams (empty, foreign, truncated, bit-flipped, another
pipeline, huge claimed counts), each refused with one CodecError.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from discrete_latents import (
    VQVAE,
    BasePrior,
    CausalPrior,
    CausalPriorConfig,
    MaskedPrior,
    MaskedPriorConfig,
    PixelCNNPrior,
    PixelCNNPriorConfig,
    VQVAEConfig,
    codec,
)
from discrete_latents._codec_format import CHUNK_SIZE, varint
from discrete_latents._pipeline import VQVAEPipeline
from discrete_latents.cli import main
from discrete_latents.errors import CodecError

K = 16


def sharpened(prior: BasePrior, seed: int = 0) -> BasePrior:
    """Large random weights: peaked, varied probabilities, so any difference in the floats shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in prior.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return prior.eval()


def causal(grid: tuple[int, int] = (3, 3), num_classes: int = 0, label_dropout: float = 0.1, seed: int = 0,
           **frequencies: tuple[float, ...]) -> CausalPrior:
    config = CausalPriorConfig(codebook_size=K, grid_size=grid, n_layer=2, n_head=2, n_embd=16,
                               num_classes=num_classes, label_dropout=label_dropout, **frequencies)
    return sharpened(CausalPrior(config), seed)  # type: ignore[return-value]


def pixelcnn(num_classes: int = 0) -> PixelCNNPrior:
    config = PixelCNNPriorConfig(codebook_size=K, grid_size=(4, 4), hidden_channels=8, n_layer=2,
                                 num_classes=num_classes)
    return sharpened(PixelCNNPrior(config))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def plain() -> CausalPrior:
    return causal()


@pytest.fixture(scope="module")
def conditional() -> CausalPrior:
    return causal(num_classes=3, class_frequencies=(0.5, 0.25, 0.25))


@pytest.fixture
def threads() -> Iterator[None]:
    """Restore torch's thread count after a test that changes it."""
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def random_codes(count: int, grid: tuple[int, int] = (3, 3), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (count, *grid), generator=torch.Generator().manual_seed(seed))


def stream(prior: BasePrior, count: int = 3, labels: object = None, seed: int = 0) -> bytes:
    return codec.compress_codes(prior, random_codes(count, prior.grid_size, seed), labels)  # type: ignore[arg-type]


# round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 2, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 5])
def test_round_trip_is_exact_for_any_count(plain: CausalPrior, count: int) -> None:
    codes = random_codes(count, seed=count)
    decoded = codec.decompress_codes(plain, codec.compress_codes(plain, codes))
    assert torch.equal(decoded.codes, codes)
    assert decoded.labels is None


def test_labels_are_stored_and_given_back(conditional: CausalPrior) -> None:
    codes, labels = random_codes(150), torch.tensor([0, 1, 2] * 50)
    decoded = codec.decompress_codes(conditional, codec.compress_codes(conditional, codes, labels))
    assert torch.equal(decoded.codes, codes)
    assert torch.equal(decoded.labels, labels)  # type: ignore[arg-type]


def test_without_labels_a_conditional_prior_still_round_trips(conditional: CausalPrior) -> None:
    codes = random_codes(140)
    data = codec.compress_codes(conditional, codes)
    assert codec.read_header(data).mode is codec.Mode.CHOSEN
    decoded = codec.decompress_codes(conditional, data)
    assert torch.equal(decoded.codes, codes) and decoded.labels is None


def test_without_label_search_every_grid_is_coded_in_the_no_label_mode(conditional: CausalPrior) -> None:
    codes = random_codes(CHUNK_SIZE + 12)
    data = codec.compress_codes(conditional, codes, choose_labels=False)
    info = codec.read_header(data)
    assert info.mode is codec.Mode.NO_LABEL and data[2] == 0x13  # version 1, mode 3
    decoded = codec.decompress_codes(conditional, data)
    assert torch.equal(decoded.codes, codes) and decoded.labels is None
    # Nothing is stored per grid: the payloads are the "no label" NLL, plus per chunk (2) the
    # 32-bit checksum and rounding to bytes, plus the first payload's length (2-byte varint).
    nll_bytes = float(conditional.bits_per_image(conditional.nll(codes)).sum()) / 8  # type: ignore[union-attr]
    payloads = len(data) - info.header_size
    assert nll_bytes < payloads <= math.ceil(nll_bytes) + 2 * 5 + 2


def test_choose_labels_must_be_a_bool(conditional: CausalPrior) -> None:
    with pytest.raises(ValueError, match="choose_labels: expected True or False"):
        codec.compress_codes(conditional, random_codes(2), choose_labels="no")  # type: ignore[arg-type]


def test_the_chosen_condition_is_the_cheapest_in_all(conditional: CausalPrior) -> None:
    codes = random_codes(40)
    # Bits of each image under each class and "no label" (id 3), from the prior's own NLL, plus the
    # cost of the condition itself: "no label" has the label-dropout rate 0.1, class y 0.9 * f_y.
    weights = [0.9 * 0.5, 0.9 * 0.25, 0.9 * 0.25, 0.1]
    costs = torch.stack([conditional.bits_per_image(conditional.nll(codes, torch.full((40,), y)))  # type: ignore[misc]
                         if y < 3 else conditional.bits_per_image(conditional.nll(codes))
                         for y in range(4)]).double() - torch.tensor(weights).double().log2()[:, None]
    chosen = codec._cheapest_conditions(conditional, codes, np.array(weights))
    assert np.array_equal(chosen, costs.argmin(0).numpy())
    assert len(set(chosen.tolist())) > 1  # the sharp random prior prefers different conditions


def test_no_label_is_never_chosen_without_label_dropout() -> None:
    prior = causal(num_classes=2, label_dropout=0.0)
    codes = random_codes(60)
    chosen = codec._cheapest_conditions(prior, codes, np.array([0.5, 0.5, 0.0]))
    assert set(chosen.tolist()) <= {0, 1}
    assert torch.equal(codec.decompress_codes(prior, codec.compress_codes(prior, codes)).codes, codes)


@pytest.mark.parametrize("labelled", [True, False])
def test_pixelcnn_prior_round_trips(labelled: bool) -> None:
    prior = pixelcnn(num_classes=2)
    codes, labels = random_codes(CHUNK_SIZE + 3, (4, 4)), torch.arange(CHUNK_SIZE + 3) % 2
    decoded = codec.decompress_codes(prior, codec.compress_codes(prior, codes, labels if labelled else None))
    assert torch.equal(decoded.codes, codes)
    assert torch.equal(decoded.labels, labels) if labelled else decoded.labels is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("encode_threads", "decode_threads"), [(1, 2), (2, 1), (2, 2)])
def test_round_trip_is_exact_across_thread_counts(conditional: CausalPrior, threads: None, encode_threads: int,
                                                  decode_threads: int) -> None:
    codes, labels = random_codes(3 * CHUNK_SIZE, seed=1), torch.arange(3 * CHUNK_SIZE) % 3
    torch.set_num_threads(encode_threads)
    data = codec.compress_codes(conditional, codes, labels)
    assert torch.get_num_threads() == encode_threads  # the caller's setting is restored
    torch.set_num_threads(decode_threads)
    decoded = codec.decompress_codes(conditional, data)
    assert torch.equal(decoded.codes, codes) and torch.equal(decoded.labels, labels)  # type: ignore[arg-type]
    torch.set_num_threads(3 - encode_threads)
    assert codec.compress_codes(conditional, codes, labels) == data  # the bytes do not depend on threads


def test_the_prior_is_left_in_the_mode_it_was_in(conditional: CausalPrior) -> None:
    conditional.train()
    try:
        data = stream(conditional, 5, [0, 1, 2, 0, 1])
        codec.decompress_codes(conditional, data)
        assert conditional.training
    finally:
        conditional.eval()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(1, 2 * CHUNK_SIZE + 2), labelled=st.booleans(), seed=st.integers(0, 2**31 - 1),
       low=st.integers(0, K - 1))
def test_property_round_trips_over_random_grids_labels_and_counts(conditional: CausalPrior, count: int,
                                                                   labelled: bool, seed: int, low: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(low, K, (count, 3, 3), generator=generator)  # from one code to all K
    labels = torch.randint(0, 3, (count,), generator=generator) if labelled else None
    decoded = codec.decompress_codes(conditional, codec.compress_codes(conditional, codes, labels))
    assert torch.equal(decoded.codes, codes)
    assert decoded.labels is None if labels is None else torch.equal(decoded.labels, labels)  # type: ignore[arg-type]


# sizes ---------------------------------------------------------------------------------------------
def uniform_prior(grid: tuple[int, int] = (3, 3)) -> CausalPrior:
    """Zero weights: every logit is 0, so every code costs exactly log2(16) = 4 bits."""
    prior = CausalPrior(CausalPriorConfig(codebook_size=K, grid_size=grid, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for param in prior.parameters():
            param.zero_()
    return prior


@pytest.mark.parametrize("count", [1, 10, 100])
def test_a_uniform_prior_costs_4_bits_per_code_plus_the_checksum(count: int) -> None:
    data = codec.compress_codes(uniform_prior(), random_codes(count))
    header = 2 + 1 + 4 + 1  # magic, version|mode, fingerprint, count < 128
    payload = len(data) - header
    # 9 codes x 4 bits per image on top of the 32-bit checksum, which has up to 31 leading zero bits.
    assert 36 * count / 8 < payload <= math.ceil((36 * count + 32) / 8)


def test_sizes_track_the_prior_nll(plain: CausalPrior) -> None:
    codes = random_codes(CHUNK_SIZE)
    nll_bytes = float(plain.bits_per_image(plain.nll(codes)).sum()) / 8  # type: ignore[union-attr]
    payload = len(codec.compress_codes(plain, codes)) - 8
    assert nll_bytes < payload < nll_bytes + 6  # the checksum (4 bytes) and rounding to whole bytes


# stream format -------------------------------------------------------------------------------------
def test_varint_and_header_bytes_are_as_documented(plain: CausalPrior) -> None:
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(300) == b"\xac\x02"
    data = stream(plain, 300)
    mark = codec.fingerprint_of(plain)
    assert data[:9] == b"DL\x10" + mark + b"\xac\x02"
    info = codec.read_header(data)
    assert (info.version, info.mode, info.fingerprint, info.num_images, info.header_size) == (1, 0, mark, 300, 9)


def test_fingerprint_changes_with_any_weight_or_setting() -> None:
    a, b = causal(seed=0), causal(seed=0)
    assert codec.fingerprint_of(a) == codec.fingerprint_of(b)
    with torch.no_grad():
        b.wpe.weight[0, 0] += 1e-6
    assert codec.fingerprint_of(a) != codec.fingerprint_of(b)
    assert codec.fingerprint_of(a) != codec.fingerprint_of(causal(seed=0, label_dropout=0.2))


# errors --------------------------------------------------------------------------------------------
def test_empty_and_foreign_streams(plain: CausalPrior) -> None:
    with pytest.raises(CodecError, match="empty"):
        codec.decompress_codes(plain, b"")
    with pytest.raises(CodecError, match=r"not a discrete_latents codec stream \(it starts with b'\\x89PNG"):
        codec.decompress_codes(plain, b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(TypeError, match="data: expected the bytes"):
        codec.decompress_codes(plain, "DL...")  # type: ignore[arg-type]


def test_a_stream_from_another_pipeline_is_refused(plain: CausalPrior) -> None:
    with pytest.raises(CodecError, match="written by another pipeline"):
        codec.decompress_codes(causal(seed=1), stream(plain))


def test_a_newer_format_version_asks_for_an_upgrade(plain: CausalPrior) -> None:
    data = bytearray(stream(plain))
    data[2] = 2 << 4
    with pytest.raises(CodecError, match="format version 2 is newer.*upgrade"):
        codec.decompress_codes(plain, bytes(data))


def test_a_header_claiming_a_billion_images_is_refused_before_decoding(plain: CausalPrior) -> None:
    data = b"DL\x10" + codec.fingerprint_of(plain) + varint(10**9) + bytes(range(1, 100))
    with pytest.raises(CodecError, match="claims 1000000000 images"):
        codec.decompress_codes(plain, data)
    with pytest.raises(CodecError, match="image count"):  # over the format's limit, or an overlong varint
        codec.read_header(b"DL\x10" + bytes(4) + varint(2**41) + b"\x01")
    with pytest.raises(CodecError, match="image count"):
        codec.read_header(b"DL\x10" + bytes(4) + b"\x81\x00\x01")


def test_every_truncation_is_refused(plain: CausalPrior) -> None:
    data = stream(plain, CHUNK_SIZE + 2)
    cuts = sorted(set(range(12)) | set(range(12, len(data), 7)) | {len(data) - 1})
    for cut in cuts:
        with pytest.raises(CodecError):
            codec.decompress_codes(plain, data[:cut])


def test_every_single_bit_flip_is_refused(conditional: CausalPrior) -> None:
    data = stream(conditional, 2, [0, 2])
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CodecError):
            codec.decompress_codes(conditional, bytes(flipped))


def test_appended_bytes_are_refused(plain: CausalPrior) -> None:
    with pytest.raises(CodecError, match="checksum|corrupt"):
        codec.decompress_codes(plain, stream(plain) + b"\x07")


def test_different_arithmetic_fails_the_checksum(plain: CausalPrior) -> None:
    """Decoding with slightly different probabilities (as on another machine) fails the checksum."""
    data = stream(plain, 20)
    other = causal(seed=0)
    with torch.no_grad():
        other.ln_f.weight.mul_(1.001)
    with pytest.raises(CodecError, match="checksum.*computes the prior's probabilities differently"):
        codec.decompress_codes(other, data, fingerprint=codec.fingerprint_of(plain))


def test_a_prior_without_exact_raster_likelihood_is_refused() -> None:
    class Shuffled(BasePrior):  # a stand-in for any prior the coder cannot drive
        raster_order = False

        def _logits(self, indices: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
            return torch.zeros(*indices.shape, K)

        def _next_logits(self, codes: torch.Tensor, position: int, cond: torch.Tensor | None,
                         state: object) -> torch.Tensor:
            return torch.zeros(codes.shape[0], K)

    prior = Shuffled(CausalPriorConfig(codebook_size=K, grid_size=(3, 3)))
    with pytest.raises(CodecError, match="Shuffled cannot drive the entropy coder.*CausalPrior or PixelCNNPrior"):
        codec.compress_codes(prior, random_codes(2))
    masked = MaskedPrior(MaskedPriorConfig(codebook_size=K, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(CodecError, match="MaskedPrior cannot drive the entropy coder"):
        codec.compress_codes(masked, random_codes(2))


def test_bad_codes_and_labels_name_the_argument(plain: CausalPrior, conditional: CausalPrior) -> None:
    with pytest.raises(ValueError, match="codes: code ids must lie in"):
        codec.compress_codes(plain, torch.full((1, 3, 3), K))
    with pytest.raises(ValueError, match="labels: this prior is unconditional"):
        codec.compress_codes(plain, random_codes(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels: expected 2 labels"):
        codec.compress_codes(conditional, random_codes(2), torch.tensor([0]))


def test_missing_constriction_names_the_extra(plain: CausalPrior, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "constriction", None)  # what `import` sees when it is not installed
    with pytest.raises(ImportError, match=r"discrete_latents\[codec\]"):
        codec.compress_codes(plain, random_codes(1))


# pipeline and command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe() -> VQVAEPipeline:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": K}))
    prior = sharpened(CausalPrior(CausalPriorConfig(codebook_size=K, grid_size=(7, 7), n_layer=1, n_head=2,
                                                    n_embd=16, num_classes=10)))
    return VQVAEPipeline(vqvae=vqvae.eval(), prior=prior)


def test_pipeline_decompress_gives_the_reconstruction(pipe: VQVAEPipeline) -> None:
    images, labels = torch.rand(5, 1, 28, 28), torch.tensor([3, 1, 4, 1, 5])
    data = pipe.compress(images, labels)
    restored, stored = pipe.decompress(data, return_labels=True)
    assert torch.equal(restored, pipe.reconstruct(images))
    assert torch.equal(stored, labels)  # type: ignore[arg-type]
    assert torch.equal(pipe.decompress_codes(pipe.compress_codes(pipe.encode(images))), pipe.encode(images))


def test_pipeline_streams_carry_the_vqvae_too(pipe: VQVAEPipeline) -> None:
    vqvae = VQVAE(pipe.vqvae.config).eval()
    vqvae.load_state_dict(pipe.vqvae.state_dict())
    with torch.no_grad():
        vqvae.decoder.proj.bias.add_(0.01)  # the same prior, another decoder: other images
    other = VQVAEPipeline(vqvae=vqvae, prior=pipe.prior)
    assert other.compress_codes(torch.zeros(1, 7, 7, dtype=torch.long))[3:7] != \
        pipe.compress_codes(torch.zeros(1, 7, 7, dtype=torch.long))[3:7]
    with pytest.raises(CodecError, match="another pipeline"):
        other.decompress(pipe.compress(torch.rand(1, 1, 28, 28)))


def test_cli_compresses_a_folder_and_decompresses_to_pngs(pipe: VQVAEPipeline, tmp_path: Path) -> None:
    folder = pipe.save_pretrained(tmp_path / "pipeline")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image, mode="L").save(tmp_path / "in" / f"{i}.png")
    out = tmp_path / "digits.dlc"
    assert main(["compress", str(tmp_path / "in"), "--out", str(out), "--pipeline", str(folder)]) == 0
    assert main(["decompress", str(out), "--out-dir", str(tmp_path / "out"), "--pipeline", str(folder)]) == 0
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == ["000000.png", "000001.png", "000002.png"]
    fast = tmp_path / "fast.dlc"
    assert main(["compress", str(tmp_path / "in"), "--out", str(fast), "--pipeline", str(folder),
                 "--no-label-search"]) == 0
    assert codec.read_header(out.read_bytes()).mode is codec.Mode.CHOSEN
    assert codec.read_header(fast.read_bytes()).mode is codec.Mode.NO_LABEL
    expected = pipe.reconstruct(torch.from_numpy(pixels).float().div(255)[:, None])
    for path, image in zip(written, expected):
        assert np.array_equal(np.array(Image.open(path)), (image[0] * 255).round().to(torch.uint8).numpy())


def test_cli_refuses_a_corrupt_file_with_status_2(pipe: VQVAEPipeline, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = pipe.save_pretrained(tmp_path / "pipeline")
    (tmp_path / "bad.dlc").write_bytes(b"DL\x10\x00")
    assert main(["decompress", str(tmp_path / "bad.dlc"), "--out-dir", str(tmp_path / "out"),
                 "--pipeline", str(folder)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_the_python_example_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "codec.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(page), "exec"), {})  # noqa: S102 - the page's own code

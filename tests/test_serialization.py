"""Weights files under faults (reliability cases ST-01..ST-19, PK-01/02, CF-11, CF-14, CF-15).

Every case corrupts a real ``model.safetensors`` written by ``save_pretrained`` (or builds a
small file by hand) and checks that loading fails with a documented error that names the
problem, never with a crash, a bare ``KeyError`` or a silently wrong model.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from discrete_latents import PRIORS, VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig
from discrete_latents import _safetensors as serialization
from discrete_latents._safetensors import (
    MAX_HEADER_BYTES,
    inspect_safetensors,
    load_module,
    read_safetensors,
    save_module,
    write_safetensors,
)
from discrete_latents.errors import CheckpointFormatError, ConfigError, NonFiniteError, UnknownComponentError

SIZE_MESSAGE = re.compile(r"expected (?:at least )?(\d+) bytes, found (\d+)")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# helpers -----------------------------------------------------------------------------------------
def pack(header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


def split(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def two_tensors(offsets_a: list, offsets_b: list, data: bytes = bytes(32)) -> bytes:
    return pack({"a": {"dtype": "F32", "shape": [4], "data_offsets": offsets_a},
                 "b": {"dtype": "F32", "shape": [4], "data_offsets": offsets_b}}, data)


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> tuple[VQVAE, Path]:
    """A tiny VQ-VAE saved with save_pretrained; tests corrupt ``folder / model.safetensors``."""
    model = VQVAE(tiny_vqvae_config).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model, folder


def weights(folder: Path) -> Path:
    return folder / "model.safetensors"


def expect_format_error(folder: Path, *fragments: str) -> str:
    """from_pretrained(folder) must raise CheckpointFormatError naming the file and each fragment."""
    with pytest.raises(CheckpointFormatError) as info:
        VQVAE.from_pretrained(folder)
    message = str(info.value)
    assert "model.safetensors" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def save_state(folder: Path, state: dict[str, torch.Tensor]) -> None:
    """Overwrite the weights with a valid safetensors file holding ``state``."""
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(weights(folder)))


# ST-01, ST-02: size and header length --------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 7])
def test_st01_shorter_than_8_bytes(saved, size: int) -> None:
    _, folder = saved
    weights(folder).write_bytes(b"\x01" * size)
    message = expect_format_error(folder)
    assert SIZE_MESSAGE.search(message).groups() == ("8", str(size))


@pytest.mark.parametrize("header_len", [2**63, 2**64 - 1, MAX_HEADER_BYTES + 1])
def test_st02_header_length_over_cap(saved, header_len: int) -> None:
    _, folder = saved
    weights(folder).write_bytes(struct.pack("<Q", header_len) + b"{}" * 8)
    expect_format_error(folder, str(header_len), "limit")


def test_st02_header_longer_than_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pack(b"{}", header_len=1000))
    with pytest.raises(CheckpointFormatError) as info:
        read_safetensors(path)
    assert SIZE_MESSAGE.search(str(info.value)).groups() == ("1008", "10")


# ST-03, ST-04: foreign files ----------------------------------------------------------------------
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 45941\n")


def test_st03_git_lfs_pointer(saved) -> None:
    _, folder = saved
    weights(folder).write_bytes(LFS_POINTER)
    expect_format_error(folder, "Git LFS pointer", "git lfs pull")


@pytest.mark.parametrize("page", [b"<!DOCTYPE html><html><body>Not Found</body></html>",
                                  b"\n  <html><head><title>403 Forbidden</title></head></html>",
                                  b"\xef\xbb\xbf<!doctype html>\n<html lang=en></html>"])
def test_st04_html_page(saved, page: bytes) -> None:
    _, folder = saved
    weights(folder).write_bytes(page)
    expect_format_error(folder, "HTML page")


# ST-05: header content --------------------------------------------------------------------------
@pytest.mark.parametrize("header, fragment", [
    (b"\xff\xfe{\x00}\x00", "not UTF-8"),
    (b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "\xc3\x28": 1}', "not UTF-8"),
    (b"{not json", "invalid JSON"),
    (b"", "empty"),
    (b"[]", "must be a JSON object, got list"),
    (b'[{"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}]', "must be a JSON object"),
    (b'"weights"', "must be a JSON object, got str"),
    (b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},'
     b' "a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', "duplicate key 'a'"),
    (b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}', "not valid JSON"),
    (b'{"a": [1, 2]}', "malformed header entry"),
    (b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0], "extra": 1}}', "malformed header entry"),
    (b'{"__metadata__": {"format": 1}}', "__metadata__"),
])
def test_st05_bad_header(tmp_path: Path, header: bytes, fragment: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pack(header))
    with pytest.raises(CheckpointFormatError, match=re.escape(fragment)) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)


def test_st05_deeply_nested_header(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pack(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    with pytest.raises(CheckpointFormatError, match="nested too deeply|not valid JSON|malformed"):
        read_safetensors(path)


def test_st05_bad_header_in_a_saved_model(saved) -> None:
    _, folder = saved
    header, data = split(weights(folder).read_bytes())
    weights(folder).write_bytes(pack(json.dumps(list(header.values())).encode(), data))
    expect_format_error(folder, "JSON object")


# ST-06, ST-07: truncation and trailing bytes ------------------------------------------------------
@pytest.mark.parametrize("cut", ["1 byte", "7 bytes", "inside header", "header only", "half", "last byte"])
def test_st06_truncated(saved, cut: str) -> None:
    _, folder = saved
    blob = weights(folder).read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    keep = {"1 byte": 1, "7 bytes": 7, "inside header": 8 + header_len // 2, "header only": 8 + header_len,
            "half": len(blob) // 2, "last byte": len(blob) - 1}[cut]
    weights(folder).write_bytes(blob[:keep])
    message = expect_format_error(folder, "expected", f"found {keep}")
    expected, found = map(int, SIZE_MESSAGE.search(message).groups())
    assert found == keep
    if keep >= 8 + header_len:  # the header is intact, so the full size is known
        assert expected == len(blob)
        assert "truncated" in message
    else:
        assert expected > keep


def test_st06_truncated_file_never_loads_as_zeros(saved) -> None:
    """A file cut inside the data must not come back as a model padded with zeros."""
    _, folder = saved
    blob = weights(folder).read_bytes()
    weights(folder).write_bytes(blob[:-4])
    with pytest.raises(CheckpointFormatError):
        read_safetensors(weights(folder))


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 4096, b"<html>"])
def test_st07_trailing_bytes(saved, extra: bytes) -> None:
    _, folder = saved
    blob = weights(folder).read_bytes()
    weights(folder).write_bytes(blob + extra)
    message = expect_format_error(folder, "trailing bytes")
    assert SIZE_MESSAGE.search(message).groups() == (str(len(blob)), str(len(blob) + len(extra)))


# ST-08: data_offsets --------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, fragment", [
    ([0, 16], [8, 24], "overlaps"),
    ([0, 16], [0, 16], "overlaps"),
    ([0, 16], [20, 36], "gap"),
    ([4, 20], [20, 36], "gap"),
    ([16, 0], [16, 32], "invalid data_offsets"),
    ([], [0, 16], "invalid data_offsets"),
    ([0], [0, 16], "invalid data_offsets"),
    ([0, 16, 32], [16, 32], "invalid data_offsets"),
    ([0.0, 16.0], [16, 32], "invalid data_offsets"),
    ([-16, 0], [0, 16], "invalid data_offsets"),
    ("0-16", [16, 32], "invalid data_offsets"),
])
def test_st08_bad_data_offsets(tmp_path: Path, a, b, fragment: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(two_tensors(a, b, bytes(40)))
    with pytest.raises(CheckpointFormatError, match=fragment):
        read_safetensors(path)


def test_st08_valid_layout_control(tmp_path: Path) -> None:
    """The hand-built layout itself is valid, so the cases above fail for the fault alone."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(two_tensors([0, 16], [16, 32], struct.pack("<8f", *range(8))))
    tensors = read_safetensors(path)
    assert tensors["a"].tolist() == [0, 1, 2, 3] and tensors["b"].tolist() == [4, 5, 6, 7]


def test_st08_overlapping_offsets_in_a_saved_model(saved) -> None:
    _, folder = saved
    header, data = split(weights(folder).read_bytes())
    name = next(n for n, e in header.items() if e["data_offsets"][0] > 0)
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [start - 4, end - 4]
    weights(folder).write_bytes(pack(header, data))
    expect_format_error(folder, name)


# ST-09, ST-10: sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, dtype", [([5], "F32"), ([4], "F64"), ([2, 2], "F16"), ([], "F32")])
def test_st09_shape_times_dtype_is_not_the_span(tmp_path: Path, shape, dtype) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pack({"a": {"dtype": dtype, "shape": shape, "data_offsets": [0, 16]}}, bytes(16)))
    with pytest.raises(CheckpointFormatError, match=r"'a' of shape .* needs \d+ bytes, its data_offsets span 16"):
        read_safetensors(path)


@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**64 + 1], [2**32, 2**32, 2**32], [3, 2**200]])
def test_st10_shape_product_overflows_u64(tmp_path: Path, shape) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pack({"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}}, bytes(16)))
    with pytest.raises(CheckpointFormatError, match="needs"):
        read_safetensors(path)


def test_st10_huge_shape_with_matching_huge_offsets(tmp_path: Path) -> None:
    """Offsets that agree with a huge shape still fail on the file size, before any allocation."""
    path = tmp_path / "w.safetensors"
    span = 4 * 2**80
    path.write_bytes(pack({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, span]}}, bytes(16)))
    with pytest.raises(CheckpointFormatError, match="truncated") as info:
        read_safetensors(path)
    expected, found = map(int, SIZE_MESSAGE.search(str(info.value)).groups())
    assert expected > span and found == path.stat().st_size


# ST-11, ST-12: dtypes and empty tensors --------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["F128", "C64", "U128", "f32", 4, None])
def test_st11_unsupported_dtype(saved, dtype) -> None:
    _, folder = saved
    header, data = split(weights(folder).read_bytes())
    header["quantizer.weight"]["dtype"] = dtype
    weights(folder).write_bytes(pack(header, data))
    expect_format_error(folder, "quantizer.weight", "unsupported dtype", repr(dtype))


def test_st11_u8_for_a_float_weight(saved) -> None:
    model, folder = saved
    state = model.state_dict()
    state["quantizer.weight"] = torch.zeros(state["quantizer.weight"].shape, dtype=torch.uint8)
    save_state(folder, state)
    expect_format_error(folder, "'quantizer.weight'", "torch.uint8", "torch.float32")


def test_st12_zero_size_tensor_for_a_real_parameter(saved) -> None:
    model, folder = saved
    state = model.state_dict()
    state["quantizer.weight"] = torch.zeros(0, 8)
    save_state(folder, state)
    expect_format_error(folder, "'quantizer.weight'", "(0, 8)", "empty", "(16, 8)")


# ST-13: key sets and wrapper prefixes -----------------------------------------------------------------
def test_st13_missing_and_unexpected_keys_are_all_listed(saved) -> None:
    model, folder = saved
    state = model.state_dict()
    removed = ["decoder.up.1.conv.bias", "encoder.proj.weight", "quantizer.usage"]
    for name in removed:
        del state[name]
    state["extra.a"] = torch.zeros(2)
    state["extra.b"] = torch.zeros(3)
    save_state(folder, state)
    message = expect_format_error(folder, "missing keys", "unexpected keys")
    assert str(sorted(removed)) in message
    assert str(["extra.a", "extra.b"]) in message


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_st13_wrapper_prefix_on_every_key_is_stripped(saved, prefix: str) -> None:
    model, folder = saved
    save_state(folder, {prefix + k: v for k, v in model.state_dict().items()})
    assert state_equal(VQVAE.from_pretrained(folder), model)
    assert set(serialization._strip_names({prefix + "a": torch.zeros(1)})) == {"a"}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_st13_wrapper_prefix_on_some_keys_is_an_error(saved, prefix: str) -> None:
    model, folder = saved
    state = model.state_dict()
    renamed = {(prefix + k if k.startswith("encoder.") else k): v for k, v in state.items()}
    save_state(folder, renamed)
    message = expect_format_error(folder, "missing keys", "unexpected keys", prefix, "every name")
    assert f"{prefix}encoder.proj.weight" in message
    assert set(serialization._strip_names(renamed)) == set(renamed)  # nothing stripped


# ST-14, ST-15, CF-11: shapes and dtypes ---------------------------------------------------------------
def test_st14_cf11_wrong_codebook_size_lists_every_mismatch(tmp_path: Path) -> None:
    def config(codes: int) -> VQVAEConfig:
        return VQVAEConfig(channels=(8, 16), latent_dim=64, quantizer="vq", quantizer_kwargs={"codebook_size": codes})

    VQVAE(config(512)).save_pretrained(tmp_path / "small")
    VQVAE(config(1024)).save_pretrained(tmp_path / "big")
    shutil.copy(tmp_path / "big" / "model.safetensors", tmp_path / "small" / "model.safetensors")
    message = expect_format_error(tmp_path / "small", "'quantizer.weight': shape (1024, 64)", "expects (512, 64)",
                                  "'quantizer.usage': shape (1024,)", "expects (512,)")
    assert "missing keys" not in message


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32])
def test_st15_other_dtype_is_never_cast(saved, tiny_vqvae_config, dtype: torch.dtype) -> None:
    model, folder = saved
    state = model.state_dict()
    state["decoder.proj.weight"] = state["decoder.proj.weight"].to(dtype)
    save_state(folder, state)
    expect_format_error(folder, "'decoder.proj.weight'", str(dtype), "torch.float32", "never cast")
    target = VQVAE(tiny_vqvae_config)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointFormatError):
        load_module(target, weights(folder))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # left unchanged


def test_st15_bool_buffer_stored_as_int_is_refused(saved) -> None:
    model, folder = saved
    state = model.state_dict()
    state["quantizer.initialized"] = state["quantizer.initialized"].to(torch.uint8)
    save_state(folder, state)
    expect_format_error(folder, "'quantizer.initialized'", "torch.uint8", "torch.bool")


# ST-16: non-finite weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_st16_non_finite_weights(saved, tiny_vqvae_config, value: float) -> None:
    model, folder = saved
    state = model.state_dict()
    state["encoder.res.0.conv1.weight"][0, 0, 0, 0] = value
    save_state(folder, state)
    with pytest.raises(NonFiniteError, match=r"encoder\.res\.0\.conv1\.weight.*check_finite=False"):
        VQVAE.from_pretrained(folder)
    target = VQVAE(tiny_vqvae_config)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(NonFiniteError):
        load_module(target, weights(folder))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    loaded = VQVAE.from_pretrained(folder, check_finite=False)  # the documented opt-out
    got = loaded.encoder.res[0].conv1.weight[0, 0, 0, 0].item()
    assert got == value or (value != value and got != got)


# ST-17: a header stuffed with dummy entries ----------------------------------------------------------------
def test_st17_200k_dummy_entries_rejected_by_the_key_check(saved, monkeypatch) -> None:
    model, folder = saved
    header, data = split(weights(folder).read_bytes())
    end = len(data)
    for i in range(200_000):
        header[f"dummy.{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}
    weights(folder).write_bytes(pack(header, data))

    def no_read(*args, **kwargs):
        raise AssertionError("tensor data was read before the key check")

    monkeypatch.setattr(serialization, "_read_tensors", no_read)
    monkeypatch.setattr(serialization.safetensors.torch, "load_file", no_read)
    message = expect_format_error(folder, "unexpected keys", "'dummy.0'", "more")
    assert len(message) < 20_000  # a readable message, not 200k names


# ST-18: fuzzing ------------------------------------------------------------------------------------------
# A corrupted config may also name a component that does not exist: that is PL-01's documented
# UnknownComponentError (with the known names), never a crash.
ALLOWED = (CheckpointFormatError, ConfigError, NonFiniteError, UnknownComponentError)


RANDOM_BUFFERS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@RANDOM_BUFFERS
@given(blob=st.binary(max_size=300))
def test_st18_random_buffers(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "random.safetensors"
    path.write_bytes(blob)
    try:
        tensors = read_safetensors(path)
    except CheckpointFormatError as err:
        assert str(err)
    else:  # only a well-formed file loads
        assert isinstance(tensors, dict) and len(blob) >= 8


@RANDOM_BUFFERS
@given(prefix=st.sampled_from([b"", struct.pack("<Q", 2), struct.pack("<Q", 40), struct.pack("<Q", 64)]),
       body=st.binary(max_size=200))
def test_st18_random_buffers_with_plausible_header_length(tmp_path: Path, prefix: bytes, body: bytes) -> None:
    path = tmp_path / "random.safetensors"
    path.write_bytes(prefix + body)
    try:
        read_safetensors(path)
    except CheckpointFormatError as err:
        assert str(err)


class ValidFile(tuple):
    """(bytes of a valid model.safetensors, end of its header); a short repr for hypothesis reports."""

    def __repr__(self) -> str:
        return f"<valid model.safetensors, {len(self[0])} bytes>"


header_entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F128", "F8_E4M3", "", "f32"]),
    "shape": st.lists(st.one_of(st.integers(0, 4), st.integers(-2, 2**70)), max_size=3),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 64), min_size=2, max_size=2),
                              st.lists(st.integers(0, 64), max_size=3)),
})


@FUZZ
@given(entries=st.dictionaries(st.text(max_size=6), header_entries, max_size=4), data=st.binary(max_size=64),
       extra=st.sampled_from([{}, {"__metadata__": {"format": "pt"}}, {"__metadata__": {"n": 1}}]))
def test_st18_random_structured_headers(tmp_path: Path, entries: dict, data: bytes, extra: dict) -> None:
    path = tmp_path / "structured.safetensors"
    path.write_bytes(pack({**extra, **entries}, data))
    try:
        tensors = read_safetensors(path)
    except CheckpointFormatError as err:
        assert str(path) in str(err)
    else:  # whatever loads agrees with its header
        assert set(tensors) == set(entries)
        for name, tensor in tensors.items():
            assert list(tensor.shape) == entries[name]["shape"]


@pytest.fixture(scope="module")
def valid_blob(tmp_path_factory) -> ValidFile:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("valid")
    VQVAE(VQVAEConfig(channels=(4, 8), latent_dim=4, norm_groups=4, quantizer="vq",
                      quantizer_kwargs={"codebook_size": 4})).save_pretrained(folder)
    blob = (folder / "model.safetensors").read_bytes()
    return ValidFile((blob, 8 + struct.unpack("<Q", blob[:8])[0]))


def _load_corrupted(folder: Path, blob: bytes, config_json: bytes) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes(config_json)
    (folder / "model.safetensors").write_bytes(blob)
    try:
        VQVAE.from_pretrained(folder)
    except ALLOWED as err:
        assert str(err)


CONFIG_JSON = VQVAEConfig(channels=(4, 8), latent_dim=4, norm_groups=4, quantizer="vq",
                          quantizer_kwargs={"codebook_size": 4}).to_dict()


@FUZZ
@given(data=st.data())
def test_st18_bit_flips_in_header(tmp_path: Path, valid_blob, data) -> None:
    blob, header_end = valid_blob
    flips = data.draw(st.lists(st.integers(0, header_end * 8 - 1), min_size=1, max_size=4))
    corrupted = bytearray(blob)
    for bit in flips:
        corrupted[bit // 8] ^= 1 << (bit % 8)
    _load_corrupted(tmp_path / "m", bytes(corrupted), json.dumps(CONFIG_JSON).encode())


@FUZZ
@given(data=st.data())
def test_st18_bit_flips_anywhere_and_cuts(tmp_path: Path, valid_blob, data) -> None:
    blob, _ = valid_blob
    flips = data.draw(st.lists(st.integers(0, len(blob) * 8 - 1), max_size=8))
    corrupted = bytearray(blob)
    for bit in flips:
        corrupted[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(blob))))
    tail = data.draw(st.binary(max_size=16))
    result = bytes(corrupted[:cut] if cut is not None else corrupted) + tail
    _load_corrupted(tmp_path / "m", result, json.dumps(CONFIG_JSON).encode())


@FUZZ
@given(config_bytes=st.binary(max_size=64), flip=st.integers(0, 2000))
def test_st18_corrupted_config_next_to_valid_weights(tmp_path: Path, valid_blob, config_bytes, flip) -> None:
    blob, _ = valid_blob
    text = bytearray(json.dumps(CONFIG_JSON).encode())
    text[flip % len(text)] ^= 1 << (flip % 8)
    _load_corrupted(tmp_path / "m", blob, bytes(text) if flip % 3 else config_bytes)


# ST-19: round trips of random small models -------------------------------------------------------------
@st.composite
def vqvae_configs(draw) -> VQVAEConfig:
    channels = tuple(draw(st.lists(st.sampled_from([4, 8]), min_size=1, max_size=2)))
    quantizer = draw(st.sampled_from(["vq", "vq_ema"]))
    kwargs = {"codebook_size": draw(st.integers(2, 12)), "beta": draw(st.floats(0, 2, allow_nan=False))}
    if quantizer == "vq_ema":
        kwargs["decay"] = draw(st.floats(0, 0.999))
    return VQVAEConfig(in_channels=draw(st.integers(1, 3)), image_size=2 ** len(channels) * draw(st.integers(1, 3)),
                       channels=channels, num_res_blocks=draw(st.integers(0, 1)),
                       norm_groups=draw(st.sampled_from([d for d in (1, 2, 4) if channels[-1] % d == 0])),
                       latent_dim=draw(st.integers(1, 6)), quantizer=quantizer, quantizer_kwargs=kwargs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=vqvae_configs(), seed=st.integers(0, 2**31 - 1))
def test_st19_random_vqvae_round_trip_is_bit_identical(tmp_path: Path, config: VQVAEConfig, seed: int) -> None:
    torch.manual_seed(seed)
    model = VQVAE(config).eval()
    first, second = tmp_path / "a", tmp_path / "b"
    model.save_pretrained(first)
    loaded = VQVAE.from_pretrained(first)
    assert loaded.config == config
    assert state_equal(loaded, model)
    images = torch.rand(2, config.in_channels, config.image_size, config.image_size)
    assert torch.equal(loaded(images).reconstruction, model(images).reconstruction)
    assert torch.equal(loaded.encode(images), model.encode(images))
    loaded.save_pretrained(second)
    for name in ("config.json", "model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=st.integers(2, 10), side=st.integers(1, 3), layers=st.integers(1, 2), heads=st.sampled_from([1, 2]),
       classes=st.integers(0, 3), bias=st.booleans())
def test_st19_random_prior_round_trip_is_bit_identical(tmp_path: Path, codes, side, layers, heads, classes,
                                                       bias) -> None:
    config = CausalPriorConfig(codebook_size=codes, grid_size=(side, side + 1), n_layer=layers, n_head=heads,
                               n_embd=8 * heads, num_classes=classes, bias=bias)
    prior = CausalPrior(config).eval()
    prior.save_pretrained(tmp_path / "p")
    loaded = PRIORS.get("causal_transformer").from_pretrained(tmp_path / "p")
    assert loaded.config == config and state_equal(loaded, prior)
    indices = torch.randint(0, codes, (2, side, side + 1))
    labels = torch.randint(0, classes, (2,)) if classes else None
    assert torch.equal(loaded(indices, labels).logits, prior(indices, labels).logits)


# PK-01, PK-02: pickles are never opened --------------------------------------------------------------------
class Tripwire:
    """Unpickling this object creates ``marker``: the file appearing means a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_tripwire_is_armed(tmp_path: Path) -> None:
    """Control: unpickling really trips the wire, so its absence below means something."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Tripwire(marker)))
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("force_env", [False, True])
def test_pk02_torch_save_named_model_safetensors(saved, tmp_path: Path, monkeypatch, zip_format: bool,
                                                 force_env: bool) -> None:
    if force_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model, folder = saved
    marker = tmp_path / "tripped"
    state = dict(model.state_dict())
    state["quantizer.weight"] = Tripwire(marker)
    torch.save(state, weights(folder), _use_new_zipfile_serialization=zip_format)
    message = expect_format_error(folder, "never loaded", "convert them to safetensors")
    assert ("zip archive" in message) if zip_format else ("pickle" in message)
    with pytest.raises(CheckpointFormatError):
        read_safetensors(weights(folder))
    with pytest.raises(CheckpointFormatError):
        load_module(model, weights(folder))
    assert not marker.exists()


def test_pk01_only_pytorch_model_bin(saved, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model, folder = saved
    marker = tmp_path / "tripped"
    weights(folder).unlink()
    torch.save({"quantizer.weight": Tripwire(marker)}, folder / "pytorch_model.bin")
    expect_format_error(folder, "pytorch_model.bin", "pickle", "convert it to safetensors")
    assert not marker.exists()


def test_missing_weights_file(saved) -> None:
    _, folder = saved
    weights(folder).unlink()
    expect_format_error(folder, "model.safetensors not found in", str(folder))


def test_weights_path_is_a_directory(saved) -> None:
    _, folder = saved
    weights(folder).unlink()
    weights(folder).mkdir()
    expect_format_error(folder)
    with pytest.raises(CheckpointFormatError, match="is a directory"):
        read_safetensors(weights(folder))


def test_weights_path_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    os.mkfifo(path)  # opening a FIFO for reading would block until a writer appears
    with pytest.raises(CheckpointFormatError, match="not a regular file"):
        read_safetensors(path)


# CF-14, CF-15: tied and non-contiguous tensors ------------------------------------------------------------
class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight  # weight tying, as in GPT-2
        self.other = nn.Parameter(torch.randn(3, 5).t())  # non-contiguous


def test_cf14_tied_weights_saved_once_and_sharing_kept(tmp_path: Path) -> None:
    source = Tied()
    path = tmp_path / "tied.safetensors"
    save_module(source, path)
    assert set(inspect_safetensors(path)) == {"embed.weight", "other"}  # the tied tensor stored once
    target = Tied()
    load_module(target, path)
    assert torch.equal(target.embed.weight, source.embed.weight)
    assert target.head.weight is target.embed.weight  # still tied after loading
    with torch.no_grad():
        target.embed.weight[0, 0] = 42.0
    assert target.head.weight[0, 0].item() == 42.0


def test_cf14_shared_tensors_through_write_safetensors(tmp_path: Path) -> None:
    """The checkpoint writer stores every name; shared memory is copied, not refused."""
    base = torch.randn(4, 3)
    path = tmp_path / "shared.safetensors"
    write_safetensors(path, {"a": base, "b": base, "c": base[1:]})
    loaded = read_safetensors(path)
    assert torch.equal(loaded["a"], base) and torch.equal(loaded["b"], base) and torch.equal(loaded["c"], base[1:])


def test_cf15_non_contiguous_tensor_saved_contiguous(tmp_path: Path) -> None:
    source = Tied()
    assert not source.other.is_contiguous()
    path = tmp_path / "nc.safetensors"
    save_module(source, path)
    loaded = read_safetensors(path)
    assert loaded["other"].is_contiguous() and torch.equal(loaded["other"], source.other.detach())
    target = Tied()
    load_module(target, path)
    assert torch.equal(target.other, source.other)

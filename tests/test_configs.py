"""Config parsing and validation under bad input (reliability cases CF-01..CF-10, CF-12, CF-13).

Every config class round-trips through dicts and JSON files byte for byte, and every malformed
input ends in a :class:`ConfigError` that names the file or field, never in a silently guessed
default, a bare ``KeyError``/``TypeError`` or a hang.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discrete_latents import VQVAE, CausalPriorConfig, Config, PixelCNNPriorConfig, VQVAEConfig
from discrete_latents import _files as files
from discrete_latents._configs import FORMAT_VERSION
from discrete_latents._files import MAX_JSON_BYTES, dumps_json, loads_json, read_json
from discrete_latents._presets import PRIOR_PRESETS, VQVAE_PRESETS
from discrete_latents.errors import ConfigError

CLASSES = [VQVAEConfig, CausalPriorConfig, PixelCNNPriorConfig]
EXAMPLES = [
    VQVAEConfig(),
    VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="vq_ema",
                quantizer_kwargs={"codebook_size": 16, "decay": 0.9, "beta": 0.5, "kmeans_init": True}),
    CausalPriorConfig(),
    CausalPriorConfig(codebook_size=16, grid_size=(3, 4), n_layer=2, n_head=2, n_embd=16, num_classes=10,
                      label_dropout=0.0, dropout=0.1, bias=False),
    PixelCNNPriorConfig(),
    PixelCNNPriorConfig(codebook_size=8, grid_size=(5, 5), hidden_channels=16, n_layer=2, kernel_size=5),
    *VQVAE_PRESETS.values(),
    *PRIOR_PRESETS.values(),
]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def field_types(cls: type[Config]) -> dict[str, object]:
    return typing.get_type_hints(cls)


def fields_of(annotation: object) -> list[tuple[type[Config], str]]:
    return [(cls, f.name) for cls in CLASSES for f in dataclasses.fields(cls) if field_types(cls)[f.name] is annotation]


def valid_dict(cls: type[Config]) -> dict:
    return cls().to_dict()


# round trips (CF-12) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: type(c).__name__)
def test_dict_round_trip(config: Config) -> None:
    data = config.to_dict()
    assert data["_class_name"] == type(config).__name__ and data["_version"] == FORMAT_VERSION
    assert type(config).from_dict(data) == config
    assert type(config).from_dict(json.loads(json.dumps(data))) == config


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: type(c).__name__)
def test_cf12_json_file_save_load_save_is_byte_identical(tmp_path: Path, config: Config) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    config.save(first)
    loaded = type(config).load(first)
    assert loaded == config
    loaded.save(second)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text(encoding="utf-8")
    assert text == dumps_json(config.to_dict()) and text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys


def test_to_dict_is_a_copy_and_the_config_stays_frozen() -> None:
    kwargs = {"codebook_size": 16, "nested": {"a": [1, 2]}}
    config = VQVAEConfig(quantizer_kwargs=kwargs)
    kwargs["codebook_size"] = 99  # the caller's dict changing later
    kwargs["nested"]["a"].append(3)
    data = config.to_dict()
    data["quantizer_kwargs"]["codebook_size"] = 7
    data["quantizer_kwargs"]["nested"]["a"].append(4)
    data["channels"].append(256)
    assert config.quantizer_kwargs == {"codebook_size": 16, "nested": {"a": [1, 2]}}
    assert config.channels == (64, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 3  # type: ignore[misc]


def test_tuples_inside_free_form_kwargs_round_trip_equal() -> None:
    config = VQVAEConfig(quantizer="fsq", quantizer_kwargs={"levels": (8, 5, 5)})
    assert VQVAEConfig.from_dict(config.to_dict()) == config


# CF-01: missing file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
def test_cf01_missing_config_file(tmp_path: Path, cls: type[Config]) -> None:
    with pytest.raises(ConfigError, match=f"config.json not found in {tmp_path}"):
        cls.load(tmp_path / "config.json")


def test_cf01_from_pretrained_without_config_guesses_nothing(tmp_path: Path, tiny_vqvae_config) -> None:
    VQVAE(tiny_vqvae_config).save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ConfigError, match=f"config.json not found in {tmp_path}"):
        VQVAE.from_pretrained(tmp_path)


def test_cf01_config_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        VQVAEConfig.load(tmp_path / "config.json")


def test_config_path_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        VQVAEConfig.load(tmp_path / "config.json")


# CF-02, CF-03: file content ----------------------------------------------------------------------------
GOOD = dumps_json(CausalPriorConfig().to_dict()).encode()


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"),
    (b"   \n\t", "empty"),
    (GOOD[: len(GOOD) // 2], "invalid JSON"),
    (GOOD[:1], "invalid JSON"),
    (GOOD[:-3], "invalid JSON"),
    (GOOD.replace(b'"codebook_size"', "\"codebook_\xe9size\"".encode("latin-1")), "not UTF-8"),
    (b"\xff\xfe" + GOOD.decode().encode("utf-16-le"), "not UTF-8"),
    (GOOD.decode().encode("utf-16"), "not UTF-8"),
    (b"\x00" * 16, "invalid JSON"),
])
def test_cf02_empty_truncated_or_not_utf8(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=fragment) as info:
        CausalPriorConfig.load(path)
    assert str(path) in str(info.value)


def test_cf02_utf8_bom_policy_accepted_and_dropped(tmp_path: Path) -> None:
    """Policy: a UTF-8 byte-order mark (Windows editors) is accepted; the library never writes one."""
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD)
    config = CausalPriorConfig.load(path)
    assert config == CausalPriorConfig()
    assert loads_json("\ufeff" + GOOD.decode()) == loads_json(GOOD)  # the same policy for text
    config.save(path)
    assert path.read_bytes() == GOOD  # rewritten without the mark


def test_cf02_bom_only_once(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbf" + GOOD)
    with pytest.raises(ConfigError, match="invalid JSON"):
        CausalPriorConfig.load(path)


@pytest.mark.parametrize("top", ["[]", "[1, 2]", '"config"', "512", "null", "true", "1.5"])
@pytest.mark.parametrize("cls", CLASSES)
def test_cf03_top_level_not_an_object(tmp_path: Path, cls: type[Config], top: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(top)
    with pytest.raises(ConfigError, match=f"expected a JSON object for {cls.__name__}, got") as info:
        cls.load(path)
    assert str(path) in str(info.value)


# CF-04: types ------------------------------------------------------------------------------------------
INT_FIELDS = fields_of(int)
FLOAT_FIELDS = fields_of(float)
BOOL_FIELDS = fields_of(bool)


@pytest.mark.parametrize("bad", ["512", 512.0, True, False, None, [512], {"value": 512}])
@pytest.mark.parametrize("cls, name", INT_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in INT_FIELDS])
def test_cf04_wrong_type_for_an_int(cls: type[Config], name: str, bad: object) -> None:
    data = valid_dict(cls)
    data[name] = bad
    with pytest.raises(ConfigError, match="expected an integer") as info:
        cls.from_dict(data)
    message = str(info.value)
    assert f"{cls.__name__}.{name}" in message and type(bad).__name__ in message


@pytest.mark.parametrize("bad", ["0.1", True, None, [0.1]])
@pytest.mark.parametrize("cls, name", FLOAT_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FLOAT_FIELDS])
def test_cf04_wrong_type_for_a_float(cls: type[Config], name: str, bad: object) -> None:
    data = valid_dict(cls)
    data[name] = bad
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{name}: expected a number"):
        cls.from_dict(data)


@pytest.mark.parametrize("cls, name", FLOAT_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FLOAT_FIELDS])
def test_cf04_an_int_for_a_float_is_stored_as_float(cls: type[Config], name: str) -> None:
    data = valid_dict(cls)
    data[name] = 0
    value = getattr(cls.from_dict(data), name)
    assert value == 0.0 and type(value) is float


@pytest.mark.parametrize("bad", [1, 0, "true", None])
@pytest.mark.parametrize("cls, name", BOOL_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in BOOL_FIELDS])
def test_cf04_wrong_type_for_a_bool(cls: type[Config], name: str, bad: object) -> None:
    data = valid_dict(cls)
    data[name] = bad
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{name}: expected true or false"):
        cls.from_dict(data)


@pytest.mark.parametrize("field, bad, fragment", [
    ("channels", 64, "expected a list"),
    ("channels", [64, "128"], r"channels\[1\]: expected an integer"),
    ("channels", [64, 128.0], r"channels\[1\]: expected an integer"),
    ("quantizer", 3, "expected a string"),
    ("quantizer_kwargs", [["codebook_size", 16]], "expected an object"),
    ("quantizer_kwargs", {"codebook_size": float("nan")}, "finite"),
    ("quantizer_kwargs", {"levels": {1, 2}}, "not a JSON value"),
])
def test_cf04_wrong_types_in_vqvae_fields(field: str, bad: object, fragment: str) -> None:
    data = valid_dict(VQVAEConfig)
    data[field] = bad
    with pytest.raises(ConfigError, match=fragment):
        VQVAEConfig.from_dict(data)


@pytest.mark.parametrize("bad, fragment", [([7], "expected 2 items"), ([7, 7, 7], "expected 2 items"),
                                           ([7, "7"], r"grid_size\[1\]"), ("7x7", "expected a list")])
def test_cf04_grid_size_shape(bad: object, fragment: str) -> None:
    data = valid_dict(CausalPriorConfig)
    data["grid_size"] = bad
    with pytest.raises(ConfigError, match=fragment):
        CausalPriorConfig.from_dict(data)


# CF-05: ranges -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, changes, field", [
    (CausalPriorConfig, {"codebook_size": 0}, "codebook_size"),
    (CausalPriorConfig, {"codebook_size": -1}, "codebook_size"),
    (CausalPriorConfig, {"codebook_size": 1}, "codebook_size"),
    (CausalPriorConfig, {"codebook_size": 2**63}, "codebook_size"),
    (PixelCNNPriorConfig, {"codebook_size": 2**64 + 5}, "codebook_size"),
    (CausalPriorConfig, {"grid_size": [0, 7]}, "grid_size"),
    (CausalPriorConfig, {"num_classes": -1}, "num_classes"),
    (CausalPriorConfig, {"label_dropout": 1.0}, "label_dropout"),
    (CausalPriorConfig, {"label_dropout": -0.1}, "label_dropout"),
    (CausalPriorConfig, {"dropout": 1.5}, "dropout"),
    (CausalPriorConfig, {"n_head": 0}, "n_head"),
    (CausalPriorConfig, {"n_embd": 0}, "n_embd"),
    (CausalPriorConfig, {"n_embd": 100, "n_head": 8}, "n_embd"),
    (CausalPriorConfig, {"n_layer": 0}, "n_layer"),
    (PixelCNNPriorConfig, {"kernel_size": 4}, "kernel_size"),
    (PixelCNNPriorConfig, {"hidden_channels": 0}, "hidden_channels"),
    (VQVAEConfig, {"latent_dim": 0}, "latent_dim"),
    (VQVAEConfig, {"in_channels": 0}, "in_channels"),
    (VQVAEConfig, {"channels": []}, "channels"),
    (VQVAEConfig, {"channels": [64, 0]}, "channels"),
    (VQVAEConfig, {"image_size": 30}, "image_size"),
    (VQVAEConfig, {"norm_groups": 7}, "norm_groups"),
    (VQVAEConfig, {"num_res_blocks": -1}, "num_res_blocks"),
    (VQVAEConfig, {"quantizer_kwargs": {"dim": 8}}, "dim"),
])
def test_cf05_out_of_range(cls: type[Config], changes: dict, field: str) -> None:
    data = {**valid_dict(cls), **changes}
    with pytest.raises(ConfigError, match=field):
        cls.from_dict(data)
    with pytest.raises(ConfigError, match=field):  # the constructor and replace() check the same
        cls().replace(**changes)


@pytest.mark.parametrize(("changes", "field"), [
    ({"quantizer_kwargs": {"codebook_size": 0}}, "codebook_size"),
    ({"quantizer_kwargs": {"codebook_size": -1}}, "codebook_size"),
    ({"quantizer_kwargs": {"codebook_size": 2**63}}, "codebook_size"),
    ({"quantizer_kwargs": {"codebook_size": 16.0}}, "codebook_size"),
    ({"quantizer_kwargs": {"beta": -0.1}}, "beta"),
    ({"quantizer_kwargs": {"beta": "0.25"}}, "beta"),
    ({"quantizer": "vq_ema", "quantizer_kwargs": {"decay": 1.5}}, "decay"),
    ({"quantizer": "vq_ema", "quantizer_kwargs": {"decay": 1.0}}, "decay"),
    ({"quantizer": "vq_ema", "quantizer_kwargs": {"decay": -0.01}}, "decay"),
])
def test_quantizer_options_are_checked_by_the_quantizer_that_defines_them(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):  # the config names them, the quantizer checks them
        VQVAE(VQVAEConfig(**changes))


def test_cf05_vqvae_with_out_of_range_kwargs_is_never_built() -> None:
    with pytest.raises(ConfigError, match="codebook_size"):
        VQVAE(VQVAEConfig(quantizer_kwargs={"codebook_size": 2**63}))


@pytest.mark.parametrize("name", ["os:system", "pkg.mod:Cls", "Conv", "", "a b", "../x", "x" * 65, "-vq"])
@pytest.mark.parametrize("field", ["encoder", "decoder", "quantizer"])
def test_component_names_are_registry_keys_never_import_paths(field: str, name: str) -> None:
    with pytest.raises(ConfigError, match="registry name"):
        VQVAEConfig.from_dict({**valid_dict(VQVAEConfig), field: name})


# CF-06, CF-07: NaN and duplicate keys -----------------------------------------------------------------
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_cf06_non_finite_numbers(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "config.json"
    text = GOOD.decode().replace('"label_dropout": 0.1', f'"label_dropout": {literal}')
    assert literal in text
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        CausalPriorConfig.load(path)
    assert str(path) in str(info.value)
    text = dumps_json(VQVAEConfig().to_dict())
    text = text.replace('"codebook_size": 100', f'"codebook_size": 100, "beta": {literal}')
    with pytest.raises(ConfigError):
        VQVAEConfig.from_dict(loads_json(text))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_cf06_non_finite_values_from_python(value: float) -> None:
    with pytest.raises(ConfigError, match="label_dropout"):
        CausalPriorConfig(label_dropout=value)  # type: ignore[arg-type]


def test_cf07_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(GOOD.decode().replace('"n_layer": 3', '"n_layer": 3, "n_layer": 30'))
    with pytest.raises(ConfigError, match="duplicate key 'n_layer'") as info:
        CausalPriorConfig.load(path)
    assert str(path) in str(info.value)
    nested = '{"a": {"codebook_size": 16, "codebook_size": 32}}'
    with pytest.raises(ConfigError, match="duplicate key 'codebook_size'"):
        loads_json(nested)


# CF-08: typos -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, typo, meant", [(CausalPriorConfig, "codebok_size", "codebook_size"),
                                              (PixelCNNPriorConfig, "kernelsize", "kernel_size"),
                                              (VQVAEConfig, "latent_dm", "latent_dim"),
                                              (VQVAEConfig, "quantiser", "quantizer")])
def test_cf08_typo_did_you_mean(cls: type[Config], typo: str, meant: str) -> None:
    data = valid_dict(cls)
    data[typo] = data.pop(meant)
    with pytest.raises(ConfigError, match=f"did you mean '{meant}'") as info:
        cls.from_dict(data)
    assert repr(typo) in str(info.value) and "known keys" in str(info.value)


def test_cf08_unknown_key_without_a_close_match_and_missing_keys() -> None:
    data = valid_dict(CausalPriorConfig)
    data["zzz"] = 1
    with pytest.raises(ConfigError, match="unknown key.*'zzz'"):
        CausalPriorConfig.from_dict(data)
    data = valid_dict(CausalPriorConfig)
    del data["n_head"], data["bias"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) for CausalPriorConfig: \['n_head', 'bias'\]"):
        CausalPriorConfig.from_dict(data)


# CF-09: versions and classes --------------------------------------------------------------------------
def test_cf09_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(GOOD.decode().replace(f'"_version": {FORMAT_VERSION}', f'"_version": {FORMAT_VERSION + 1}'))
    with pytest.raises(ConfigError, match="upgrade discrete_latents") as info:
        CausalPriorConfig.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None, [1]])
def test_cf09_invalid_format_version(version: object) -> None:
    with pytest.raises(ConfigError, match="_version"):
        CausalPriorConfig.from_dict({**valid_dict(CausalPriorConfig), "_version": version})


def test_cf09_current_and_absent_version_load() -> None:
    data = valid_dict(CausalPriorConfig)
    assert CausalPriorConfig.from_dict(data) == CausalPriorConfig()
    del data["_version"], data["_class_name"]
    assert CausalPriorConfig.from_dict(data) == CausalPriorConfig()


def test_another_class_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="'CausalPriorConfig' config, expected 'PixelCNNPriorConfig'"):
        PixelCNNPriorConfig.from_dict(valid_dict(CausalPriorConfig))


def test_non_string_keys_from_python() -> None:
    with pytest.raises(ConfigError, match="must be strings"):
        CausalPriorConfig.from_dict({**valid_dict(CausalPriorConfig), 1: 2, (3,): 4})


# CF-10: size and depth ----------------------------------------------------------------------------------
def test_cf10_deep_nesting_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"quantizer_kwargs": ' + "[" * 10_000 + "]" * 10_000 + "}")
    with pytest.raises(ConfigError, match="nested") as info:
        VQVAEConfig.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="nested"):
        loads_json("{" + '"a": {' * 10_000 + "}" * 10_001)


@pytest.mark.parametrize("depth", [40, 100, 900])
def test_cf10_moderate_nesting_is_refused_too(depth: int) -> None:
    text = dumps_json(VQVAEConfig().to_dict()).replace('"codebook_size": 100',
                                                       '"codebook_size": 100, "x": ' + "[" * depth + "]" * depth)
    with pytest.raises(ConfigError, match="nested"):
        VQVAEConfig.from_dict(loads_json(text))


def test_cf10_50mb_file_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.json"
    with open(path, "wb") as handle:
        handle.truncate(50 * 2**20)  # sparse: 50 MB on paper
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("a 50 MB config was read"))
    with pytest.raises(ConfigError, match=f"over the {MAX_JSON_BYTES}-byte limit"):
        VQVAEConfig.load(path)


def test_cf10_50mb_text_is_refused() -> None:
    big = b'{"a": "' + b"x" * (50 * 2**20) + b'"}'
    with pytest.raises(ConfigError, match="limit"):
        loads_json(big)
    with pytest.raises(ConfigError, match="limit"):
        loads_json(big.decode())


def test_cf10_huge_integer_literal() -> None:
    with pytest.raises(ConfigError):
        CausalPriorConfig.from_dict(loads_json('{"codebook_size": ' + "9" * 5000 + "}"))


# CF-13: stale files and atomic writes ---------------------------------------------------------------------
def test_cf13_stale_config_in_target_folder_is_overwritten(tmp_path: Path, tiny_vqvae_config) -> None:
    tmp_path = tmp_path / "model"
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text('{"stale": true, "_class_name": "Something"}')
    stale_config = VQVAEConfig(channels=(8, 16), latent_dim=4, quantizer_kwargs={"codebook_size": 4})
    VQVAE(stale_config).save_pretrained(tmp_path.parent / "other")
    VQVAE(tiny_vqvae_config).save_pretrained(tmp_path)
    assert VQVAEConfig.load(tmp_path / "config.json") == tiny_vqvae_config
    assert VQVAE.from_pretrained(tmp_path).config == tiny_vqvae_config
    stale_config.save(tmp_path / "config.json")  # save() over an existing file replaces it too
    assert VQVAEConfig.load(tmp_path / "config.json") == stale_config
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_failed_config_save_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.json"
    CausalPriorConfig().save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        CausalPriorConfig(n_layer=5).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # the temp file is gone


# fuzzing: only ConfigError, always with a message --------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _accepts_or_config_error(cls: type[Config], data: object) -> None:
    try:
        config = cls.from_dict(data)
    except ConfigError as err:
        assert str(err).strip()
    else:
        assert cls.from_dict(config.to_dict()) == config
        assert loads_json(dumps_json(config.to_dict())) == config.to_dict()


@FUZZ
@given(cls=st.sampled_from(CLASSES), data=json_values)
def test_fuzz_random_json_values(cls: type[Config], data: object) -> None:
    _accepts_or_config_error(cls, data)


@FUZZ
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_fuzz_mutated_valid_dicts(cls: type[Config], data) -> None:
    base = valid_dict(cls)
    keys = sorted(base)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["replace", "delete", "add", "nudge"]))
        key = data.draw(st.sampled_from(keys))
        if action == "replace":
            base[key] = data.draw(json_values)
        elif action == "delete":
            base.pop(key, None)
        elif action == "add":
            base[data.draw(st.text(max_size=12))] = data.draw(json_values)
        elif isinstance(base.get(key), (int, float)) and not isinstance(base.get(key), bool):
            base[key] = base[key] + data.draw(st.sampled_from([-(2**64), -2, -1, 1, 2**63, 0.5, -0.5]))
    _accepts_or_config_error(cls, base)


@FUZZ
@given(text=st.text(max_size=200))
def test_fuzz_random_text(text: str) -> None:
    try:
        value = loads_json(text, source="fuzz.json")
    except ConfigError as err:
        assert "fuzz.json" in str(err)
    else:
        assert not (isinstance(value, float) and not math.isfinite(value))
        _accepts_or_config_error(VQVAEConfig, value)


@FUZZ
@given(blob=st.binary(max_size=200))
def test_fuzz_random_bytes(blob: bytes) -> None:
    try:
        loads_json(blob, source="fuzz.json")
    except ConfigError as err:
        assert "fuzz.json" in str(err)


@FUZZ
@given(cls=st.sampled_from(CLASSES), position=st.integers(0, 10_000), byte=st.integers(0, 255),
       action=st.sampled_from(["set", "insert", "delete", "cut"]))
def test_fuzz_mutated_json_files(tmp_path: Path, cls: type[Config], position: int, byte: int, action: str) -> None:
    text = bytearray(dumps_json(cls().to_dict()).encode())
    i = position % len(text)
    if action == "set":
        text[i] = byte
    elif action == "insert":
        text.insert(i, byte)
    elif action == "delete":
        del text[i]
    else:
        del text[i:]
    path = tmp_path / "config.json"
    path.write_bytes(bytes(text))
    try:
        config = cls.load(path)
    except ConfigError as err:
        assert str(path) in str(err)
    else:
        assert isinstance(config, cls)


def test_read_json_and_loads_json_agree(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(GOOD)
    assert read_json(path) == loads_json(GOOD) == json.loads(GOOD)
    assert os.path.getsize(path) == len(GOOD)


def test_preset_tables_in_the_docs_match_the_presets() -> None:
    """docs/configuration.md lists every preset; its widths and label dropout must not drift from the code."""
    rows = {}
    for line in (Path(__file__).parents[1] / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.setdefault(cells[0].strip("`"), []).append(cells)
    for name, vqvae in VQVAE_PRESETS.items():
        assert any(row[3] == str(tuple(vqvae.channels)) and row[5] == str(vqvae.latent_dim) for row in rows[name]), name
    for name, prior in PRIOR_PRESETS.items():
        assert any(row[1] == f"`{type(prior).__name__}`" and row[5] == str(prior.label_dropout)  # type: ignore[attr-defined]
                   for row in rows[name]), name

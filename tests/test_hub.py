"""Hub I/O: save -> load round trips of each component, loading by repo id from a real Hugging Face
cache layout with HF_HUB_OFFLINE=1, offline errors, repo-id validation, mocked pushes, strict weights.

Nothing here touches the network: an autouse fixture makes any socket connection fail the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, scan_cache_dir
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

from discrete_latents import PRIORS, VQVAE, CausalPrior, VQVAEConfig
from discrete_latents._hub import PretrainedSource, resolve
from discrete_latents._pipeline import VQVAEPipeline
from discrete_latents.errors import CheckpointFormatError, ConfigError

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # what the pushes fixture answers
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 16, "hidden_channels": 16, "kernel_size": 3}


# fixtures and helpers ------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("no_network")  # everything must work from disk


def tiny_prior(name: str):
    """A small prior of the registered class ``name`` over 7x7 grids of 16 codes."""
    cls = PRIORS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    kwargs = {"codebook_size": 16, "grid_size": (7, 7), **{k: v for k, v in SMALL.items() if k in fields}}
    return cls(cls.config_class(**kwargs)).eval()


def populate_cache(cache: Path, repo_id: str, source: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Lay out ``source`` as huggingface_hub caches a download of ``repo_id`` at ``commit``.

    ``<cache>/models--user--repo/blobs/<hash>``, ``snapshots/<commit>/<path>`` symlinks into the
    blobs, ``refs/<ref>`` holding the commit. Returns the snapshot folder.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def assert_same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# round trips -----------------------------------------------------------------------------------------
def test_vqvae_round_trip(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    model = VQVAE(tiny_vqvae_config).eval()
    model.save_pretrained(tmp_path)
    loaded = VQVAE.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert_same_module(model, loaded)
    images = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.encode(images), model.encode(images))
    assert torch.equal(loaded.reconstruct(images), model.reconstruct(images))
    assert not loaded.training
    assert loaded.pretrained_source == PretrainedSource(str(tmp_path), tmp_path, None, None)


@pytest.mark.parametrize("name", PRIORS.names())
def test_prior_round_trip(tmp_path: Path, name: str) -> None:
    prior = tiny_prior(name)
    prior.save_pretrained(tmp_path)
    loaded = PRIORS.get(name).from_pretrained(tmp_path)
    assert type(loaded) is type(prior) and loaded.config == prior.config
    assert_same_module(prior, loaded)
    codes = torch.randint(0, 16, (2, 7, 7))
    if prior.exact_likelihood:
        assert torch.equal(loaded.nll(codes), prior.nll(codes))
    else:  # a masked prior: its bound, under the same random masks
        assert torch.equal(loaded.nll_bound(codes, generator=torch.Generator().manual_seed(0)),
                           prior.nll_bound(codes, generator=torch.Generator().manual_seed(0)))
    first = prior.sample(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(3)), first)


@pytest.mark.parametrize("name", PRIORS.names())
def test_component_folder_layout_and_model_card(tmp_path: Path, name: str) -> None:
    prior = tiny_prior(name)
    prior.save_pretrained(tmp_path, metadata={"preset": "mnist", "metrics": {"nll_bits_per_image": 141.25}})
    assert sorted(files_under(tmp_path)) == ["README.md", "config.json", "model.safetensors"]
    card = ModelCard.load(tmp_path / "README.md")  # valid YAML metadata the Hub can index
    assert card.data.library_name == "discrete_latents"
    assert {"discrete_latents", "vq-vae"} <= set(card.data.tags)
    assert f"PRIORS.get({name!r}).from_pretrained" in card.text
    assert "| nll_bits_per_image | 141.25 |" in card.text
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == type(prior.config).__name__


def test_save_replaces_stale_files_and_is_reproducible(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    tmp_path.joinpath("README.md").write_text("stale card")
    tmp_path.joinpath("config.json").write_text('{"stale": true}')
    model = VQVAE(tiny_vqvae_config)
    model.save_pretrained(tmp_path)
    first = files_under(tmp_path)
    assert b"stale" not in first["README.md"] and b"stale" not in first["config.json"]
    VQVAE.from_pretrained(tmp_path).save_pretrained(tmp_path / "again")
    assert files_under(tmp_path / "again") == first  # save -> load -> save is byte-identical
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary files left behind


def test_bad_metadata_fails_before_anything_is_written(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    with pytest.raises(ConfigError, match="metrics.psnr"):
        VQVAE(tiny_vqvae_config).save_pretrained(tmp_path / "out", metadata={"metrics": {"psnr": [1, 2]}})
    with pytest.raises(ConfigError, match="finite"):
        VQVAE(tiny_vqvae_config).save_pretrained(tmp_path / "out", metadata={"metrics": {"psnr": float("nan")}})
    with pytest.raises(HFValidationError):
        VQVAE(tiny_vqvae_config).save_pretrained(tmp_path / "out", repo_id="a/b/c")  # pasted into the card
    assert not (tmp_path / "out").exists()


# loading by repo id from the Hugging Face cache ------------------------------------------------------
@pytest.fixture
def cached_vqvae(tmp_path: Path, tiny_vqvae_config: VQVAEConfig):
    model = VQVAE(tiny_vqvae_config).eval()
    model.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "hf-cache"
    populate_cache(cache, "user/tiny-vqvae", tmp_path / "saved")
    return model, cache


def test_the_hand_built_cache_is_a_real_hugging_face_cache(cached_vqvae) -> None:
    _, cache = cached_vqvae
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == "user/tiny-vqvae" and repo.repo_type == "model"
    assert [r.commit_hash for r in repo.revisions] == [COMMIT] and repo.refs["main"].commit_hash == COMMIT


@pytest.mark.parametrize("revision", [None, "main", COMMIT])
def test_load_by_repo_id_offline_from_the_cache(cached_vqvae, offline, revision) -> None:
    model, cache = cached_vqvae
    loaded = VQVAE.from_pretrained("user/tiny-vqvae", cache_dir=cache, revision=revision)
    assert_same_module(model, loaded)
    assert loaded.config == model.config
    source = loaded.pretrained_source
    assert source.commit == COMMIT and source.folder.name == COMMIT and source.name_or_path == "user/tiny-vqvae"


def test_load_by_commit_with_local_files_only(cached_vqvae) -> None:
    model, cache = cached_vqvae
    loaded = VQVAE.from_pretrained("user/tiny-vqvae", cache_dir=cache, revision=COMMIT, local_files_only=True)
    assert_same_module(model, loaded)


def test_offline_and_nothing_cached(tmp_path: Path, offline) -> None:
    with pytest.raises(LocalEntryNotFoundError) as info:
        VQVAE.from_pretrained("user/never-downloaded", cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert "offline" in message and "not cached" in message and "user/never-downloaded" in message


def test_offline_and_an_uncached_commit(cached_vqvae, offline) -> None:
    _, cache = cached_vqvae
    with pytest.raises(LocalEntryNotFoundError, match="offline"):
        VQVAE.from_pretrained("user/tiny-vqvae", cache_dir=cache, revision=OTHER_COMMIT)


def test_local_files_only_and_weights_not_cached(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    VQVAE(tiny_vqvae_config).save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "model.safetensors").unlink()
    cache = tmp_path / "hf-cache"
    populate_cache(cache, "user/partial", tmp_path / "saved")
    with pytest.raises(CheckpointFormatError, match="model.safetensors not found"):
        VQVAE.from_pretrained("user/partial", cache_dir=cache, local_files_only=True)


def test_local_files_only_and_nothing_cached(tmp_path: Path) -> None:
    with pytest.raises(LocalEntryNotFoundError, match="local_files_only"):
        VQVAE.from_pretrained("user/absent", cache_dir=tmp_path, local_files_only=True)


@pytest.mark.parametrize("repo_id", ["../x", "a/b/c", "a--b", "", "user/repo name"])
def test_invalid_repo_ids_fail_before_any_io(tmp_path: Path, monkeypatch, repo_id: str) -> None:
    monkeypatch.chdir(tmp_path)  # so "../x" cannot name an existing folder

    def no_download(*args, **kwargs):
        raise AssertionError("snapshot_download must not be reached")

    monkeypatch.setattr("discrete_latents._hub.snapshot_download", no_download)
    with pytest.raises(HFValidationError, match="neither an existing local folder nor a valid"):
        VQVAE.from_pretrained(repo_id)
    with pytest.raises(HFValidationError):
        VQVAEPipeline.from_pretrained(repo_id)


def test_paths_that_are_not_folders(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    VQVAE(tiny_vqvae_config).save_pretrained(tmp_path)
    with pytest.raises(NotADirectoryError, match="is a file"):
        VQVAE.from_pretrained(tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no folder"):
        VQVAE.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError):
        resolve(42, ["config.json"])  # type: ignore[arg-type]


def test_subfolder_of_a_cached_pipeline_repo(tmp_path: Path, tiny_vqvae_config, tiny_prior_config, offline) -> None:
    pipe = VQVAEPipeline(VQVAE(tiny_vqvae_config), CausalPrior(tiny_prior_config))
    pipe.save_pretrained(tmp_path / "saved")
    populate_cache(tmp_path / "cache", "user/pipe", tmp_path / "saved")
    vqvae = VQVAE.from_pretrained("user/pipe", subfolder="vqvae", cache_dir=tmp_path / "cache")
    assert_same_module(pipe.vqvae, vqvae)
    with pytest.raises(ValueError, match="subfolder"):
        VQVAE.from_pretrained("user/pipe", subfolder="../vqvae", cache_dir=tmp_path / "cache")


# pushing -------------------------------------------------------------------------------------------
def test_push_vqvae_is_one_commit_of_exactly_what_save_writes(pushes, tmp_path, monkeypatch, tiny_vqvae_config) -> None:
    model = VQVAE(tiny_vqvae_config)
    metadata = {"metrics": {"psnr_db": 22.5}}
    info = model.push_to_hub("user/tiny-vqvae", metadata=metadata, commit_message="first")
    assert info.oid == COMMIT
    assert pushes.repos == [{"repo_id": "user/tiny-vqvae", "private": False, "exist_ok": True, "repo_type": "model"}]
    (commit,) = pushes.commits
    model.save_pretrained(tmp_path, metadata=metadata, repo_id="user/tiny-vqvae")
    assert commit["files"] == files_under(tmp_path)
    assert commit["commit_message"] == "first" and commit["repo_id"] == "user/tiny-vqvae"
    assert b"VQVAE.from_pretrained('user/tiny-vqvae')" in commit["files"]["README.md"]


@pytest.mark.parametrize("name", PRIORS.names())
def test_push_prior(pushes, tmp_path: Path, monkeypatch, name: str) -> None:
    prior = tiny_prior(name)
    prior.push_to_hub("user/prior", private=True, branch="dev")
    (commit,) = pushes.commits
    assert sorted(commit["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert commit["revision"] == "dev" and pushes.repos[0]["private"] is True
    prior.save_pretrained(tmp_path, repo_id="user/prior")
    assert commit["files"] == files_under(tmp_path)


def test_push_with_an_invalid_repo_id_contacts_nothing(pushes, monkeypatch, tiny_vqvae_config) -> None:
    with pytest.raises(HFValidationError):
        VQVAE(tiny_vqvae_config).push_to_hub("a/b/c")
    assert pushes.repos == [] and pushes.commits == []


# strict weights (PK-01, PK-02, ST-13, ST-14) ---------------------------------------------------------
def tripwire(marker: Path) -> bytes:
    """A protocol-0 pickle that creates ``marker`` when unpickled (``open(marker, "w")``)."""
    return b"c__builtin__\nopen\n(V" + str(marker).encode() + b"\nVw\ntR."


def test_weights_of_the_wrong_shape(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    VQVAE(tiny_vqvae_config.replace(quantizer_kwargs={"codebook_size": 32})).save_pretrained(tmp_path)
    VQVAE(tiny_vqvae_config).config.save(tmp_path / "config.json")
    with pytest.raises(CheckpointFormatError, match=r"\(32, 8\).*\(16, 8\)"):
        VQVAE.from_pretrained(tmp_path)


def test_weights_with_a_missing_key(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in VQVAE(tiny_vqvae_config).state_dict().items()}
    dropped = sorted(state)[0]
    del state[dropped]
    tiny_vqvae_config.save(tmp_path / "config.json")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointFormatError, match="missing keys") as info:
        VQVAE.from_pretrained(tmp_path)
    assert dropped in str(info.value)


def test_only_pytorch_model_bin(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    marker = tmp_path / "marker"
    tiny_vqvae_config.save(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(tripwire(marker))
    with pytest.raises(CheckpointFormatError, match="pytorch_model.bin"):
        VQVAE.from_pretrained(tmp_path)
    assert not marker.exists()


def test_safetensors_that_is_a_torch_zip(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    marker = tmp_path / "marker"
    tiny_vqvae_config.save(tmp_path / "config.json")
    with zipfile.ZipFile(tmp_path / "model.safetensors", "w") as archive:
        archive.writestr("archive/data.pkl", tripwire(marker))
    with pytest.raises(CheckpointFormatError, match="zip"):
        VQVAE.from_pretrained(tmp_path)
    assert not marker.exists()


def test_component_config_from_a_newer_version(tmp_path: Path, tiny_vqvae_config: VQVAEConfig) -> None:
    VQVAE(tiny_vqvae_config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="upgrade discrete_latents"):
        VQVAE.from_pretrained(tmp_path)


def test_tripwire_is_armed(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "marker"
    pickle.loads(tripwire(marker)).close()  # the control: unpickling it does create the marker
    assert marker.exists()


def test_hf_hub_offline_set_in_the_environment(cached_vqvae, tmp_path: Path) -> None:
    """The real switch: HF_HUB_OFFLINE=1 in the environment of a fresh process, sockets disabled."""
    import subprocess
    import sys

    _, cache = cached_vqvae
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network access attempted')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from discrete_latents import VQVAE\n"
        f"model = VQVAE.from_pretrained('user/tiny-vqvae', cache_dir={str(cache)!r})\n"
        "print(model.pretrained_source.commit, model.codebook_size)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [COMMIT, "16"]


@pytest.mark.parametrize("revision", ["../../outside", "..", "main/../../x", "/etc", "a//b", "dev/", "v1 .0", "ma\nin",
                                      7])
def test_a_revision_that_could_name_a_path_is_refused_before_the_cache(tmp_path: Path, revision: object) -> None:
    with pytest.raises(ValueError, match="revision: expected a branch, tag or 40-hex commit"):
        VQVAE.from_pretrained("user/tiny-vqvae", revision=revision, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # nothing was looked up or created


@pytest.mark.parametrize("revision", ["main", "refs/pr/1", "v1.0", "release-2026_12", COMMIT])
def test_ordinary_revisions_pass_the_check(revision: str) -> None:
    from discrete_latents._hub import check_revision

    assert check_revision(revision) == revision

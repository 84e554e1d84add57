"""A saved folder is one save or none: a save that fails or is killed at any step keeps the previous one."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig, VQVAEPipeline
from discrete_latents import _files as files


def tiny_pipeline(seed: int) -> VQVAEPipeline:
    torch.manual_seed(seed)
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16}))
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(7, 7), n_layer=1, n_head=2, n_embd=16))
    return VQVAEPipeline(vqvae, prior, metadata={"description": f"seed {seed}"})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


class FailAt:
    """Make the k-th call (1-based) of any patched file operation raise ENOSPC, as a full disk does."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def wrap(self, real: Callable[..., object]) -> Callable[..., object]:
        def patched(*args: object, **kwargs: object) -> object:
            self.calls += 1
            if self.calls == self.k:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return patched


def count_operations(monkeypatch: pytest.MonkeyPatch, save: Callable[[], object]) -> int:
    counter = FailAt(0)
    for name in ("replace", "rename", "fsync", "mkdir"):
        monkeypatch.setattr(os, name, counter.wrap(getattr(os, name)))
    monkeypatch.setattr(files, "_exchange", counter.wrap(files._exchange))
    save()
    monkeypatch.undo()
    return counter.calls


@pytest.mark.parametrize("exchange", [True, False], ids=["one-step-exchange", "two-renames"])
def test_a_pipeline_save_failing_at_any_step_keeps_the_previous_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     exchange: bool) -> None:
    folder = tmp_path / "pipe"
    old, new = tiny_pipeline(0), tiny_pipeline(1)
    old.save_pretrained(folder)
    before = snapshot(folder)
    if not exchange:  # a file system without RENAME_EXCHANGE: the fallback of two renames
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    old.save_pretrained(tmp_path / "count")
    total = count_operations(monkeypatch, lambda: new.save_pretrained(tmp_path / "count"))
    assert total > 10  # every write, fsync, mkdir and rename of a save is a point of failure
    failed = 0
    for k in range(1, total + 1):
        if not exchange:
            monkeypatch.setattr(files, "_exchange", lambda a, b: False)
        fault = FailAt(k)
        for name in ("replace", "rename", "fsync", "mkdir"):
            monkeypatch.setattr(os, name, fault.wrap(getattr(os, name)))
        try:
            new.save_pretrained(folder)
        except OSError:
            failed += 1
            monkeypatch.undo()
            assert snapshot(folder) == before, f"failure at operation {k} changed the saved folder"
        else:
            monkeypatch.undo()
            assert snapshot(folder) != before  # a fault that a save survives must give the whole new save
            new.save_pretrained(tmp_path / "reference")
            assert snapshot(folder) == snapshot(tmp_path / "reference")
            old.save_pretrained(folder)  # back to the old save for the next fault
        assert leftovers(tmp_path, "pipe") == []
    # Directory fsyncs are best effort (not every file system has them), so some faults pass
    # unnoticed; every other operation's failure fails the save, and either way the folder is whole.
    assert failed >= total // 2
    loaded = VQVAEPipeline.from_pretrained(folder)
    assert loaded.metadata == {"description": "seed 0"}


KILL_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from test_atomic_save import tiny_pipeline
calls = [0]
real = os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == {k}:
        os._exit(9)  # killed: no cleanup, no exception handlers
    real(fd)
os.fsync = fsync
tiny_pipeline(1).save_pretrained({folder!r})
"""


@pytest.mark.parametrize("k", [1, 4, 9])
def test_a_killed_save_leaves_the_previous_save_loadable(tmp_path: Path, k: int) -> None:
    folder = tmp_path / "pipe"
    tiny_pipeline(0).save_pretrained(folder)
    before = snapshot(folder)
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), k=k, folder=str(folder))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert result.returncode == 9, result.stderr.decode()[-2000:]
    assert snapshot(folder) == before
    assert VQVAEPipeline.from_pretrained(folder).metadata == {"description": "seed 0"}
    # The next save clears what the killed one left and succeeds.
    tiny_pipeline(1).save_pretrained(folder)
    assert VQVAEPipeline.from_pretrained(folder).metadata == {"description": "seed 1"}


def test_a_component_save_is_atomic_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "vqvae"
    tiny_pipeline(0).vqvae.save_pretrained(folder)
    before = snapshot(folder)
    monkeypatch.setattr(files, "_fsync_tree", FailAt(1).wrap(files._fsync_tree))
    with pytest.raises(OSError, match="No space left"):
        tiny_pipeline(1).vqvae.save_pretrained(folder)
    assert snapshot(folder) == before and leftovers(tmp_path, "vqvae") == []


def test_a_folder_with_files_no_save_writes_is_refused_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=r"thesis\.tex.*new or empty folder"):
        tiny_pipeline(0).save_pretrained(folder)
    with pytest.raises(FileExistsError, match=r"thesis\.tex"):
        tiny_pipeline(0).prior.save_pretrained(folder)
    assert snapshot(folder) == {"thesis.tex": b"years of work"}
    with pytest.raises(NotADirectoryError):
        tiny_pipeline(0).save_pretrained(folder / "thesis.tex")

"""Nothing blocks a resume: a torn metrics log, a stale lock, a full disk while logging (issue 17, class 4)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import discrete_latents.training.metrics_log as metrics_log
from discrete_latents._safetensors import read_safetensors
from discrete_latents.errors import CheckpointSaveError
from discrete_latents.training import CheckpointManager, TrainConfig, Trainer
from discrete_latents.training.checkpoint import RunLock
from discrete_latents.training.metrics_log import MetricsLog

Settings = Callable[..., dict[str, object]]


@pytest.fixture
def settings(tiny_train_settings: Settings, digit_folder: Path) -> Settings:
    """``settings(out, **changes)``: a tiny stage-1-only run (2 epochs of 6 steps, a line every 2 steps)."""
    return lambda out, **extra: tiny_train_settings(digit_folder, out, **{"stage": "vqvae", **extra})


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# --- the metrics log on its own -----------------------------------------------------------------
def _log_with(path: Path, text: str) -> tuple[MetricsLog, list[str]]:
    path.write_text(text)
    notes: list[str] = []
    return MetricsLog(path, notes.append), notes


A = '{"stage": "vqvae", "step": 2, "loss": 0.5}'
B = '{"stage": "vqvae", "step": 4, "loss": 0.25}'
P = '{"stage": "prior", "step": 2, "nll": 3.0}'


@pytest.mark.parametrize("torn", ['{"stage": "vq', '{', '{"stage": "vqvae", "step": 6, "loss": 0.1', '\x00\x00\x00'])
def test_a_torn_last_line_is_dropped_on_resume_with_a_note(tmp_path: Path, torn: str) -> None:
    log, notes = _log_with(tmp_path / "metrics.jsonl", f"{A}\n{B}\n{torn}")
    log.truncate_after("vqvae", 100)  # what a resume does first
    assert (tmp_path / "metrics.jsonl").read_text() == f"{A}\n{B}\n"
    assert len(notes) == 1 and "torn last line" in notes[0] and f"({len(torn.encode())} bytes)" in notes[0]


def test_a_torn_line_never_merges_with_the_next_record(tmp_path: Path) -> None:
    """A run that starts a new stage appends without truncating; the torn tail is dropped first."""
    path = tmp_path / "metrics.jsonl"
    log, notes = _log_with(path, f'{A}\n{{"stage": "vqvae", "st')
    log.append({"stage": "prior", "step": 2})
    log.append({"stage": "prior", "step": 4})
    assert [(r["stage"], r["step"]) for r in _records(path)] == [("vqvae", 2), ("prior", 2), ("prior", 4)]
    assert len(notes) == 1


def test_a_last_line_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    log, notes = _log_with(tmp_path / "metrics.jsonl", f"{A}\n{B}")
    log.append({"stage": "vqvae", "step": 6})
    assert [r["step"] for r in _records(tmp_path / "metrics.jsonl")] == [2, 4, 6]
    assert notes == []


def test_truncate_drops_only_the_stage_steps_after_the_checkpoint(tmp_path: Path) -> None:
    log, notes = _log_with(tmp_path / "metrics.jsonl", f"{A}\n{P}\n{B}\n")
    log.truncate_after("vqvae", 3)
    assert (tmp_path / "metrics.jsonl").read_text() == f"{A}\n{P}\n"  # prior's step 2 is another stage's
    log.truncate_after("prior", 0)
    assert (tmp_path / "metrics.jsonl").read_text() == f"{A}\n"
    assert notes == []


def test_unreadable_lines_inside_the_log_are_dropped_with_a_note(tmp_path: Path) -> None:
    log, notes = _log_with(tmp_path / "metrics.jsonl", f"{A}\nnot json\n[1, 2]\n{B}\n")
    log.truncate_after("vqvae", 100)
    assert (tmp_path / "metrics.jsonl").read_text() == f"{A}\n{B}\n"
    assert notes == [f"{tmp_path / 'metrics.jsonl'}: dropped 2 unreadable line(s): [2, 3]"]


def test_a_missing_or_empty_log_needs_no_repair(tmp_path: Path) -> None:
    notes: list[str] = []
    MetricsLog(tmp_path / "absent.jsonl", notes.append).truncate_after("vqvae", 0)
    assert not (tmp_path / "absent.jsonl").exists()
    log, notes = _log_with(tmp_path / "metrics.jsonl", "")
    log.append({"stage": "vqvae", "step": 1})
    assert _records(tmp_path / "metrics.jsonl")[0]["step"] == 1 and notes == []


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_appending_is_worded_as_a_failed_checkpoint_save(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = _log_with(tmp_path / "metrics.jsonl", f"{A}\n")
    monkeypatch.setattr(metrics_log, "open", _disk_full, raising=False)
    with pytest.raises(CheckpointSaveError, match="no space left on device; the checkpoints are intact") as caught:
        log.append({"stage": "vqvae", "step": 4})
    assert "metrics.jsonl" in str(caught.value) and caught.value.__cause__.errno == errno.ENOSPC  # type: ignore[union-attr]
    # The same words as a checkpoint save on a full disk.
    monkeypatch.setattr("discrete_latents.training.checkpoint.write_safetensors", _disk_full)
    with pytest.raises(CheckpointSaveError, match="no space left on device; earlier checkpoints are intact"):
        CheckpointManager(tmp_path / "checkpoints").save(1, {"model": {"w": torch.zeros(1)}}, {"step": 1})


def test_a_full_disk_while_trimming_the_log_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = _log_with(tmp_path / "metrics.jsonl", f"{A}\n{B}\n")
    monkeypatch.setattr(metrics_log, "atomic_write_bytes", _disk_full)
    with pytest.raises(CheckpointSaveError, match="no space left on device"):
        log.truncate_after("vqvae", 2)
    assert (tmp_path / "metrics.jsonl").read_text() == f"{A}\n{B}\n"  # the log is left as it was


def test_another_io_error_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = _log_with(tmp_path / "metrics.jsonl", "")

    def io_error(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(metrics_log, "open", io_error, raising=False)
    with pytest.raises(CheckpointSaveError, match=r"\[Errno 5\] Input/output error"):
        log.append({"step": 1})


# --- a resume through the trainer ---------------------------------------------------------------
def _torn_write_at(call: int) -> Callable[..., Any]:
    """An ``open`` whose ``call``-th append writes half its line, then finds the disk full."""
    real_open = open
    count = {"n": 0}

    class HalfWritten:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> HalfWritten:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> None:
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if "a" in mode:
            count["n"] += 1
            if count["n"] == call:
                return HalfWritten(handle)
        return handle

    return fake_open


def test_resume_after_the_disk_filled_mid_line_matches_an_uninterrupted_run(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Trainer(TrainConfig(**settings(tmp_path / "full"))).fit()  # type: ignore[arg-type]
    out = tmp_path / "cut"
    monkeypatch.setattr(metrics_log, "open", _torn_write_at(4), raising=False)  # the line of step 8, epoch 2
    with pytest.raises(CheckpointSaveError, match="no space left on device"):
        Trainer(TrainConfig(**settings(out))).fit()  # type: ignore[arg-type]
    monkeypatch.undo()
    raw = (out / "metrics.jsonl").read_bytes()
    assert not raw.endswith(b"\n") and raw.count(b"\n") == 3  # three whole lines and half of the fourth
    assert not (out / ".lock").exists()  # the failed run let go of its lock
    notes: list[str] = []
    Trainer(TrainConfig(**settings(out, resume=True)), log=notes.append).fit()  # type: ignore[arg-type]
    assert any("torn last line" in note for note in notes), notes
    logged = _without_time(_records(out / "metrics.jsonl"))
    assert logged == _without_time(_records(tmp_path / "full" / "metrics.jsonl"))  # each step once, same values
    full, resumed = (read_safetensors(p / "vqvae" / "model.safetensors") for p in (tmp_path / "full", out))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


def test_resume_is_not_blocked_by_a_lock_left_with_this_process_id(settings: Settings, tmp_path: Path) -> None:
    """A container restarted with the same pid finds its previous life's lock: stale by definition."""
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(out, vqvae_epochs=1))).fit()  # type: ignore[arg-type]
    (out / ".lock").write_text(f"{socket.gethostname()}:{os.getpid()}")
    Trainer(TrainConfig(**settings(out, vqvae_epochs=1, resume=True))).fit()  # type: ignore[arg-type]
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("contents", [None, "stray.txt"])
def test_resume_is_not_blocked_by_a_lock_that_is_a_folder(settings: Settings, tmp_path: Path,
                                                          contents: str | None) -> None:
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(out, vqvae_epochs=1))).fit()  # type: ignore[arg-type]
    (out / ".lock").mkdir()
    if contents:
        (out / ".lock" / contents).write_text("x")
    with pytest.warns(RuntimeWarning, match="lock file belongs there"):
        Trainer(TrainConfig(**settings(out, vqvae_epochs=1, resume=True))).fit()  # type: ignore[arg-type]
    assert not (out / ".lock").exists()


# --- the lock on its own ------------------------------------------------------------------------
def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # reaped: no process has this id now (reuse within the test is vanishingly rare)


@pytest.mark.parametrize("holder", ["this-pid", "dead-pid", "other-host", "garbage", "not-utf8", "empty"])
def test_stale_locks_are_replaced(tmp_path: Path, holder: str) -> None:
    lock = tmp_path / ".lock"
    text = {"this-pid": f"{socket.gethostname()}:{os.getpid()}".encode(),
            "dead-pid": f"{socket.gethostname()}:{_dead_pid() if holder == 'dead-pid' else 0}".encode(),
            "other-host": f"another-host-{socket.gethostname()}:{os.getppid()}".encode(),
            "garbage": b"hello", "not-utf8": b"\xff\xfe:\x80", "empty": b""}[holder]
    lock.write_bytes(text)
    with RunLock(tmp_path):
        assert lock.read_text() == f"{socket.gethostname()}:{os.getpid()}"
    assert not lock.exists()


def test_a_fifo_in_place_of_the_lock_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".lock")
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").is_file()


def test_a_lock_held_by_a_live_process_or_by_this_one_still_refuses(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(f"{socket.gethostname()}:{os.getppid()}")  # our parent is alive
    with pytest.raises(CheckpointSaveError, match=rf"another training process \(pid {os.getppid()}\)"):
        RunLock(tmp_path).__enter__()
    (tmp_path / ".lock").unlink()
    # Held by this process now: a second trainer here is refused.
    with RunLock(tmp_path), pytest.raises(CheckpointSaveError, match="another training run in this process"):
        RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # and released afterwards
        pass

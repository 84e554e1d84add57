"""Every failure of the command line is a message (issue 17, class 3).

Each command ends with one line, ``discrete-latents CMD: error: ...``, and a non-zero exit status:
2 when the command needs fixing, 1 when it could not be done, 130 when interrupted; a traceback
only with ``--debug``. Run in-process through ``main`` and, for the exit path itself, as a process.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest
import torch

import discrete_latents.cli.commands as commands
import discrete_latents.training.metrics_log as metrics_log
from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig, VQVAEPipeline
from discrete_latents._files import atomic_write_bytes
from discrete_latents.cli import main

Settings = Callable[..., dict[str, object]]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vqvae = VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16}))
    prior = CausalPrior(CausalPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16))
    folder = tmp_path_factory.mktemp("cli") / "pipeline"
    VQVAEPipeline(vqvae=vqvae, prior=prior).save_pretrained(folder)
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stderr) of ``discrete-latents argv``; argparse's own exits included."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    return status, capsys.readouterr().err


def assert_one_error_line(stderr: str, command: str, *fragments: str) -> None:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"discrete-latents {command}: error: "), stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def sample(pipeline: Path, out: Path | str, *extra: str) -> list[str]:
    return ["sample", "--pipeline", str(pipeline), "--num-samples", "2", "--out", str(out), *extra]


# --- bad arguments: status 2, one line, nothing written -----------------------------------------
@pytest.mark.parametrize("extra, fragment", [
    (["--device", "garbage"], "--device: 'garbage' is not a device"),
    (["--device", ""], "--device: '' is not a device"),
    (["--device", "cuda:-1"], "is not a device"),
    (["--seed", str(2**64)], "argument --seed: expected an integer in [0, 2**64)"),
    (["--seed", "-1"], "argument --seed"),
    (["--seed", "1e3"], "argument --seed: expected an integer"),
    (["--num-samples", "-3"], "argument --num-samples: expected a positive integer, got -3"),
    (["--num-samples", "0"], "argument --num-samples"),
    (["--nrow", "0"], "argument --nrow"),
    (["--top-k", "0"], "argument --top-k"),
    (["--temperature", "nan"], "temperature: expected a finite number"),
    (["--labels", "3"], "labels: this prior is unconditional"),
])
def test_bad_sample_arguments(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              extra: list[str], fragment: str) -> None:
    status, err = run(sample(pipeline, tmp_path / "out.png", *extra), capsys)
    assert status == 2
    assert_one_error_line(err, "sample", fragment)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for a machine without CUDA")
@pytest.mark.parametrize("command", ["sample", "evaluate", "reconstruct"])
def test_cuda_without_cuda(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    argv = sample(pipeline, tmp_path / "o.png") if command == "sample" else [command, "--pipeline", str(pipeline)]
    status, err = run([*argv, "--device", "cuda"], capsys)
    assert status == 2
    assert_one_error_line(err, command, "--device: 'cuda' needs CUDA")


@pytest.mark.parametrize("command, flag, value, fragment", [
    ("evaluate", "--limit", "-5", "argument --limit: expected an integer >= 0, got -5"),
    ("reconstruct", "--limit", "-1", "argument --limit"),
    ("reconstruct", "--num", "-1", "argument --num: expected a positive integer"),
    ("reconstruct", "--num", "0", "argument --num"),
])
def test_negative_limits_are_refused_when_parsed(pipeline: Path, capsys: pytest.CaptureFixture[str], command: str,
                                                 flag: str, value: str, fragment: str) -> None:
    status, err = run([command, "--pipeline", str(pipeline), flag, value], capsys)
    assert status == 2
    assert_one_error_line(err, command, fragment)


def test_a_file_given_as_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"not a folder")
    for argv in (sample(file, tmp_path / "o.png"), ["push", str(file), "user/x"]):
        status, err = run(argv, capsys)
        assert status == 2
        assert_one_error_line(err, argv[0], str(file))


# --- where the output goes ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["sample", "reconstruct"])
def test_a_folder_given_as_out(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               command: str) -> None:
    argv = sample(pipeline, tmp_path) if command == "sample" else \
        ["reconstruct", "--pipeline", str(pipeline), "--out", str(tmp_path)]
    before = sorted(tmp_path.iterdir())
    status, err = run(argv, capsys)
    assert status == 2
    assert_one_error_line(err, command, f"--out {tmp_path} is a folder")
    assert sorted(tmp_path.iterdir()) == before  # no temporary file left beside it either


def test_an_out_in_a_missing_folder(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run(sample(pipeline, tmp_path / "nope" / "o.png"), capsys)
    assert status == 2
    assert_one_error_line(err, "sample", f"the folder {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "nope").exists()


def test_a_read_only_out_folder_fails_before_sampling(pipeline: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as on a read-only file system
    monkeypatch.setattr(commands, "_load", lambda args: pytest.fail("loaded the pipeline before checking --out"))
    status, err = run(sample(pipeline, tmp_path / "o.png"), capsys)
    assert status == 1
    assert_one_error_line(err, "sample", f"cannot write into {tmp_path}")


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["sample", "reconstruct"])
def test_a_full_disk_while_writing_the_grid(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, command: str,
                                            digit_folder: Path) -> None:
    out = tmp_path / "o.png"
    argv = sample(pipeline, out) if command == "sample" else \
        ["reconstruct", "--pipeline", str(pipeline), "--out", str(out), "--dataset", "mnist", "--num", "2"]
    if command == "reconstruct":  # test images without a dataset on disk
        monkeypatch.setattr(commands, "_test_images", lambda args, pipe: (torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
                                                                    torch.zeros(2, dtype=torch.long)))
    monkeypatch.setattr(os, "fsync", _disk_full)  # the data reach the disk at fsync, and do not fit
    status, err = run(argv, capsys)
    assert status == 1
    assert_one_error_line(err, command, f"could not write {out}: no space left on device")
    assert list(tmp_path.iterdir()) == []  # neither the grid nor its temporary file


def test_cleanup_after_a_failed_write_never_masks_the_first_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def unlink_fails(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(os, "fsync", _disk_full)
    monkeypatch.setattr(Path, "unlink", unlink_fails)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert caught.value.errno == errno.ENOSPC  # the cause, not the failed removal of the temporary


def test_a_full_disk_and_a_failed_cleanup_in_the_cli(pipeline: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def unlink_fails(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(os, "fsync", _disk_full)
    monkeypatch.setattr(Path, "unlink", unlink_fails)
    status, err = run(sample(pipeline, tmp_path / "o.png"), capsys)
    assert status == 1
    assert_one_error_line(err, "sample", "no space left on device")
    assert "Permission denied" not in err


# --- push: the network --------------------------------------------------------------------------
def test_push_offline(pipeline: Path, capsys: pytest.CaptureFixture[str], offline: None) -> None:
    status, err = run(["push", str(pipeline), "user/tiny"], capsys)
    assert status == 1
    assert_one_error_line(err, "push", f"could not push {pipeline} to user/tiny:", "offline mode is enabled")


def test_push_without_a_network(pipeline: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    status, err = run(["push", str(pipeline), "user/tiny", "--token", "hf_test"], capsys)
    assert status == 1
    assert_one_error_line(err, "push", "could not push", "Connection refused")


def test_push_with_a_bad_repo_id_is_a_usage_error(pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run(["push", str(pipeline), "a/b/c"], capsys)
    assert status == 2
    assert_one_error_line(err, "push", "'a/b/c'")


# --- train: settings checked before stage 1 -----------------------------------------------------
@pytest.fixture
def train_flags(tiny_train_settings: Settings, digit_folder: Path) -> Callable[..., list[str]]:
    def flags(out: Path, **extra: object) -> list[str]:
        settings = tiny_train_settings(digit_folder, out, **extra)
        return [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    return flags


@pytest.mark.parametrize("change, fragment", [
    ({"prior_overrides": {"n_layers": 1}}, "prior_overrides: unknown key(s) for CausalPriorConfig: 'n_layers'"
                                           " (did you mean 'n_layer'?)"),
    ({"prior_overrides": {"n_layer": "2"}}, "n_layer: expected an integer"),
    ({"prior_overrides": {"n_embd": 15}}, "n_embd: expected a multiple of n_head"),
    ({"vqvae_overrides": {"chanels": [8, 16]}}, "vqvae_overrides: unknown key(s) for VQVAEConfig: 'chanels'"
                                                " (did you mean 'channels'?)"),
    ({"prior_preset": "mnsit"}, "unknown prior preset 'mnsit'"),
    ({"device": "garbage"}, "device: 'garbage' is not a device"),
    ({"seed": 2**40}, "TrainConfig.seed: expected an integer in [0, 2**32)"),
])
def test_a_bad_setting_is_reported_before_stage_1_trains(train_flags: Callable[..., list[str]], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         change: dict[str, object], fragment: str) -> None:
    out = tmp_path / "run"
    settings = {"prior_overrides": {"n_layer": 1, "n_head": 2, "n_embd": 16, "codebook_size": 16}, **change}
    status, err = run(["train", *train_flags(out, **settings)], capsys)
    assert status == 2
    assert_one_error_line(err, "train", fragment)
    assert not (out / "checkpoints").exists() and not (out / "vqvae").exists()  # stage 1 never started


def test_a_full_disk_while_logging_metrics(train_flags: Callable[..., list[str]], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_log, "open", _disk_full, raising=False)
    status, err = run(["train", *train_flags(tmp_path / "run", stage="vqvae", vqvae_epochs=1)], capsys)
    assert status == 1
    assert_one_error_line(err, "train", "could not write the metrics log", "no space left on device;"
                          " the checkpoints are intact")


def test_an_out_dir_that_is_a_file(train_flags: Callable[..., list[str]], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").write_text("a file")
    status, err = run(["train", *train_flags(tmp_path / "run", stage="vqvae", vqvae_epochs=1)], capsys)
    assert status != 0
    assert_one_error_line(err, "train", str(tmp_path / "run"))


# --- anything unexpected, --debug, Ctrl-C ------------------------------------------------------
@pytest.mark.parametrize("error, status, shown", [
    (RuntimeError("boom"), 1, "RuntimeError: boom"),
    (KeyError("codes"), 2, "KeyError: 'codes'"),
    (MemoryError(), 1, "MemoryError"),
    (AssertionError("Torch not compiled with CUDA enabled"), 1, "AssertionError: Torch not compiled with CUDA enabled"),
    (OSError(errno.EIO, "Input/output error", "/data/x"), 1, "/data/x: input/output error"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/out.png"), 1, "/ro/out.png: permission denied"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), 1, "/a -> /b: invalid cross-device link"),
])
def test_any_exception_is_one_line(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, error: BaseException, status: int,
                                   shown: str) -> None:
    def fail(*args: object) -> None:
        raise error

    monkeypatch.setattr(commands, "sample", fail)
    got, err = run(sample(pipeline, tmp_path / "o.png"), capsys)
    assert got == status
    assert_one_error_line(err, "sample")
    assert err.strip().splitlines()[-1] == f"discrete-latents sample: error: {shown}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_then_the_same_line(pipeline: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], where: str) -> None:
    argv = sample(pipeline, tmp_path / "o.png", "--device", "garbage")
    status, err = run(["--debug", *argv] if where == "before" else [*argv, "--debug"], capsys)
    assert status == 2
    assert err.startswith("Traceback (most recent call last):") and "check_device" in err
    assert err.strip().splitlines()[-1].startswith("discrete-latents sample: error: --device: 'garbage'")


@pytest.mark.parametrize("command, hint", [("sample", ""), ("train", "; continue the run with --resume")])
def test_ctrl_c_exits_130_quietly(pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, command: str, hint: str) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, command, interrupted)
    argv = sample(pipeline, tmp_path / "o.png") if command == "sample" else ["train"]
    status, err = run(argv, capsys)
    assert status == 130
    assert err == f"discrete-latents {command}: interrupted{hint}\n"


# --- as a process --------------------------------------------------------------------------------
def _cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "discrete_latents.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kwargs)  # type: ignore[call-overload]


def test_the_console_command_exits_with_the_status_and_one_line(pipeline: Path, tmp_path: Path) -> None:
    result = _cli(*sample(pipeline, tmp_path / "o.png", "--device", "garbage"))
    assert result.returncode == 2
    assert result.stderr == ("discrete-latents sample: error: --device: 'garbage' is not a device; expected cpu,"
                             " cuda, cuda:N or mps\n")


def test_sigint_during_training_exits_130_without_a_traceback(train_flags: Callable[..., list[str]],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = train_flags(out, stage="vqvae", vqvae_epochs=50, checkpoint_every=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    # A shell without job control starts background commands with SIGINT ignored, and a child
    # inherits that (Python then installs no KeyboardInterrupt handler): give Ctrl-C its default back.
    process = subprocess.Popen([sys.executable, "-m", "discrete_latents.cli", "train", *flags], env=env,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(out.glob("checkpoints/**/COMMITTED")):
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "discrete-latents train: interrupted; continue the run with --resume"

"""Folders of the user's images: modes and sizes, crops and flips, bad files, streaming in the trainer."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_latents.datasets import ImageFolderDataset
from discrete_latents.errors import DatasetFormatError
from discrete_latents.training import TrainConfig
from discrete_latents.training.data import InMemory, Streamed, epoch_plan, folder_dataset, load_split


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    wide = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16).repeat(4, axis=0)  # (4, 4)
    Image.fromarray(wide).save(tmp_path / "scan.png")
    image = ImageFolderDataset(tmp_path, image_size=4, channels=1).pixels(0)
    # x / 257 rounded: 0, 128, 255, 4 (Pillow's convert("L") would give 0, 255, 255, 255)
    assert image[0, 0].tolist() == [0, 128, 255, 4]


def test_transparency_is_composited_over_black_or_kept_as_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, but the left half fully transparent and the right half half-opaque
    rgba[:, 2:, 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "sprite.png")
    rgb = ImageFolderDataset(tmp_path, image_size=4, channels=3).pixels(0)
    assert rgb[0, 0].tolist() == [0, 0, 100, 100]  # 200 * 128 / 255 = 100.4
    assert rgb[1:].max() == 0
    kept = ImageFolderDataset(tmp_path, image_size=4, channels=4).pixels(0)
    assert kept.shape == (4, 4, 4) and kept[0, 0].tolist() == [200] * 4 and kept[3, 0].tolist() == [0, 0, 128, 128]
    Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "sprite.png")  # no alpha: opaque
    assert ImageFolderDataset(tmp_path, image_size=4, channels=4).pixels(0)[3].min() == 255


def test_non_square_resize_covers_then_crops(tmp_path: Path) -> None:
    bands = np.zeros((20, 60, 3), dtype=np.uint8)  # (H, W): three vertical bands, 20 pixels each
    bands[:, :20, 0], bands[:, 20:40, 1], bands[:, 40:, 2] = 255, 255, 255
    Image.fromarray(bands).save(tmp_path / "bands.png")
    # (10, 20): scale 0.5 gives 10x30, the centre crop keeps columns 5..25: red 5, green 10, blue 5
    image = ImageFolderDataset(tmp_path, image_size=(10, 20)).pixels(0)
    assert image.shape == (3, 10, 20)
    assert (image[0, :, :4] == 255).all() and (image[1, :, 6:14] == 255).all() and (image[2, :, 16:] == 255).all()
    tall = ImageFolderDataset(tmp_path, image_size=(40, 20)).pixels(0)  # scale 2 -> 40x120, crop the green
    assert tall.shape == (3, 40, 20) and (tall[1] == 255).all() and tall[0].max() == 0


def test_random_crops_and_flips_depend_only_on_seed_epoch_and_index(tmp_path: Path) -> None:
    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (16, 1))  # brighter to the right, 16x64
    for i in range(8):
        Image.fromarray(gradient, mode="L").save(tmp_path / f"{i}.png")
    center = ImageFolderDataset(tmp_path, image_size=8, channels=1)
    dataset = ImageFolderDataset(tmp_path, image_size=8, channels=1, crop="random", hflip=True, seed=3)
    first = [dataset.pixels(i) for i in range(8)]
    assert len({tuple(img[0, 0].tolist()) for img in first}) > 2  # crops move and flips mirror
    flipped = [bool(img[0, 0, 0] > img[0, 0, -1]) for img in first]
    assert any(flipped) and not all(flipped)
    assert not torch.equal(first[0], center.pixels(0)) or not torch.equal(first[1], center.pixels(1))
    again = ImageFolderDataset(tmp_path, image_size=8, channels=1, crop="random", hflip=True, seed=3)
    assert all(torch.equal(a, again.pixels(i)) for i, a in enumerate(first))
    dataset.set_epoch(1)
    assert any(not torch.equal(a, dataset.pixels(i)) for i, a in enumerate(first))


def make_messy_folder(root: Path) -> None:
    """Good images of mixed modes and sizes, plus every kind of bad file."""
    root.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "rgb.png")
    Image.new("L", (17, 50), 99).save(root / "grey.jpg")
    Image.new("RGBA", (32, 32), (0, 255, 0, 128)).save(root / "rgba.png")
    Image.new("P", (9, 9), 3).save(root / "palette.png")
    (root / "zero.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (root / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "folder.png").mkdir()


def test_bad_files_are_all_found_before_training(tmp_path: Path) -> None:
    make_messy_folder(tmp_path / "messy")
    dataset = ImageFolderDataset(tmp_path / "messy", image_size=8)
    bad = dataset.find_bad_files(num_workers=2)
    assert [path.name for path, _ in bad] == ["corrupt.png", "folder.png", "truncated.png", "zero.png"]
    reasons = dict((path.name, reason) for path, reason in bad)
    assert "0 bytes" in reasons["zero.png"] and "not a file" in reasons["folder.png"]
    assert "truncated" in reasons["truncated.png"]
    good = dataset.without(path for path, _ in bad)
    assert [p.name for p in good.files] == ["grey.jpg", "palette.png", "rgb.png", "rgba.png"]
    assert all(good.pixels(i).shape == (3, 8, 8) for i in range(len(good)))


def test_bad_files_fail_lists_every_file_and_skip_warns_with_the_count(tmp_path: Path) -> None:
    make_messy_folder(tmp_path / "messy")
    config = TrainConfig(dataset="folder", data_dir=str(tmp_path / "messy"), num_workers=0,
                         vqvae_overrides={"in_channels": 3, "image_size": [8, 16], "channels": [8, 16]})
    with pytest.raises(DatasetFormatError) as failed, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no test/ split
        folder_dataset(config, "train")
    assert "4 of the files" in str(failed.value) and "--bad_files=skip" in str(failed.value)
    for name in ("corrupt.png", "folder.png", "truncated.png", "zero.png"):
        assert name in str(failed.value)
    with pytest.warns(UserWarning, match="skipping 4 unreadable") as caught:
        dataset = folder_dataset(config.replace(bad_files="skip"), "train")
    assert all(name in str(caught[-1].message) for name in ("corrupt.png", "zero.png", "folder.png"))
    assert len(dataset) == 4 and dataset.pixels(0).shape == (3, 8, 16)


def test_streamed_batches_equal_the_in_memory_ones(digit_folder: Path) -> None:
    config = TrainConfig(dataset="folder", data_dir=str(digit_folder), num_workers=2,
                         vqvae_overrides={"channels": [8, 16]})
    streamed = load_split(config, "train")
    assert isinstance(streamed, Streamed) and streamed.item_shape == (1, 28, 28)
    images, labels = streamed.dataset.as_tensors()
    memory = InMemory(images, labels)
    plan = [index for step in epoch_plan(len(images), 16, 2, seed=5, epoch=1, start_step=1) for index in step]
    assert len(plan) == 4  # 96 images: 3 steps of 2 batches of 16 per epoch, from the second step on
    pairs = list(zip(streamed.batches(plan, epoch=1), memory.batches(plan, epoch=1), strict=True))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
    # The same seed and epoch always give the same order; the next epoch another.
    again = epoch_plan(96, 16, 2, seed=5, epoch=1, start_step=1)
    assert all(torch.equal(x, y) for step_a, step_b in zip(again, epoch_plan(96, 16, 2, 5, 1, 1))
               for x, y in zip(step_a, step_b))
    assert not torch.equal(epoch_plan(96, 16, 1, 5, 2, 0)[0][0], epoch_plan(96, 16, 1, 5, 1, 0)[0][0])

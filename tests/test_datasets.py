"""Datasets on local files: the checksum table, IDX parsing, CIFAR-10 binary batches, safe tar
extraction, the python-version refusal and image folders. Network code is in test_download.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_latents.datasets import (
    ImageFolderDataset,
    checksums,
    extract_cifar10,
    load_cifar10,
    load_mnist,
    mnist,
    mnist_files,
    read_cifar10_batch,
    read_idx,
)
from discrete_latents.datasets._safe_tar import extract_members
from discrete_latents.datasets.checksums import RemoteFile
from discrete_latents.errors import ChecksumMismatchError, DatasetFormatError

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_MD5 = {  # ../shared/data/mnist/README.md: md5 of the uncompressed files
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


# ---------------------------------------------------------------------------- helpers


def idx_images(pixels: np.ndarray, magic: int = 2051, dims: tuple[int, ...] | None = None) -> bytes:
    dims = dims if dims is not None else pixels.shape
    return struct.pack(f">i{len(dims)}I", magic, *dims) + pixels.astype(np.uint8).tobytes()


def idx_labels(labels: list[int]) -> bytes:
    return struct.pack(">iI", 2049, len(labels)) + bytes(labels)


def write_mnist(folder: Path, split: str, images: np.ndarray, labels: list[int], gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = mnist.FILES[split]
    for name, data in ((image_name, idx_images(images)), (label_name, idx_labels(labels))):
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def cifar_record(label: int, rgb: np.ndarray) -> bytes:
    """One 3,073-byte record from an (3, 32, 32) uint8 array."""
    return bytes([label]) + rgb.astype(np.uint8).tobytes()


def cifar_batches(records_per_batch: int = 2) -> dict[str, bytes]:
    """The binary folder's files: record r of batch b has label (b + r) % 10, random pixels."""
    rng = np.random.default_rng(0)
    files = {}
    for batch, name in enumerate([*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]):
        files[name] = b"".join(
            cifar_record((batch + r) % 10, rng.integers(0, 256, (3, 32, 32))) for r in range(records_per_batch)
        )
    files["batches.meta.txt"] = b"airplane\nautomobile\nbird\n"
    return files


def write_cifar_folder(root: Path, records_per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in cifar_batches(records_per_batch).items():
        (folder / name).write_bytes(data)
    return folder


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def cifar_archive(path: Path, extra: list[tuple[str, bytes, dict]] | None = None, skip: str | None = None) -> Path:
    """A small binary-format archive (2 records per batch), optionally with hostile members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-bin", type=tarfile.DIRTYPE, mode=0o755)
        for name, data in sorted(cifar_batches().items()):
            if name != skip:
                add_member(tar, f"cifar-10-batches-bin/{name}", data)
        for name, data, fields in extra or []:
            add_member(tar, name, data, **fields)
    return path


# ---------------------------------------------------------------------------- checksum table


def test_checksum_table_is_pinned() -> None:
    # Copied from reliability-cases.md section 5; any change to the shipped table must fail here.
    assert {name: (f.size, f.sha256, f.md5) for name, f in checksums.MNIST_FILES.items()} == {
        "train-images-idx3-ubyte.gz": (
            9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        "train-labels-idx1-ubyte.gz": (
            28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        "t10k-images-idx3-ubyte.gz": (
            1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    }
    assert {name: (f.size, f.md5) for name, f in checksums.MNIST_UNPACKED.items()} == {
        "train-images-idx3-ubyte": (47040016, MNIST_MD5["train-images-idx3-ubyte"]),
        "train-labels-idx1-ubyte": (60008, MNIST_MD5["train-labels-idx1-ubyte"]),
        "t10k-images-idx3-ubyte": (7840016, MNIST_MD5["t10k-images-idx3-ubyte"]),
        "t10k-labels-idx1-ubyte": (10008, MNIST_MD5["t10k-labels-idx1-ubyte"]),
    }
    assert (
        RemoteFile(
            "cifar-10-binary.tar.gz",
            170052171,
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            "c32a1d4ab5d03f1284b67883e8d87530",
        )
        == checksums.CIFAR10_BINARY
    )
    assert (
        RemoteFile(
            "cifar-10-python.tar.gz",
            170498071,
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            "c58f30108f718f92721af3b95e74349a",
        )
        == checksums.CIFAR10_PYTHON
    )
    assert dict(checksums.CIFAR10_PYTHON_MEMBER_MD5) == {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
    assert checksums.CIFAR10_BATCH_BYTES == 30_730_000 and checksums.CIFAR10_RECORD_BYTES == 3073


def test_mirrors_are_https_and_http_is_separate() -> None:
    assert checksums.MNIST_MIRRORS == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    assert all(url.startswith("https://") for url in checksums.MNIST_MIRRORS + checksums.CIFAR10_MIRRORS)
    assert all(url.startswith("http://") for url in checksums.MNIST_HTTP_MIRRORS)


# ---------------------------------------------------------------------------- IDX parsing


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_good_files(tmp_path: Path, gz: bool) -> None:
    pixels = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    images, labels = idx_images(pixels), idx_labels([3, 1, 4])
    suffix = ".gz" if gz else ""
    (tmp_path / f"img{suffix}").write_bytes(gzip.compress(images) if gz else images)
    (tmp_path / f"lab{suffix}").write_bytes(gzip.compress(labels) if gz else labels)
    read = read_idx(tmp_path / f"img{suffix}", 2051)
    assert read.shape == (3, 28, 28) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, pixels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"lab{suffix}", 2049), [3, 1, 4])


GOOD = np.zeros((2, 28, 28), dtype=np.uint8)
BAD_IDX = {
    "magic": (idx_images(GOOD, magic=0x0D03), 2051),  # byte 2 is not 0x08 (uint8)
    "ndim": (idx_labels([1, 2]), 2051),  # a labels file read as images
    "rows": (idx_images(np.zeros((2, 27, 28))), 2051),
    "cols": (idx_images(np.zeros((2, 28, 30))), 2051),
    "count": (idx_images(GOOD, dims=(3, 28, 28)), 2051),  # header says 3, body holds 2
    "trailing bytes": (idx_images(GOOD) + b"\x00\x01", 2051),
    "header": (struct.pack(">i", 2051) + b"\x00\x00", 2051),
    "too short": (b"\x00\x00", 2049),
}


@pytest.mark.parametrize("field", sorted(BAD_IDX))
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_bad_files_name_file_and_field(tmp_path: Path, field: str, gz: bool) -> None:
    data, magic = BAD_IDX[field]
    path = tmp_path / ("broken-idx.gz" if gz else "broken-idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetFormatError) as info:
        read_idx(path, magic)
    message = str(info.value)
    assert "broken-idx" in message
    assert field in message


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(idx_images(GOOD))
    (tmp_path / "truncated.gz").write_bytes(packed[: len(packed) // 2])
    (tmp_path / "bitflip.gz").write_bytes(packed[:12] + bytes([packed[12] ^ 0xFF]) + packed[13:])
    for name in ("truncated.gz", "bitflip.gz"):
        with pytest.raises(DatasetFormatError, match=rf"{name}: gzip"):
            read_idx(tmp_path / name, 2051)


def test_load_mnist_own_files(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    write_mnist(tmp_path, "test", pixels, [0, 9, 2, 3, 4], gz=False)
    images, labels = load_mnist(tmp_path, "test", verify=False)
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 9, 2, 3, 4]
    np.testing.assert_array_equal(images[:, 0].numpy(), pixels)


def test_load_mnist_count_mismatch_and_bad_label(tmp_path: Path) -> None:
    write_mnist(tmp_path / "a", "train", np.zeros((3, 28, 28)), [1, 2])
    with pytest.raises(DatasetFormatError, match="train-labels-idx1-ubyte.gz: count: 2 labels"):
        load_mnist(tmp_path / "a", "train", verify=False)
    write_mnist(tmp_path / "b", "train", np.zeros((3, 28, 28)), [1, 10, 2])
    with pytest.raises(DatasetFormatError, match="label: 10 at index 1"):
        load_mnist(tmp_path / "b", "train", verify=False)


def test_load_mnist_verify_rejects_files_that_are_not_official(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", np.zeros((4, 28, 28)), [1, 2, 3, 4])
    with pytest.raises(ChecksumMismatchError, match="not the official t10k-images-idx3-ubyte") as info:
        load_mnist(tmp_path, "test")
    assert "verify=False" in str(info.value) and "download=True" in str(info.value)


def test_missing_files_say_what_goes_where_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(mnist, "download_file", no_network)
    write_mnist(tmp_path / "half", "test", np.zeros((1, 28, 28)), [1])
    (tmp_path / "half" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "half", "test", verify=False)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "t10k-images" not in message
    assert str(tmp_path / "half") in message and "download=True" in message
    assert checksums.MNIST_FILES["t10k-labels-idx1-ubyte.gz"].sha256 in message

    # root=None: the env var's mnist/ subfolder, else the cache folder, named in the message.
    monkeypatch.setenv("DISCRETE_LATENTS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=r"DISCRETE_LATENTS_DATA_DIR/mnist"):
        mnist_files()
    monkeypatch.delenv("DISCRETE_LATENTS_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(None, "train")
    assert str(tmp_path / "cache" / "discrete_latents" / "mnist") in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_env_var_folder_is_used_when_root_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "mnist", "test", np.full((2, 28, 28), 7), [5, 6])
    monkeypatch.setenv("DISCRETE_LATENTS_DATA_DIR", str(tmp_path))
    images, labels = load_mnist(split="test", verify=False)
    assert labels.tolist() == [5, 6] and int(images.max()) == 7


def test_truncated_unpacked_file_on_disk_is_detected(tmp_path: Path) -> None:
    # DL-09: a cut-off unpacked IDX must fail cleanly, never reach a reshape.
    write_mnist(tmp_path, "test", np.zeros((3, 28, 28)), [1, 2, 3], gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetFormatError, match="t10k-images-idx3-ubyte: count"):
        load_mnist(tmp_path, "test", verify=False)
    with pytest.raises(ChecksumMismatchError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="the real MNIST files are not in ../shared/data/mnist")
def test_real_mnist_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, md5 in MNIST_MD5.items():
        with gzip.open(MNIST_DIR / f"{name}.gz", "rb") as handle:
            assert hashlib.md5(handle.read()).hexdigest() == md5, name

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("files that are present and good must not be downloaded again")

    # These copies are re-compressed (their .gz SHA-256 differs from the table), yet their
    # unpacked MD5 matches, so even download=True leaves them alone and stays offline.
    monkeypatch.setattr(mnist, "download_file", no_network)
    paths = mnist_files(MNIST_DIR, download=True)
    assert sorted(paths) == sorted(MNIST_MD5) and all(p.parent == MNIST_DIR for p in paths.values())
    train_images, train_labels = load_mnist(MNIST_DIR, "train")
    test_images, test_labels = load_mnist(MNIST_DIR, "test")
    assert train_images.shape == (60000, 1, 28, 28) and train_labels.shape == (60000,)
    assert test_images.shape == (10000, 1, 28, 28) and test_labels.shape == (10000,)
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    # The well-known first labels, and every digit present.
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9] and test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(train_labels).tolist()[:1] == [5923] and len(torch.bincount(test_labels)) == 10


# ---------------------------------------------------------------------------- CIFAR-10 binary


def test_cifar_record_layout_and_channel_order(tmp_path: Path) -> None:
    first = np.zeros((3, 32, 32), dtype=np.uint8)
    first[0, 1, 2], first[1, 1, 2], first[2, 1, 2] = 200, 100, 50  # R, G, B of pixel (row 1, col 2)
    first[0, 2, 1] = 7  # the transposed position, to catch a row/column swap
    second = np.full((3, 32, 32), 9, dtype=np.uint8)
    raw = cifar_record(3, first) + cifar_record(8, second)
    assert raw[1 + 0 * 1024 + 1 * 32 + 2] == 200 and raw[1 + 1024 + 34] == 100 and raw[1 + 2048 + 34] == 50
    (tmp_path / "b.bin").write_bytes(raw)
    images, labels = read_cifar10_batch(tmp_path / "b.bin", strict_size=False)
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [3, 8] and labels.dtype == np.int64
    assert images[0, :, 1, 2].tolist() == [200, 100, 50]
    assert images[0, 0, 2, 1] == 7 and images[0, 1:, 2, 1].tolist() == [0, 0]
    assert (images[1] == 9).all()


def test_cifar_strict_size_and_bad_records(tmp_path: Path) -> None:
    good = cifar_record(1, np.zeros((3, 32, 32)))
    (tmp_path / "small.bin").write_bytes(good * 2)
    with pytest.raises(DatasetFormatError, match=r"small.bin: size: 6146 bytes, expected 30730000"):
        read_cifar10_batch(tmp_path / "small.bin")
    (tmp_path / "odd.bin").write_bytes(good * 2 + b"\x00")
    with pytest.raises(DatasetFormatError, match="odd.bin: size: 6147 bytes is not a positive multiple"):
        read_cifar10_batch(tmp_path / "odd.bin", strict_size=False)
    (tmp_path / "label.bin").write_bytes(good + cifar_record(10, np.zeros((3, 32, 32))))
    with pytest.raises(DatasetFormatError, match="label.bin: label: 10 in record 1"):
        read_cifar10_batch(tmp_path / "label.bin", strict_size=False)


def test_load_cifar10_from_batches_folder(tmp_path: Path) -> None:
    folder = write_cifar_folder(tmp_path, records_per_batch=3)
    images, labels = load_cifar10(tmp_path, "train", strict_size=False)
    assert images.shape == (15, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert labels.tolist() == [0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6]
    test_images, test_labels = load_cifar10(folder, "test", strict_size=False)  # root may be the folder itself
    assert test_images.shape == (3, 3, 32, 32) and test_labels.tolist() == [5, 6, 7]
    with pytest.raises(DatasetFormatError, match="expected 30730000"):
        load_cifar10(tmp_path, "test")
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(DatasetFormatError, match=r"member missing: \['data_batch_4.bin'\]"):
        load_cifar10(tmp_path, "train", strict_size=False)


def test_python_version_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    # DL-14: a pickle that would create a marker file if it were ever loaded (opcodes written
    # by hand: GLOBAL os.system, a string argument, REDUCE).
    marker = tmp_path / "TRIPWIRE"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    python_dir = tmp_path / "cifar-10-batches-py"
    python_dir.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (python_dir / name).write_bytes(payload)
    for root in (python_dir, tmp_path):
        with pytest.raises(DatasetFormatError) as info:
            load_cifar10(root, "test")
        assert "cifar-10-binary.tar.gz" in str(info.value) and "pickle" in str(info.value)
    assert not marker.exists()


def test_load_cifar10_nothing_found_says_where(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path / "empty", "train")
    message = str(info.value)
    assert "cifar-10-binary.tar.gz" in message and str(tmp_path / "empty") in message and "download=True" in message


def test_load_cifar10_checks_the_archive_before_extracting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = cifar_archive(tmp_path / "root" / "cifar-10-binary.tar.gz")
    with pytest.raises(ChecksumMismatchError, match="expected 170052171 bytes"):
        load_cifar10(tmp_path / "root", "test", strict_size=False)
    assert not (tmp_path / "root" / "cifar-10-batches-bin").exists()

    data = archive.read_bytes()
    stand_in = RemoteFile(archive.name, len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
    monkeypatch.setattr(checksums, "CIFAR10_BINARY", stand_in)
    images, labels = load_cifar10(tmp_path / "root", "test", strict_size=False)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [5, 6]
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_extract_cifar10_good_archive(tmp_path: Path) -> None:
    archive = cifar_archive(tmp_path / "good.tar.gz")
    folder = extract_cifar10(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "cifar-10-batches-bin"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cifar-10-batches-bin"]  # no temp folder left
    assert len(list(folder.glob("*.bin"))) == 6 and (folder / "batches.meta.txt").is_file()


HOSTILE = {
    "dotdot": ("cifar-10-batches-bin/../../evil", b"pwned", {}),
    "absolute": ("{abs}", b"pwned", {}),
    "symlink": ("cifar-10-batches-bin/readme.html", b"", {"type": tarfile.SYMTYPE, "linkname": "{abs}"}),
    "hardlink": ("cifar-10-batches-bin/readme.html", b"", {"type": tarfile.LNKTYPE, "linkname": "{abs}"}),
    "device": ("cifar-10-batches-bin/readme.html", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
    "extra": ("cifar-10-batches-bin/run_me.sh", b"#!/bin/sh\n", {}),
    "duplicate": ("cifar-10-batches-bin/test_batch.bin", b"\x01" * 3073, {}),
}
HOSTILE_MESSAGES = {
    "dotdot": "unsafe path",
    "absolute": "unsafe path",
    "symlink": "is a link",
    "hardlink": "is a link",
    "device": "device",
    "extra": "unexpected member",
    "duplicate": "appears twice",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_extract_cifar10_refuses_hostile_members(tmp_path: Path, case: str) -> None:
    evil = tmp_path / "evil"  # where "../../evil" from out/cifar-10-batches-bin and the absolute name point
    name, data, fields = HOSTILE[case]
    fields = {k: v.replace("{abs}", str(evil)) if isinstance(v, str) else v for k, v in fields.items()}
    archive = cifar_archive(tmp_path / "hostile.tar.gz", extra=[(name.replace("{abs}", str(evil)), data, fields)])
    with pytest.raises(DatasetFormatError, match=HOSTILE_MESSAGES[case]):
        extract_cifar10(archive, tmp_path / "out")
    assert not evil.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no half-extracted or temporary folder


def test_extract_cifar10_missing_member_and_corrupt_archive(tmp_path: Path) -> None:
    archive = cifar_archive(tmp_path / "partial.tar.gz", skip="data_batch_3.bin")
    with pytest.raises(DatasetFormatError, match="member missing.*data_batch_3.bin"):
        extract_cifar10(archive, tmp_path / "out")
    good = cifar_archive(tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar archive at all" * 10)
    for name in ("cut.tar.gz", "junk.tar.gz"):
        with pytest.raises(DatasetFormatError, match="corrupt or truncated tar"):
            extract_cifar10(tmp_path / name, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_extract_members_size_limit(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        add_member(tar, "d/x.bin", b"0123456789A")
    (tmp_path / "out").mkdir()
    with pytest.raises(DatasetFormatError, match="11 bytes, over its 10-byte limit"):
        extract_members(tmp_path / "a.tar", tmp_path / "out", {"d/x.bin": 10}, required={"d/x.bin"})
    assert list((tmp_path / "out").iterdir()) == []
    written = extract_members(tmp_path / "a.tar", tmp_path / "out", {"d/x.bin": 11}, required={"d/x.bin"})
    assert written == {"d/x.bin": tmp_path / "out" / "x.bin"} and written["d/x.bin"].read_bytes() == b"0123456789A"


# ---------------------------------------------------------------------------- image folders


def make_image_folder(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    bands = np.zeros((10, 30, 3), dtype=np.uint8)  # (H, W, C): red | green | blue thirds
    bands[:, :10, 0], bands[:, 10:20, 1], bands[:, 20:, 2] = 255, 255, 255
    Image.fromarray(bands).save(root / "bands.png")
    Image.new("L", (16, 24), 128).save(root / "sub" / "gray.JPG", quality=95)
    (root / ".hidden.png").write_bytes(b"ignored")
    (root / "notes.txt").write_text("not an image")


def test_image_folder_png_and_jpeg(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    dataset = ImageFolderDataset(tmp_path, image_size=10)
    assert [p.name for p in dataset.files] == ["bands.png", "gray.JPG"] and len(dataset) == 2
    image, label = dataset[0]
    assert image.shape == (3, 10, 10) and image.dtype == torch.float32 and label == 0
    # The shorter side is already 10, so the center crop keeps exactly the green third.
    assert torch.equal(image[1], torch.ones(10, 10)) and image[0].max() == 0 and image[2].max() == 0
    gray, _ = dataset[1]
    assert gray.shape == (3, 10, 10) and 0.45 < float(gray.mean()) < 0.55
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])  # gray -> equal RGB

    single = ImageFolderDataset(tmp_path, image_size=6, channels=1)
    image, _ = single[0]
    assert image.shape == (1, 6, 6) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_image_folder_class_folders(tmp_path: Path) -> None:
    for cls, color in (("dogs", (0, 0, 255)), ("cats", (255, 0, 0))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8), color).save(tmp_path / cls / "a.png")
    dataset = ImageFolderDataset(tmp_path, image_size=4, class_folders=True)
    assert dataset.classes == ("cats", "dogs")
    assert [dataset[i][1] for i in range(2)] == [0, 1]
    assert float(dataset[0][0][0].mean()) == 1.0  # cats/a.png is red
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetFormatError, match="loose.png"):
        ImageFolderDataset(tmp_path, image_size=4, class_folders=True)


def test_image_folder_corrupt_file_is_named(tmp_path: Path) -> None:
    make_image_folder(tmp_path)
    (tmp_path / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buffer, format="JPEG")
    (tmp_path / "sub" / "truncated.jpeg").write_bytes(buffer.getvalue()[:200])
    dataset = ImageFolderDataset(tmp_path, image_size=8)
    names = [p.name for p in dataset.files]
    for bad in ("broken.png", "truncated.jpeg"):
        with pytest.raises(DatasetFormatError, match=bad):
            dataset[names.index(bad)]
    assert dataset[names.index("bands.png")][0].shape == (3, 8, 8)  # the good ones still load


def test_image_folder_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no images found"):
        ImageFolderDataset(tmp_path / "empty", image_size=8)
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(tmp_path / "empty", image_size=8, channels=5)
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing", image_size=8)

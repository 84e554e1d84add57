"""Downloads against a local http.server on 127.0.0.1: mirrors, retries, checksums, timeouts,
no partial files, no downgrade to http, full disks, concurrent fetches, re-fetching corrupt
cached files (reliability-cases.md DL-01..DL-18)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import struct
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from discrete_latents.datasets import _download, checksums, download_file, load_cifar10, load_mnist, verify_file
from discrete_latents.datasets.checksums import RemoteFile, UnpackedFile
from discrete_latents.errors import ChecksumMismatchError, DownloadError

BODY = bytes(range(256)) * 40  # 10,240 bytes
SHA = hashlib.sha256(BODY).hexdigest()
FAST = {"timeout": 1.0, "backoff": 0.0, "allow_http": True}


# ---------------------------------------------------------------------------- local server


@dataclass
class Server:
    """Routes: path -> list of behaviours, one consumed per request (the last one repeats)."""

    base: str = ""
    routes: dict[str, list[tuple]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def next(self, path: str) -> tuple:
        with self.lock:
            self.log.append(path)
            queue = self.routes.get(path, [("status", 404)])
            return queue.pop(0) if len(queue) > 1 else queue[0]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state: Server = self.server.state  # type: ignore[attr-defined]
        kind, *args = state.next(self.path)
        if kind == "ok":  # ("ok", body[, claimed Content-Length])
            body = args[0]
            self.send_response(200)
            self.send_header("Content-Length", str(args[1] if len(args) > 1 else len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif kind == "status":
            self.send_response(args[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", args[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "drop":  # promise the whole body, send the first bytes, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(args[0])))
            self.end_headers()
            self.wfile.write(args[0][: args[1]])
            self.wfile.flush()
        elif kind == "stall":  # headers, then nothing until the test ends
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.flush()
            state.stop.wait(20)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# ---------------------------------------------------------------------------- download_file


def test_success_writes_verified_file_and_nothing_else(server: Server, tmp_path: Path) -> None:
    server.routes["/f"] = [("ok", BODY)]
    dest = tmp_path / "sub" / "f.bin"
    assert download_file([server.url("/f")], dest, size=len(BODY), sha256=SHA.upper(), **FAST) == dest
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_wrong_bytes_raise_checksum_mismatch_with_expected_actual_url(server: Server, tmp_path: Path) -> None:
    wrong = BODY[:-1] + b"\x00"
    server.routes["/f"] = [("ok", wrong)]
    with pytest.raises(ChecksumMismatchError) as info:
        download_file(server.url("/f"), tmp_path / "f.bin", size=len(BODY), sha256=SHA, **FAST)
    message = str(info.value)
    assert SHA in message and hashlib.sha256(wrong).hexdigest() in message and server.url("/f") in message
    assert server.log == ["/f"]  # wrong bytes are not retried on the same mirror
    assert list(tmp_path.iterdir()) == []


def test_wrong_bytes_move_on_to_the_next_mirror(server: Server, tmp_path: Path) -> None:
    server.routes["/a/f"] = [("ok", b"x" * len(BODY))]
    server.routes["/b/f"] = [("ok", BODY)]
    with pytest.warns(UserWarning, match=r"/a/f failed \(sha256 .*trying .*/b/f"):
        download_file([server.url("/a/f"), server.url("/b/f")], tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert (tmp_path / "f").read_bytes() == BODY and server.log == ["/a/f", "/b/f"]


def test_connection_dropped_is_retried_then_download_error(server: Server, tmp_path: Path) -> None:
    # DL-01: the connection drops at 40 % every time.
    server.routes["/f"] = [("drop", BODY, len(BODY) * 4 // 10)]
    with pytest.raises(
        DownloadError, match=r"connection closed after 4096 of 10240 bytes \(gave up after 3 attempts\)"
    ):
        download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, retries=2, **FAST)
    assert server.log == ["/f"] * 3
    assert list(tmp_path.iterdir()) == []  # no final file, no .part


def test_dropped_connection_then_success_on_retry(server: Server, tmp_path: Path) -> None:
    server.routes["/f"] = [("drop", BODY, 100), ("ok", BODY)]
    download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert (tmp_path / "f").read_bytes() == BODY and server.log == ["/f", "/f"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [403, 404])
def test_client_error_on_first_mirror_then_success(server: Server, tmp_path: Path, code: int) -> None:
    # DL-03: no retry on a 4xx (it will not change), a warning, then the next mirror.
    server.routes["/a/f"] = [("status", code)]
    server.routes["/b/f"] = [("ok", BODY)]
    with pytest.warns(UserWarning, match=f"HTTP {code}"):
        download_file([server.url("/a/f"), server.url("/b/f")], tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert server.log == ["/a/f", "/b/f"] and (tmp_path / "f").read_bytes() == BODY


def test_server_error_is_retried(server: Server, tmp_path: Path) -> None:
    server.routes["/f"] = [("status", 503), ("ok", BODY)]
    download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert server.log == ["/f", "/f"]


def test_all_mirrors_failing_lists_each_failure(server: Server, tmp_path: Path) -> None:
    # DL-04: 403, 404, and a stall after the headers.
    server.routes["/a/f"] = [("status", 403)]
    server.routes["/b/f"] = [("status", 404)]
    server.routes["/c/f"] = [("stall",)]
    urls = [server.url(p) for p in ("/a/f", "/b/f", "/c/f")]
    with pytest.warns(UserWarning), pytest.raises(DownloadError) as info:
        download_file(
            urls, tmp_path / "f", size=len(BODY), sha256=SHA, retries=0, timeout=0.5, backoff=0.0, allow_http=True
        )
    message = str(info.value)
    assert "from any of 3 mirror(s)" in message
    assert f"{urls[0]}: HTTP 403" in message and f"{urls[1]}: HTTP 404" in message
    assert f"{urls[2]}: stalled: no data for 0.5 s" in message
    assert list(tmp_path.iterdir()) == []


def test_stall_after_headers_times_out_without_hanging(server: Server, tmp_path: Path) -> None:
    # DL-05: each attempt ends after `timeout` seconds of silence; the test itself would hang otherwise.
    server.routes["/f"] = [("stall",)]
    with pytest.raises(DownloadError, match=r"stalled: no data for 0.5 s after 0 of 10240 bytes"):
        download_file(
            server.url("/f"),
            tmp_path / "f",
            size=len(BODY),
            sha256=SHA,
            retries=1,
            timeout=0.5,
            backoff=0.0,
            allow_http=True,
        )
    assert server.log == ["/f", "/f"] and list(tmp_path.iterdir()) == []


def test_bad_content_length_does_not_decide(server: Server, tmp_path: Path) -> None:
    # DL-06: a short Content-Length truncates the body (retried, then an error); extra bytes
    # beyond the expected size are wrong bytes, whatever the header says.
    server.routes["/short"] = [("ok", BODY, len(BODY) - 10)]
    with pytest.raises(DownloadError, match="connection closed after 10230 of 10240 bytes"):
        download_file(server.url("/short"), tmp_path / "f", size=len(BODY), sha256=SHA, retries=0, **FAST)
    server.routes["/long"] = [("ok", BODY + b"extra")]
    with pytest.raises(ChecksumMismatchError, match="more than the expected 10240 bytes"):
        download_file(server.url("/long"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_plain_http_needs_an_explicit_opt_in(server: Server, tmp_path: Path) -> None:
    server.routes["/f"] = [("ok", BODY)]
    with pytest.raises(ValueError, match="allow_http=True"):
        download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, timeout=1.0)
    with pytest.raises(ValueError, match="https"):
        download_file("file:///etc/passwd", tmp_path / "f", size=1, sha256=SHA, allow_http=True)
    assert server.log == [] and list(tmp_path.iterdir()) == []


def test_https_failure_is_never_retried_over_http(server: Server, tmp_path: Path) -> None:
    # DL-07: an https URL to a server that only speaks http fails the TLS handshake; no plain
    # GET ever reaches the server, even with allow_http on.
    url = server.url("/f").replace("http://", "https://")
    server.routes["/f"] = [("ok", BODY)]
    with pytest.raises(DownloadError, match="TLS error"):
        download_file(url, tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert server.log == [] and list(tmp_path.iterdir()) == []


def test_redirects_never_leave_https(server: Server, tmp_path: Path) -> None:
    handler = _download._SafeRedirectHandler(allow_http=True)
    for target in ("http://example.org/f", "file:///etc/passwd", "ftp://example.org/f"):
        with pytest.raises(_download._RefusedRedirect):
            handler.redirect_request(
                urllib.request.Request("https://example.org/a"), io.BytesIO(), 302, "Found", {}, target
            )
    follow = handler.redirect_request(
        urllib.request.Request("https://example.org/a"), io.BytesIO(), 302, "Found", {}, "https://mirror.example.org/f"
    )
    assert follow.full_url == "https://mirror.example.org/f"

    # Through the server: http -> http is followed with the opt-in, http -> file:// is refused.
    server.routes["/moved"] = [("redirect", server.url("/f"))]
    server.routes["/f"] = [("ok", BODY)]
    download_file(server.url("/moved"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert (tmp_path / "f").read_bytes() == BODY
    server.routes["/evil"] = [("redirect", "file:///etc/passwd")]
    with pytest.raises(DownloadError, match="refused redirect"):
        download_file(server.url("/evil"), tmp_path / "g", size=len(BODY), sha256=SHA, **FAST)
    assert not (tmp_path / "g").exists()


class FullDisk(io.FileIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DL-15: a "no space" DownloadError at once (another mirror would not help), partial removed.
    monkeypatch.setattr(_download, "_open_part", lambda path: FullDisk(path, "xb"))
    server.routes["/a/f"] = [("ok", BODY)]
    server.routes["/b/f"] = [("ok", BODY)]
    with pytest.raises(DownloadError, match="no space left on device while writing"):
        download_file([server.url("/a/f"), server.url("/b/f")], tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert server.log == ["/a/f"] and list(tmp_path.iterdir()) == []


def test_not_enough_free_space_is_caught_before_downloading(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_download, "_free_bytes", lambda folder: 100)
    server.routes["/f"] = [("ok", BODY)]
    with pytest.raises(DownloadError, match="no space left on device: .* 100 bytes free"):
        download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert server.log == []


def test_two_concurrent_downloads_of_one_file_both_succeed(server: Server, tmp_path: Path) -> None:
    # DL-16: each writes its own .part; the atomic rename leaves one verified file.
    server.routes["/f"] = [("ok", BODY)]
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST))
        except Exception as err:  # reported below, with the other thread's result
            results.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [tmp_path / "f", tmp_path / "f"]
    assert (tmp_path / "f").read_bytes() == BODY and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_stale_part_files_from_a_killed_run_are_swept(server: Server, tmp_path: Path) -> None:
    # DL-18: a SIGKILLed run leaves a .part; the rerun completes and sweeps it once it is old,
    # but keeps a fresh one (it may belong to a process that is still downloading).
    stale, fresh = tmp_path / "f.0123456789abcdef.part", tmp_path / "f.fedcba9876543210.part"
    stale.write_bytes(BODY[:100])
    fresh.write_bytes(BODY[:100])
    old = time.time() - 2 * _download.STALE_PART_SECONDS
    os.utime(stale, (old, old))
    server.routes["/f"] = [("ok", BODY)]
    download_file(server.url("/f"), tmp_path / "f", size=len(BODY), sha256=SHA, **FAST)
    assert (tmp_path / "f").read_bytes() == BODY
    assert leftovers(tmp_path) == [fresh.name]


def test_verify_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(BODY)
    verify_file(path, size=len(BODY), sha256=SHA)
    with pytest.raises(ChecksumMismatchError, match="10240 bytes, expected 10241 bytes"):
        verify_file(path, size=len(BODY) + 1, sha256=SHA)
    path.write_bytes(BODY[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatchError, match=f"expected {SHA}"):
        verify_file(path, size=len(BODY), sha256=SHA)


# ---------------------------------------------------------------------------- loaders with download=True


def synthetic_mnist(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Small gzipped IDX files for the test split, installed as the 'official' table."""
    pixels = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    unpacked = {
        "t10k-images-idx3-ubyte": struct.pack(">iIII", 2051, 4, 28, 28) + pixels.tobytes(),
        "t10k-labels-idx1-ubyte": struct.pack(">iI", 2049, 4) + bytes([7, 2, 1, 0]),
    }
    packed = {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in unpacked.items()}
    monkeypatch.setattr(
        checksums,
        "MNIST_FILES",
        {
            name: RemoteFile(name, len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
            for name, data in packed.items()
        },
    )
    monkeypatch.setattr(
        checksums,
        "MNIST_UNPACKED",
        {name: UnpackedFile(name, len(data), hashlib.md5(data).hexdigest()) for name, data in unpacked.items()},
    )
    return packed


def test_mnist_download_missing_files(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = synthetic_mnist(monkeypatch)
    for name, data in packed.items():
        server.routes[f"/m/{name}"] = [("ok", data)]
    images, labels = load_mnist(
        tmp_path, "test", download=True, mirrors=[server.url("/m/")], allow_http=True, timeout=1.0
    )
    assert images.shape == (4, 1, 28, 28) and labels.tolist() == [7, 2, 1, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(packed)
    # Second call: everything is present and verified, so no network at all.
    server.log.clear()
    load_mnist(tmp_path, "test", download=True, mirrors=[server.url("/m/")], allow_http=True, timeout=1.0)
    assert server.log == []


def test_mnist_corrupt_cached_file_is_fetched_again(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DL-08: a truncated archive in the cache is caught by size + sha256 and replaced.
    packed = synthetic_mnist(monkeypatch)
    images_gz = "t10k-images-idx3-ubyte.gz"
    (tmp_path / images_gz).write_bytes(packed[images_gz][:50])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(packed["t10k-labels-idx1-ubyte.gz"])
    server.routes[f"/a/{images_gz}"] = [("status", 404)]
    server.routes[f"/b/{images_gz}"] = [("ok", packed[images_gz])]
    with pytest.warns(UserWarning) as record:
        images, labels = load_mnist(
            tmp_path, "test", download=True, mirrors=[server.url("/a"), server.url("/b/")], allow_http=True, timeout=1.0
        )
    messages = [str(warning.message) for warning in record]
    assert any(f"{images_gz}: gzip: corrupt" in m and "downloading it again" in m for m in messages)
    assert any("HTTP 404" in m and "trying" in m for m in messages)
    assert labels.tolist() == [7, 2, 1, 0] and images.shape == (4, 1, 28, 28)
    assert (tmp_path / images_gz).read_bytes() == packed[images_gz]
    assert server.log == [f"/a/{images_gz}", f"/b/{images_gz}"]  # the good labels file was not fetched
    assert leftovers(tmp_path) == []


def test_cifar10_download_then_safe_extract(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        names = [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"]
        for index, name in enumerate(names):
            data = b"cat\ndog\n" if name.endswith(".txt") else bytes([index]) + rng.bytes(3072)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    monkeypatch.setattr(
        checksums,
        "CIFAR10_BINARY",
        RemoteFile(
            "cifar-10-binary.tar.gz",
            len(archive),
            hashlib.sha256(archive).hexdigest(),
            hashlib.md5(archive).hexdigest(),
        ),
    )
    server.routes["/c/cifar-10-binary.tar.gz"] = [("ok", archive)]
    images, labels = load_cifar10(
        tmp_path, "train", download=True, strict_size=False, mirrors=[server.url("/c/")], allow_http=True, timeout=1.0
    )
    assert images.shape == (5, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]

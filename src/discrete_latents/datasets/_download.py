"""Verified, atomic downloads from a list of HTTPS mirrors, with the standard library only.

A download streams into ``<name>.<random>.part`` next to the final file, is checked for its
exact size and SHA-256, fsynced, then renamed with ``os.replace``. Nothing unverified ever sits
under the final name, a failed or interrupted download leaves no partial file behind (a killed
process's leftovers are swept once they are a day old), and two processes fetching the same file
each write their own ``.part`` and both succeed: the rename is atomic and both copies are equal.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import secrets
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from .._checks import check_int
from .._files import discard, fsync_directory
from ..errors import ChecksumMismatchError, DownloadError

CHUNK_BYTES = 1 << 20
STALE_PART_SECONDS = 24 * 3600  # older .part files belong to a killed process, not a live one
# Worth another try on the same mirror; any other 4xx (403, 404, ...) will not change.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PART = re.compile(r"\.[0-9a-f]{16}\.part")
_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class _Transient(Exception):
    """Network trouble worth retrying on the same mirror."""


class _Permanent(Exception):
    """A mirror answered in a way a retry will not change (404, 403, refused redirect, TLS)."""


class _LocalWriteError(Exception):
    """Writing on this machine failed; another mirror would not help."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class _RefusedRedirect(urllib.error.URLError):
    pass


class _SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https (or http -> http with the caller's opt-in): never downgrade."""

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(newurl).scheme.lower()
        if new != "https" and not (new == "http" and old == "http" and self.allow_http):
            fp.close()
            raise _RefusedRedirect(f"refused redirect from {req.full_url} to {newurl} (only https is followed)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_url(url: str, allow_http: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_http:
        raise ValueError(
            f"{url}: plain-http download refused; use an https mirror, or pass allow_http=True to opt in "
            "(size and SHA-256 are still checked, but the transfer is not private)"
        )
    if scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url}: expected an https:// URL")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], *, size: int, sha256: str) -> None:
    """Check a file on disk against its expected size and SHA-256.

    The size is compared first, so a truncated or oversized file costs no hashing.

    Args:
        path: the file.
        size: expected length in bytes.
        sha256: expected hex digest (any case).

    Raises:
        ChecksumMismatchError: naming the file, the expected and the actual value.
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import hashlib, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> _ = p.write_bytes(b"abc")
        >>> verify_file(p, size=3, sha256=hashlib.sha256(b"abc").hexdigest())
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ChecksumMismatchError(f"{path}: {actual_size} bytes, expected {size} bytes (truncated or not this file)")
    actual = _sha256_file(path)
    if actual != sha256.lower():
        raise ChecksumMismatchError(f"{path}: sha256 {actual}, expected {sha256.lower()}")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _open_part(path: Path):  # type: ignore[no-untyped-def]
    # "x": never reuse or truncate a file that another process might be writing.
    return open(path, "xb")


def _remove_stale_parts(dest: Path) -> None:
    prefix = dest.name
    now = time.time()
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and _PART.fullmatch(name[len(prefix) :])):
            continue
        try:
            if now - entry.stat().st_mtime > STALE_PART_SECONDS:
                entry.unlink()
        except OSError:
            pass  # raced with another process's cleanup; harmless


def _open_url(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(
        url,
        # identity: the bytes hashed must be the bytes published, not a re-encoded transfer.
        headers={"User-Agent": f"discrete_latents/{__version__}", "Accept-Encoding": "identity"},
    )
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        message = f"HTTP {err.code} {err.reason}"
        if 300 <= err.code < 400:  # urllib itself refused a redirect to a non-http(s) scheme
            message = f"refused redirect: {message}"
        raise (_Transient if err.code in _TRANSIENT_HTTP else _Permanent)(message) from None
    except _RefusedRedirect as err:
        raise _Permanent(str(err.reason)) from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLError):
            raise _Permanent(f"TLS error: {err.reason}") from None
        if isinstance(err.reason, TimeoutError):
            raise _Transient(f"timed out connecting (timeout {timeout} s)") from None
        raise _Transient(f"cannot connect: {err.reason}") from None
    except TimeoutError:
        raise _Transient(f"no response headers within {timeout} s") from None
    except (http.client.HTTPException, OSError) as err:
        raise _Transient(f"connection failed: {err!r}") from None


def _read_chunk(response: http.client.HTTPResponse, received: int, size: int, timeout: float) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except TimeoutError:
        raise _Transient(f"stalled: no data for {timeout} s after {received} of {size} bytes") from None
    except http.client.IncompleteRead:
        raise _Transient(f"connection closed after {received} of {size} bytes") from None
    except (http.client.HTTPException, OSError) as err:
        raise _Transient(f"connection failed after {received} of {size} bytes: {err!r}") from None


def _fetch_once(
    opener: urllib.request.OpenerDirector,
    url: str,
    dest: Path,
    size: int,
    sha256: str,
    timeout: float,
    progress: bool,
) -> None:
    part = dest.with_name(f"{dest.name}.{secrets.token_hex(8)}.part")
    try:
        with _open_url(opener, url, timeout) as response:
            try:
                handle = _open_part(part)
            except OSError as err:
                raise _LocalWriteError(err) from None
            with handle, tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                digest, received = hashlib.sha256(), 0
                while chunk := _read_chunk(response, received, size, timeout):
                    received += len(chunk)
                    # The header's Content-Length is not trusted (DL-06): our table decides.
                    if received > size:
                        raise ChecksumMismatchError(f"server sent more than the expected {size} bytes")
                    digest.update(chunk)
                    try:
                        handle.write(chunk)
                    except OSError as err:
                        raise _LocalWriteError(err) from None
                    bar.update(len(chunk))
                if received < size:
                    raise _Transient(f"connection closed after {received} of {size} bytes")
                actual = digest.hexdigest()
                if actual != sha256:
                    raise ChecksumMismatchError(
                        f"sha256 {actual}, expected {sha256} ({size} bytes; a corrupted or altered copy)"
                    )
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError as err:
                    raise _LocalWriteError(err) from None
        try:
            os.replace(part, dest)
        except OSError as err:
            raise _LocalWriteError(err) from None
    except BaseException:
        discard(part)
        raise
    fsync_directory(dest.parent)


def _try_mirror(
    opener: urllib.request.OpenerDirector,
    url: str,
    dest: Path,
    size: int,
    sha256: str,
    timeout: float,
    retries: int,
    backoff: float,
    progress: bool,
) -> Exception | None:
    """Return None on success, else the error that made us give up on this mirror."""
    for attempt in range(retries + 1):
        try:
            _fetch_once(opener, url, dest, size, sha256, timeout, progress)
            return None
        except _LocalWriteError as err:
            if err.err.errno in _NO_SPACE:
                raise DownloadError(
                    f"no space left on device while writing {dest} ({size} bytes needed); "
                    "free some space or pass another root folder"
                ) from err.err
            raise DownloadError(f"cannot write {dest}: {err.err}") from err.err
        except (ChecksumMismatchError, _Permanent) as err:
            return err  # the same mirror would serve the same answer again
        except _Transient as err:
            if attempt == retries:
                return _Transient(f"{err} (gave up after {retries + 1} attempts)")
            time.sleep(backoff * 2**attempt)
    return None  # unreachable: the loop returns on its last attempt


def download_file(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    size: int,
    sha256: str,
    timeout: float = 30.0,
    retries: int = 2,
    backoff: float = 1.0,
    allow_http: bool = False,
    progress: bool = False,
) -> Path:
    """Download one file from the first mirror that serves the right bytes.

    Mirrors are tried in order. On each, a dropped connection, a stall or a 5xx is retried
    ``retries`` times (waits ``backoff``, ``2*backoff``, ...); a 4xx, a refused redirect or wrong
    bytes moves on to the next mirror at once, with a warning. Redirects are followed to https
    only: https is never downgraded to http.

    Args:
        urls: full URL of the file on each mirror, in order of preference.
        dest: final path; its folder is created if needed.
        size: exact expected length in bytes.
        sha256: expected hex SHA-256.
        timeout: seconds to wait for a connection or for the next bytes. Default 30.
        retries: extra attempts per mirror after a transient failure. Default 2.
        backoff: seconds before the first retry, doubled each time. Default 1.
        allow_http: accept ``http://`` URLs in ``urls`` (e.g. a mirror on 127.0.0.1); off by
            default. Even then, an https URL is never redirected to http.
        progress: show a progress bar on stderr. Default False.

    Returns:
        ``dest`` as a ``Path``, holding the verified file.

    Raises:
        ChecksumMismatchError: every mirror served bytes of the wrong size or SHA-256 (the
            message lists each URL with the expected and actual value).
        DownloadError: no mirror succeeded (the message lists each mirror's failure), or the
            disk is full ("no space"), or ``dest`` cannot be written.
        ValueError: a URL is not https (and ``allow_http`` is off), or an argument is invalid.

    Examples:
        >>> download_file(  # doctest: +SKIP
        ...     ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"],
        ...     "data/t10k-labels-idx1-ubyte.gz",
        ...     size=4542,
        ...     sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ... )
        PosixPath('data/t10k-labels-idx1-ubyte.gz')
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("urls: expected at least one mirror URL")
    for url in url_list:
        _check_url(url, allow_http)
    sha256 = sha256.lower()
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256: expected 64 hex digits, got {sha256!r}")
    check_int("size", size, 0)
    check_int("retries", retries, 0)
    if not timeout > 0 or not backoff >= 0:
        raise ValueError(f"timeout must be > 0 and backoff >= 0, got {timeout!r} and {backoff!r}")

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the folder {dest.parent}: {err}") from err
    _remove_stale_parts(dest)
    free = _free_bytes(dest.parent)
    if free is not None and free < size:
        raise DownloadError(
            f"no space left on device: {dest.parent} has {free} bytes free, {dest.name} needs {size} bytes"
        )

    opener = urllib.request.build_opener(_SafeRedirectHandler(allow_http))
    failures: list[tuple[str, Exception]] = []
    for index, url in enumerate(url_list):
        error = _try_mirror(opener, url, dest, size, sha256, timeout, retries, backoff, progress)
        if error is None:
            return dest
        failures.append((url, error))
        if index + 1 < len(url_list):
            warnings.warn(f"{dest.name}: {url} failed ({error}); trying {url_list[index + 1]}", stacklevel=2)

    listing = "\n".join(f"  {url}: {error}" for url, error in failures)
    if all(isinstance(error, ChecksumMismatchError) for _, error in failures):
        raise ChecksumMismatchError(f"{dest.name}: every mirror served the wrong bytes:\n{listing}")
    raise DownloadError(f"could not download {dest.name} from any of {len(failures)} mirror(s):\n{listing}")

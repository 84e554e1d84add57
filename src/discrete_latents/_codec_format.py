"""The bytes of a codec stream: header, payload framing and chunk checksums (no model code here).

Layout of format version 1 (all integers little-endian)::

    magic        2 bytes   b"DL"
    version|mode 1 byte    format version in the high 4 bits, coding mode in the low 4 bits
    fingerprint  4 bytes   the first bytes of a SHA-256 of the pipeline's configs and weights
    count        varint    number of images N >= 1 (unsigned LEB128, at most 6 bytes)
    payloads     one per chunk of CHUNK_SIZE images in stream order; each but the last is preceded
                 by its length (varint), the last runs to the end of the stream

A payload is the ANS coder's 32-bit words, little-endian, without the zero high bytes of the
last word (it is never zero, so they are restored by padding to a multiple of 4 bytes). What the
fingerprint implies (grid, codebook, classes) is not repeated.
"""

from __future__ import annotations

import zlib
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from .errors import CodecError

MAGIC = b"DL"
FORMAT_VERSION = 1
FINGERPRINT_SIZE = 4
# Images per payload. The prior always runs on chunks of this size (the last one smaller), so
# encoder and decoder see the same batch layout whatever batch the caller passes: CPU kernels give
# slightly different floats for different batch sizes. Fixed by the format version.
CHUNK_SIZE = 128
MAX_COUNT = 2**40  # far beyond any real stream; keeps the count varint to 6 bytes
_MAX_VARINT_BYTES = 6


class Mode(IntEnum):
    """How each image's condition (its class, or "no label") is stored."""

    UNCONDITIONAL = 0  # the prior has no classes: codes only
    LABELS = 1  # the caller's labels, coded with the prior's class frequencies; decoding returns them
    CHOSEN = 2  # per image, whichever of "no label" and each class gives the fewest bits in all
    NO_LABEL = 3  # every image in the prior's "no label" mode: nothing stored per image


class StreamInfo(NamedTuple):
    """What the header of a stream says.

    Attributes:
        version: the format version.
        mode: the `Mode` of the condition symbols.
        fingerprint: the pipeline fingerprint the stream was written with (4 bytes).
        num_images: the number of images.
        header_size: bytes before the first payload.
    """

    version: int
    mode: Mode
    fingerprint: bytes
    num_images: int
    header_size: int


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, position after it)."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise CodecError(f"stream: truncated inside the {what} (at byte {pos + i} of {len(data)})")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:  # a padded encoding: never written, so the stream is corrupt
                break
            return value, pos + i + 1
    raise CodecError(f"stream: corrupt {what} at byte {pos} (not a minimal varint of at most {_MAX_VARINT_BYTES}"
                     " bytes)")


def pack_header(mode: Mode, fingerprint: bytes, count: int) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION << 4 | int(mode)]) + fingerprint + varint(count)


def read_header(data: bytes) -> StreamInfo:
    """Parse and check the header of a stream (nothing is decoded).

    Raises:
        CodecError: an empty, foreign, truncated or newer stream, or an impossible mode or count.
    """
    if not data:
        raise CodecError("stream: empty (0 bytes); expected a discrete_latents codec stream starting with b'DL'")
    if bytes(data[: len(MAGIC)]) != MAGIC[: len(data)]:
        raise CodecError(f"stream: not a discrete_latents codec stream (it starts with {bytes(data[:8])!r},"
                         f" expected {MAGIC!r})")
    fixed = len(MAGIC) + 1 + FINGERPRINT_SIZE
    if len(data) <= fixed:
        raise CodecError(f"stream: truncated inside the header ({len(data)} bytes, a header has at least {fixed + 1})")
    version, mode = data[len(MAGIC)] >> 4, data[len(MAGIC)] & 0x0F
    if version > FORMAT_VERSION:
        raise CodecError(f"stream: format version {version} is newer than this discrete_latents reads"
                         f" ({FORMAT_VERSION}); upgrade discrete_latents to decode it")
    if version < 1:
        raise CodecError(f"stream: corrupt header (format version {version})")
    if mode not in set(Mode):
        raise CodecError(f"stream: corrupt header (unknown coding mode {mode}; known: {[int(m) for m in Mode]})")
    count, pos = read_varint(data, fixed, "image count")
    if not 1 <= count <= MAX_COUNT:
        raise CodecError(f"stream: corrupt header (image count {count}; expected 1 to {MAX_COUNT})")
    return StreamInfo(version, Mode(mode), bytes(data[len(MAGIC) + 1: fixed]), count, pos)


def num_chunks(count: int) -> int:
    return -(-count // CHUNK_SIZE)


def join_payloads(payloads: list[bytes]) -> bytes:
    """Frame the payloads: a length before each but the last."""
    return b"".join(varint(len(p)) + p for p in payloads[:-1]) + payloads[-1]


def split_payloads(data: bytes, info: StreamInfo) -> list[bytes]:
    """Cut the payloads out of a stream, checking the framing before anything is decoded.

    Every payload takes at least one byte, so a count the stream cannot hold is refused here,
    before any memory is set aside for the images it claims.
    """
    chunks, pos = num_chunks(info.num_images), info.header_size
    if chunks > len(data) - pos:
        raise CodecError(f"stream: truncated or corrupt: the header claims {info.num_images} images ({chunks} payloads)"
                         f" but only {len(data) - pos} bytes follow it")
    payloads = []
    for index in range(chunks - 1):
        size, pos = read_varint(data, pos, f"length of payload {index}")
        if size == 0 or pos + size >= len(data):  # the last payload still needs at least a byte
            raise CodecError(f"stream: truncated or corrupt: payload {index} of {chunks} claims {size} bytes,"
                             f" {len(data) - pos} remain")
        payloads.append(bytes(data[pos: pos + size]))
        pos += size
    payloads.append(bytes(data[pos:]))
    return payloads


def words_to_bytes(words: np.ndarray) -> bytes:
    """ANS words -> little-endian bytes without the zero high bytes of the last word."""
    return words.astype("<u4").tobytes().rstrip(b"\0")


def bytes_to_words(payload: bytes, index: int) -> np.ndarray:
    if not payload or payload[-1] == 0:  # words_to_bytes never ends a payload in a zero byte
        raise CodecError(f"stream: payload {index} is empty or ends in a zero byte: truncated or corrupt")
    padded = payload + b"\0" * (-len(payload) % 4)
    return np.frombuffer(padded, dtype="<u4").astype(np.uint32)


def chunk_checksum(header: bytes, index: int, conditions: np.ndarray | None, codes: np.ndarray) -> int:
    """CRC-32 of the header, the chunk's index, its condition symbols and codes; never zero.

    It is the first thing pushed on each chunk's ANS stack, so decoding must end on it: the coder
    needs some initial state anyway, so the check costs about 12 bits per chunk, not 32.
    """
    crc = zlib.crc32(header + varint(index))
    if conditions is not None:
        crc = zlib.crc32(conditions.astype("<i4").tobytes(), crc)
    crc = zlib.crc32(codes.astype("<i4").tobytes(), crc)
    return crc or 1  # ANS data never ends in a zero word

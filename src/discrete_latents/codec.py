"""Lossless compression of code grids with the prior: with the VQ-VAE, a complete lossy image codec.

The prior gives each code a probability given the codes before it in raster order, so an entropy
coder stores a grid in about its negative log-likelihood in bits (Shannon 1948). The coder is
`constriction <https://github.com/bamler-lab/constriction>`_'s ANS (Duda et al. 2015, Rust core;
``pip install "discrete_latents[codec]"``); this module computes the probabilities and frames the
bytes (the layout is in ``_codec_format``).

Decoding is exact only if the decoder computes every probability bit for bit as the encoder did.
So both sides

* drive the prior through the incremental path `sample` uses
  (``_start_sampling`` / ``_next_logits``, with the key/value cache), feeding it a buffer that
  holds exactly the codes the decoder knows at that step;
* run it on fixed chunks of ``CHUNK_SIZE`` images in stream order, whatever batch the caller
  passes, each chunk on a single intra-op thread (chunks run in parallel, one per thread the
  caller allows): torch's CPU kernels give slightly different floats for different batch sizes
  and thread counts;
* turn logits into float64 probabilities the same way, which constriction quantizes to fixed
  point deterministically.

What can still differ (another torch build, CPU type, GPU, dtype) fails a CRC-32 of every chunk's
decoded codes: a clear error, never silently different images.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ._checks import check_bool, check_indices, check_labels
from ._codec_format import (
    CHUNK_SIZE,
    FINGERPRINT_SIZE,
    Mode,
    StreamInfo,
    bytes_to_words,
    chunk_checksum,
    join_payloads,
    pack_header,
    split_payloads,
    words_to_bytes,
)
from ._codec_format import read_header as _read_header
from ._configs import Config
from ._safetensors import hash_state
from .errors import CodecError, NonFiniteError
from .priors import BasePrior

__all__ = ["CHUNK_SIZE", "DecodedCodes", "Mode", "StreamInfo", "compress_codes", "decompress_codes", "fingerprint_of",
           "read_header"]

# Priors whose likelihood is exact in raster order, computed one code at a time by _next_logits.
_T = TypeVar("_T")
_R = TypeVar("_R")


class DecodedCodes(NamedTuple):
    """What `decompress_codes` returns.

    Attributes:
        codes: (N, h, w) int64 code ids, on the prior's device.
        labels: (N,) int64 classes when the stream stores the caller's labels
            (`Mode.LABELS`), else ``None``.
    """

    codes: Tensor
    labels: Tensor | None


def _constriction() -> Any:
    try:
        import constriction
    except ImportError:
        raise ImportError("the codec needs the 'constriction' package: pip install 'discrete_latents[codec]'"
                          " (or pip install constriction)") from None
    return constriction


# fingerprint ---------------------------------------------------------------------------------------
def fingerprint_of(*modules: nn.Module) -> bytes:
    """The first 4 bytes of a SHA-256 of the modules' classes, configs and every state tensor.

    A stream records its pipeline's fingerprint, so decoding with other weights or settings gives
    a clear error. It covers names, dtypes, shapes and raw bytes, so a copy cast to another dtype
    counts as another pipeline (its probabilities would differ anyway).

    Examples:
        >>> from discrete_latents import CausalPrior, CausalPriorConfig
        >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16))
        >>> len(fingerprint_of(prior))
        4
    """
    digest = hashlib.sha256(b"discrete_latents codec fingerprint 1\0")
    for module in modules:
        config = getattr(module, "config", None)
        described = config.to_dict() if isinstance(config, Config) else None
        digest.update(json.dumps([type(module).__name__, described], sort_keys=True).encode() + b"\0")
        hash_state(digest, module)
    return digest.digest()[:FINGERPRINT_SIZE]


def read_header(data: bytes | bytearray | memoryview) -> StreamInfo:
    """Parse the header of a stream without decoding it: format version, mode, fingerprint, count.

    Raises:
        TypeError: ``data`` is not bytes-like.
        CodecError: an empty, foreign, truncated, corrupt or newer stream.

    Examples:
        >>> read_header(b"DL\\x12\\x01\\x02\\x03\\x04\\x05").num_images
        5
    """
    return _read_header(_as_bytes(data))


def _as_bytes(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected the bytes of a compressed stream, got {type(data).__name__}")
    return bytes(data)


# the coder's probabilities -------------------------------------------------------------------------
def _check_codable(prior: object) -> BasePrior:
    # A prior declares both (BasePrior.raster_order, exact_likelihood): the causal and PixelCNN
    # priors and plugin priors that keep the defaults can code; the masked prior cannot.
    if not (isinstance(prior, BasePrior) and prior.raster_order and prior.exact_likelihood):
        raise CodecError(f"prior: {type(prior).__name__} cannot drive the entropy coder; it needs a prior with an exact"
                         " likelihood computed one code at a time in raster order (such as CausalPrior or"
                         " PixelCNNPrior)")
    return prior


def _probabilities(logits: Tensor, position: int) -> np.ndarray:
    """(B, K) logits -> (B, K) float64 probabilities, computed the same way on both sides."""
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteError(f"codec: the prior produced NaN or infinite logits at position {position}; check its"
                             " weights")
    return torch.softmax(logits.double(), dim=-1).cpu().numpy()


def _run_prior(prior: BasePrior, cond: Tensor | None, batch: int,
               step: Callable[[int, np.ndarray], Tensor]) -> Tensor:
    """Step the prior through every raster position of one chunk, as ``sample`` does.

    ``step(position, probabilities)`` returns the chunk's (B,) codes at ``position``: the known
    ones when encoding, the decoded ones when decoding. Either way the prior only ever sees the
    codes decoded so far (zeros after them), so its inputs match bit for bit on both sides.
    """
    device = next(prior.parameters()).device
    known = torch.zeros(batch, prior.num_codes, dtype=torch.long, device=device)
    with torch.inference_mode():
        state = prior._start_sampling(batch, cond, True)
        for position in range(prior.num_codes):
            logits = prior._next_logits(known, position, cond, state)
            known[:, position] = step(position, _probabilities(logits, position))
    return known


def _condition_weights(prior: BasePrior, mode: Mode) -> np.ndarray | None:
    """Probabilities of the condition symbols: classes by their frequencies, then "no label".

    In `Mode.CHOSEN`, "no label" (id ``num_classes``) gets the label-dropout rate, the share
    of the training data the prior saw without a label, and the classes share the rest.
    """
    if mode in (Mode.UNCONDITIONAL, Mode.NO_LABEL):
        return None
    frequencies = np.array(prior.config.class_frequencies or (1.0,) * prior.num_classes, dtype=np.float64)
    frequencies /= frequencies.sum()
    if mode is Mode.LABELS:
        return frequencies
    dropout = prior.config.label_dropout
    return np.append((1.0 - dropout) * frequencies, dropout)


def _no_labels(prior: BasePrior, count: int) -> np.ndarray:
    """(count,) int32 ids of the "no label" condition, ``num_classes``."""
    return np.full(count, prior.num_classes, dtype=np.int32)


def _cheapest_conditions(prior: BasePrior, codes: Tensor, weights: np.ndarray) -> np.ndarray:
    """For each (h, w) grid, the condition (a class, or "no label") with the fewest bits in all.

    Scored with the teacher-forced pass, one candidate at a time (a chunk-sized batch stays in
    cache); only the encoder needs the choice, so these floats need not match anything. "No
    label" is a candidate only for a prior trained with label dropout.
    """
    candidates = prior.num_classes + (1 if prior.config.label_dropout > 0 else 0)
    bits = np.empty((candidates, codes.shape[0]))
    with torch.inference_mode():
        for candidate in range(candidates):
            cond = torch.full(codes.shape[:1], candidate, dtype=torch.long, device=codes.device)
            logits = rearrange(prior._logits(codes, cond).float(), "b h w k -> b k h w")
            nats = F.cross_entropy(logits, codes, reduction="none").sum((1, 2))
            bits[candidate] = nats.double().cpu().numpy() / math.log(2) - math.log2(weights[candidate])
    return bits.argmin(axis=0).astype(np.int32)  # ties: the lowest id


# chunks --------------------------------------------------------------------------------------------
@contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _map_single_threaded(fn: Callable[[_T], _R], jobs: Sequence[_T], sizes: Sequence[int],
                         progress: Callable[[int], object] | None) -> list[_R]:
    """``[fn(job) for job in jobs]``, each job on one intra-op thread, as many at once as torch may use.

    torch's thread count is a process-wide setting, so it is set to 1 for the duration of the call
    and restored afterwards; other threads running torch meanwhile also run single-threaded.
    """
    threads = torch.get_num_threads()

    def single_threaded(job: _T) -> _R:
        torch.set_num_threads(1)  # per worker: OpenMP keeps a thread count for each thread
        return fn(job)

    results: list[_R] = []
    workers = min(threads, len(jobs))
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        outputs = pool.map(single_threaded, jobs) if pool is not None else map(single_threaded, jobs)
        for result, size in zip(outputs, sizes):
            results.append(result)
            if progress is not None:
                progress(size)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
    return results


def _encode_chunk(prior: BasePrior, header: bytes, index: int, codes: Tensor, conditions: np.ndarray | None,
                  weights: np.ndarray | None) -> bytes:
    constriction = _constriction()
    model = constriction.stream.model
    flat = rearrange(codes, "b h w -> b (h w)")
    if conditions is None and weights is not None:  # Mode.CHOSEN: the encoder picks them
        conditions = _cheapest_conditions(prior, codes, weights)
    cond = None if conditions is None else torch.from_numpy(conditions).long().to(codes.device)
    tables: list[np.ndarray] = []

    def known(position: int, probabilities: np.ndarray) -> Tensor:
        tables.append(probabilities)
        return flat[:, position]

    _run_prior(prior, cond, flat.shape[0], known)
    symbols = flat.cpu().numpy().astype(np.int32)
    # The checksum goes on the stack first, so it is what decoding ends on.
    coder = constriction.stream.stack.AnsCoder(np.array([chunk_checksum(header, index, conditions, symbols)],
                                                        dtype=np.uint32))
    # ANS is a stack: push codes (position-major, the order the decoder meets them), then the
    # conditions, so the decoder pops the conditions first.
    coder.encode_reverse(symbols.T.reshape(-1), model.Categorical(perfect=False), np.concatenate(tables))
    if weights is not None:  # Mode.NO_LABEL: both sides know the conditions, nothing is stored
        coder.encode_reverse(conditions, model.Categorical(weights, perfect=False))
    return words_to_bytes(coder.get_compressed())


def _decode_chunk(prior: BasePrior, header: bytes, index: int, batch: int, payload: bytes, mode: Mode,
                  weights: np.ndarray | None) -> tuple[Tensor, np.ndarray | None]:
    constriction = _constriction()
    model = constriction.stream.model
    device = next(prior.parameters()).device
    words = bytes_to_words(payload, index)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
    except ValueError as err:  # constriction's word for data it cannot read
        raise CodecError(f"stream: payload {index} cannot be decoded ({err}): truncated or corrupt") from None
    conditions = _no_labels(prior, batch) if mode is Mode.NO_LABEL else None
    if weights is not None:
        conditions = coder.decode(model.Categorical(weights, perfect=False), batch).astype(np.int32)
    cond = None if conditions is None else torch.from_numpy(conditions).long().to(device)
    family = model.Categorical(perfect=False)

    def decoded(position: int, probabilities: np.ndarray) -> Tensor:
        return torch.from_numpy(coder.decode(family, probabilities).astype(np.int64)).to(device)

    codes = _run_prior(prior, cond, batch, decoded)
    rest = coder.get_compressed()  # all that is left must be the checksum the encoder started from
    expected = chunk_checksum(header, index, conditions, codes.cpu().numpy())
    if rest.shape != (1,) or int(rest[0]) != expected:
        raise CodecError(f"stream: payload {index} fails its checksum: the stream is truncated or corrupt, or this"
                         " machine computes the prior's probabilities differently from the one that wrote it"
                         " (another torch version, CPU, device or dtype)")
    return rearrange(codes, "b (h w) -> b h w", h=prior.grid_size[0]), conditions


# public API ----------------------------------------------------------------------------------------
def compress_codes(prior: BasePrior, codes: Tensor, labels: Tensor | Sequence[int] | None = None, *,
                   choose_labels: bool = True, fingerprint: bytes | None = None,
                   progress: Callable[[int], object] | None = None) -> bytes:
    """Entropy-code code grids with the prior into one stream of bytes.

    Each grid takes about its negative log-likelihood under the prior, in bits, plus a
    few bytes per stream (header) and per chunk of 128 images (framing and checksum).

    Args:
        prior: a `CausalPrior` or `PixelCNNPrior`
            (other priors raise `CodecError`).
        codes: (N, h, w) int64 code ids in [0, K), N >= 1.
        labels: (N,) classes for a class-conditional prior, coded with its class frequencies and
            given back by `decompress_codes`. ``None``: see ``choose_labels``; an
            unconditional prior takes no labels.
        choose_labels: without labels, for a class-conditional prior: ``True`` (default) stores
            per grid whichever of "no label" and each class costs the fewest bits in all (the
            encoder tries them all: one teacher-forced pass of the prior per condition, several
            times the coding itself); ``False`` codes every grid in the "no label" mode and
            stores nothing per grid (fast; a few bits more per grid).
        fingerprint: the 4-byte pipeline fingerprint to record; default `fingerprint_of` of
            the prior alone.
        progress: called with the number of images after each chunk is coded (a progress bar).

    Returns:
        The stream: header, payloads, checksums.

    Raises:
        CodecError: a prior that cannot drive the coder.
        TypeError, ValueError: malformed codes or labels (the message names the argument).
        ImportError: ``constriction`` is not installed (``pip install "discrete_latents[codec]"``).

    Examples:
        >>> import torch
        >>> from discrete_latents import CausalPrior, CausalPriorConfig
        >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(3, 3), n_layer=1, n_head=2, n_embd=16))
        >>> codes = torch.randint(0, 16, (5, 3, 3))
        >>> data = compress_codes(prior, codes)
        >>> torch.equal(decompress_codes(prior, data).codes, codes)
        True
    """
    prior = _check_codable(prior)
    _constriction()
    codes = check_indices(codes, prior.codebook_size, prior.grid_size, name="codes")
    choose_labels = check_bool("choose_labels", choose_labels)
    count = codes.shape[0]
    if prior.num_classes == 0:
        if labels is not None:
            raise ValueError("labels: this prior is unconditional (num_classes=0); pass labels=None")
        mode, conditions = Mode.UNCONDITIONAL, None
    elif labels is None and choose_labels:
        mode, conditions = Mode.CHOSEN, None
    elif labels is None:
        mode, conditions = Mode.NO_LABEL, _no_labels(prior, count)
    else:
        mode = Mode.LABELS
        conditions = check_labels(labels, prior.num_classes, count).cpu().numpy().astype(np.int32)
    mark = _check_fingerprint(fingerprint if fingerprint is not None else fingerprint_of(prior))
    header = pack_header(mode, mark, count)
    weights = _condition_weights(prior, mode)
    codes = codes.to(next(prior.parameters()).device)
    starts = range(0, count, CHUNK_SIZE)
    jobs = [(index, start) for index, start in enumerate(starts)]

    def encode(job: tuple[int, int]) -> bytes:
        index, start = job
        chunk = None if conditions is None else conditions[start: start + CHUNK_SIZE]
        return _encode_chunk(prior, header, index, codes[start: start + CHUNK_SIZE], chunk, weights)

    with _eval(prior):
        payloads = _map_single_threaded(encode, jobs, [min(CHUNK_SIZE, count - s) for s in starts], progress)
    return header + join_payloads(payloads)


def decompress_codes(prior: BasePrior, data: bytes | bytearray | memoryview, *, fingerprint: bytes | None = None,
                     progress: Callable[[int], object] | None = None) -> DecodedCodes:
    """Decode a stream written by `compress_codes` with the same prior.

    Args:
        prior: the prior that wrote the stream (same weights and config).
        data: the stream.
        fingerprint: the fingerprint the stream must carry; default `fingerprint_of` of the
            prior alone (what `compress_codes` records by default).
        progress: called with the number of images after each chunk is decoded.

    Returns:
        `DecodedCodes`: ``codes`` (N, h, w) int64, exactly those compressed, and ``labels``
        (N,) when the stream stores the caller's labels, else ``None``.

    Raises:
        CodecError: an empty, foreign, truncated or corrupt stream, one written by another
            pipeline or a newer release, or one whose checksum fails (the message says which).
            Nothing is allocated in proportion to the image count a header claims.
        TypeError: ``data`` is not bytes-like.
        ImportError: ``constriction`` is not installed.
    """
    prior = _check_codable(prior)
    _constriction()
    data = _as_bytes(data)
    info = _read_header(data)
    expected = _check_fingerprint(fingerprint if fingerprint is not None else fingerprint_of(prior))
    if info.fingerprint != expected:
        raise CodecError(f"stream: written by another pipeline (fingerprint {info.fingerprint.hex()}, this one's is"
                         f" {expected.hex()}); decode it with the pipeline, weights and settings that wrote it")
    if (info.mode is Mode.UNCONDITIONAL) != (prior.num_classes == 0):
        raise CodecError(f"stream: corrupt header (coding mode {info.mode.name} does not fit a prior with"
                         f" {prior.num_classes} classes)")
    weights = _condition_weights(prior, info.mode)
    header = data[: info.header_size]
    payloads = split_payloads(data, info)
    sizes = [min(CHUNK_SIZE, info.num_images - start) for start in range(0, info.num_images, CHUNK_SIZE)]

    def decode(index: int) -> tuple[Tensor, np.ndarray | None]:
        return _decode_chunk(prior, header, index, sizes[index], payloads[index], info.mode, weights)

    with _eval(prior):
        chunks = _map_single_threaded(decode, range(len(payloads)), sizes, progress)
    codes = torch.cat([c for c, _ in chunks])
    labels = None
    if info.mode is Mode.LABELS:
        labels = torch.from_numpy(np.concatenate([c for _, c in chunks if c is not None])).long().to(codes.device)
    return DecodedCodes(codes, labels)


def _check_fingerprint(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != FINGERPRINT_SIZE:
        raise TypeError(f"fingerprint: expected {FINGERPRINT_SIZE} bytes (from codec.fingerprint_of), got {value!r}")
    return value

"""The exceptions discrete_latents raises.

Every error the library raises on purpose derives from `DiscreteLatentsError`, and also
from the built-in exception a caller would naturally catch (``ValueError`` for bad content,
``OSError`` for I/O, ``LookupError`` for unknown names), so existing ``except`` clauses keep
working.
"""

from __future__ import annotations


class DiscreteLatentsError(Exception):
    """Base class of every error raised on purpose by discrete_latents."""


class ConfigError(DiscreteLatentsError, ValueError):
    """A configuration (dict, JSON file, command-line flag) is malformed or out of range."""


class CheckpointFormatError(DiscreteLatentsError, ValueError):
    """A weights or checkpoint file is malformed, truncated or does not match its config."""


class DatasetFormatError(DiscreteLatentsError, ValueError):
    """A dataset file does not have the expected format."""


class DatasetNotFoundError(DiscreteLatentsError, FileNotFoundError):
    """Dataset files are missing and downloading was not requested; the message says where to put which files."""


class ChecksumMismatchError(DiscreteLatentsError, OSError):
    """A downloaded or cached file does not have the expected size or SHA-256."""


class DownloadError(DiscreteLatentsError, OSError):
    """A file could not be downloaded from any of its mirrors."""


class CheckpointSaveError(DiscreteLatentsError, OSError):
    """A checkpoint could not be written; the previous one is left intact."""


class UnknownComponentError(DiscreteLatentsError, LookupError):
    """A registry has no component of the requested name."""


class PluginConflictError(DiscreteLatentsError, LookupError):
    """Two plugins register the same name in one registry."""


class PluginLoadError(DiscreteLatentsError, ImportError):
    """A plugin could not be imported or does not honour its contract."""


class NonFiniteError(DiscreteLatentsError, FloatingPointError):
    """A tensor (input, loss or weight) holds NaN or infinity where finite values are required."""


class CodecError(DiscreteLatentsError, ValueError):
    """A compressed stream is empty, truncated, corrupt, foreign or from another pipeline, or cannot be coded."""

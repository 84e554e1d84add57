"""How the command line reports a failure: one line, an exit status, a traceback only with ``--debug``.

Exit statuses: 0 done; 1 it could not be done (disk, network, memory, a device, a fault); 2 the
command needs fixing (a bad argument, setting or input file, as argparse also reports); 130
interrupted (Ctrl-C: 128 + SIGINT, as shells report it).
"""

from __future__ import annotations

import os

from ..errors import DiscreteLatentsError

FAILURE = 1
USAGE = 2
INTERRUPTED = 130


class CommandError(Exception):
    """A failure a command has already put into words; shown as it is, with its own exit status."""

    def __init__(self, message: str, status: int = FAILURE) -> None:
        super().__init__(message)
        self.status = status


def exit_status(err: BaseException) -> int:
    """2 when the command itself needs fixing, 1 for any other failure."""
    if isinstance(err, CommandError):
        return err.status
    # FileNotFoundError and friends: a path given on the command line points at nothing, or at the wrong kind of thing.
    usage = (ValueError, TypeError, LookupError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
    return USAGE if isinstance(err, usage) else FAILURE


def reason(err: BaseException) -> str:
    """The cause alone: ``no space left on device`` for an ``OSError`` from the system, else the message."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        return err.strerror[:1].lower() + err.strerror[1:]
    return str(err).strip()


def describe(err: BaseException) -> str:
    """One message for any exception: the file and cause of an OS error, the library's own words,
    or the type and message of anything unexpected (``KeyError: 'codes'``)."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        where = os.fsdecode(err.filename) if err.filename is not None else ""
        if err.filename2 is not None:
            where += f" -> {os.fsdecode(err.filename2)}"
        return f"{where}: {reason(err)}" if where else reason(err)
    text = str(err).strip()
    if text and isinstance(err, (CommandError, DiscreteLatentsError, ValueError, TypeError, OSError)):
        return text  # written to be read: the library's errors start with what is wrong
    return f"{type(err).__name__}: {text}" if text else type(err).__name__

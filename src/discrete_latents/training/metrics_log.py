"""The run's metrics log, ``metrics.jsonl``: one JSON object per line, appended as training goes.

An append is not atomic: a crash or a full disk can leave the last line half-written. Such a
torn line is dropped (with a note) the next time the log is opened, so it never blocks a resume
and never merges with the next record. Lines are never rewritten except on resume, when the
records logged after the checkpoint being resumed are removed, through an atomic replace.
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._files import atomic_write_bytes
from ..errors import CheckpointSaveError


class MetricsLog:
    """Appends records to ``path``; repairs a torn last line; trims records past a resume point.

    Args:
        path: the JSON-lines file (created on the first record).
        note: receives one line of text for every repair (the trainer's log).
    """

    def __init__(self, path: Path, note: Callable[[str], None]) -> None:
        self.path = path
        self.note = note
        self._checked = False  # the tail is looked at once per run, before the first append

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` and the wall-clock ``time`` as one line.

        Raises:
            CheckpointSaveError: the disk is full or failed; the checkpoints are untouched.
        """
        if not self._checked:
            self._repair_tail()
        line = json.dumps({**record, "time": round(time.time(), 3)}, allow_nan=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as err:
            raise _write_error(self.path, err) from err

    def truncate_after(self, stage: str, step: int) -> None:
        """Drop ``stage``'s records after ``step``, so a resumed run logs each step once."""
        self._rewrite(lambda record: not (record.get("stage") == stage and _step(record) > step))

    def _repair_tail(self) -> None:
        self._checked = True
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                handle.seek(max(0, size - 1))
                last = handle.read(1)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _write_error(self.path, err) from err
        if last not in (b"", b"\n"):
            self._rewrite(lambda record: True)

    def _rewrite(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep the records ``keep`` accepts; drop unreadable lines (noted); replace the file atomically."""
        self._checked = True
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as err:
            raise _write_error(self.path, err) from err
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline, else an unfinished line
        kept, unreadable = [], []
        for number, line in enumerate(lines, start=1):
            record = _parse(line)
            if record is None:
                if line.strip():
                    unreadable.append(number)
            elif keep(record):
                kept.append(line)
        if tail:
            record = _parse(tail)
            if record is None:
                self.note(f"{self.path}: dropped a torn last line ({len(tail)} bytes) left by an interrupted write")
            elif keep(record):
                kept.append(tail)  # complete but for its newline
        if unreadable:
            self.note(f"{self.path}: dropped {len(unreadable)} unreadable line(s): {unreadable[:10]}")
        new = b"".join(line + b"\n" for line in kept)
        if new != data:
            try:
                atomic_write_bytes(self.path, new)
            except OSError as err:
                raise _write_error(self.path, err) from err


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return record if isinstance(record, dict) else None


def _step(record: dict[str, Any]) -> float:
    step = record.get("step")
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else float("-inf")  # kept


def _write_error(path: Path, err: OSError) -> CheckpointSaveError:
    """Worded as a failed checkpoint save is: the reason first, then what is still safe."""
    reason = "no space left on device" if err.errno == errno.ENOSPC else str(err)
    return CheckpointSaveError(f"could not write the metrics log {path}: {reason}; the checkpoints are intact,"
                               " resume once there is room")

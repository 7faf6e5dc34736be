"""Media files (voicemail messages, greetings, recordings) under the data directory, written atomically.

A row that names a file must never exist without the file, even after a power cut: the file is written to a
temporary name in its final directory, flushed to disk (fsync), renamed over the final name (atomic on POSIX),
and the directory is fsynced so the rename itself is durable. Only then may the caller commit the row. A crash
in between leaves at worst an orphan file without a row, never a row without a file. Deleting goes the other
way round: commit the row's removal first, then unlink.

File work blocks, so the async functions here run it through `hipper.offload.run_cpu`, the one adapter that
takes blocking work off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from hipper.offload import run_cpu

log = logging.getLogger(__name__)

MEDIA_DIR = "media"
TEMP_PREFIX = ".tmp-"


class MediaPathError(ValueError):
    pass


def new_relative_path(kind: str, user_id: int, suffix: str = ".wav") -> str:
    """A fresh path relative to the data directory, e.g. media/voicemail/12/<uuid>.wav."""
    return f"{MEDIA_DIR}/{kind}/{user_id}/{uuid.uuid4().hex}{suffix}"


def resolve(data_dir: Path, relative: str) -> Path:
    """The absolute path of a stored file; refuses anything that would leave the media directory."""
    root = (data_dir / MEDIA_DIR).resolve()
    path = (data_dir / relative).resolve()
    if not path.is_relative_to(root):
        raise MediaPathError(f"{relative!r} is outside the media directory")
    return path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically_sync(data_dir: Path, relative: str, data: bytes) -> Path:
    final = resolve(data_dir, relative)
    missing: list[Path] = []
    directory = final.parent
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    # A new directory's entry is itself only durable once its parent is synced: every directory made here
    # (media/, media/<kind>/ on the first file of a fresh data directory, not only the user's), top down.
    for created in reversed(missing):
        _fsync_directory(created.parent)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, final)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(final.parent)
    return final


async def write_atomically(data_dir: Path, relative: str, data: bytes) -> Path:
    """Write `data` durably at `relative` (see the module docstring); commit the row only after this returns."""
    return await run_cpu(write_atomically_sync, data_dir, relative, data)


def _remove_sync(data_dir: Path, relatives: list[str]) -> None:
    directories: set[Path] = set()
    for relative in relatives:
        try:
            path = resolve(data_dir, relative)
            path.unlink(missing_ok=True)
        except MediaPathError:
            continue
        except OSError:
            # The row is gone already (committed): failing the request or the call now would report a delete
            # that happened as failed. The file is an orphan; the housekeeping's sweep tries again.
            log.warning("media.remove_failed", extra={"path": relative}, exc_info=True)
            continue
        directories.add(path.parent)
    for directory in directories:
        with contextlib.suppress(OSError):  # durability of the unlink only: the file is gone for every reader
            if directory.exists():
                _fsync_directory(directory)


async def remove(data_dir: Path, relatives: Iterable[str]) -> None:
    """Unlink files whose rows are already gone (committed); a missing file is fine, and one that cannot be
    removed is logged and left for the orphan sweep (store/media_sweep.py)."""
    paths = list(relatives)
    if paths:
        await run_cpu(_remove_sync, data_dir, paths)


def _read_sync(path: Path) -> bytes:
    return path.read_bytes()


async def read(data_dir: Path, relative: str) -> bytes:
    return await run_cpu(_read_sync, resolve(data_dir, relative))

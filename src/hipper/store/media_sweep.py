"""Media files that no row names, removed once they are old enough that no store is still about to commit one.

Rows and files are kept in step by their order (store/media_files.py): the file durably first, then the row;
the row's removal first, then the file. What that can leave behind is a file without a row, never a row
without its file:

- a process killed between writing a file and committing its row, or in the middle of writing (a `.tmp-` file);
- a COMMIT that failed: the file is kept, since the row may have been committed all the same;
- a process killed between a delete's commit and the unlink;
- the files of a deleted user (their rows go with the user, by foreign key) when the unlink after that commit
  did not happen.

`sweep_orphans` removes those once older than `older_than` (an hour: a store commits a row right after its
file is written, so an hour-old file without a row will never get one). Only the kinds of file the stores
write are looked at; anything else under media/ is left alone.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.offload import run_cpu
from hipper.store import greetings, media_files, recordings, voicemails
from hipper.store.models import Greeting, Recording, Voicemail

KINDS: dict[str, type[Voicemail] | type[Greeting] | type[Recording]] = {
    voicemails.MEDIA_KIND: Voicemail,
    greetings.MEDIA_KIND: Greeting,
    recordings.MEDIA_KIND: Recording,
}
GRACE = timedelta(hours=1)


def _old_files(data_dir: Path, cutoff: float) -> dict[str, list[str]]:
    """Per kind, the relative paths of files last changed before `cutoff` (media/<kind>/<user>/<file>)."""
    found: dict[str, list[str]] = {}
    root = data_dir / media_files.MEDIA_DIR
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for directory, _subdirectories, names in os.walk(base):
            for name in names:
                path = Path(directory) / name
                try:
                    if path.is_symlink() or not path.is_file() or path.stat().st_mtime >= cutoff:
                        continue
                except OSError:  # removed meanwhile
                    continue
                found.setdefault(kind, []).append(path.relative_to(data_dir).as_posix())
    return found


def _spelled(data_dir: Path, path: str) -> str:
    """One spelling per file, without touching the disk: rows store paths relative to the data directory."""
    return os.path.normpath(os.path.join(data_dir, path))


async def sweep_orphans(
    session: AsyncSession, data_dir: Path, older_than: timedelta = GRACE, *, now: float | None = None
) -> list[str]:
    """Remove the media files older than `older_than` that no row names; returns their relative paths.

    Per kind of file, one read of every row's path (one scan, rather than a lookup per file: nearly every file
    is older than the grace period, so each would be asked about), compared by their normalised spelling.
    """
    cutoff = (now if now is not None else time.time()) - older_than.total_seconds()
    removed: list[str] = []
    for kind, paths in (await run_cpu(_old_files, data_dir, cutoff)).items():
        model = KINDS[kind]
        named = {_spelled(data_dir, path) for path in (await session.execute(select(model.media_path))).scalars()}
        orphans = [path for path in paths if _spelled(data_dir, path) not in named]
        await media_files.remove(data_dir, orphans)
        removed.extend(orphans)
    return removed

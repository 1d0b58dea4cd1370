"""Watching the stack file for `sparkstack up --watch`: a cheap poll of its
stat (mtime, size, inode; an editor that saves by rename gives a new inode),
once a second, off the request path. A change is reported once the file has
been quiet for a moment, so a save in several writes reloads once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Changed = Callable[[], None]


@dataclass(frozen=True)
class FileStamp:
    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        """The file's stamp, or None while it does not exist (mid-save)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


async def watch_file(
    path: Path, changed: Changed, period: float = 1.0, settle: float = 0.2
) -> None:
    """Call ``changed`` after each change of ``path`` (forever; cancel to stop). The
    stat is one syscall on a local file: cheap enough for the event loop."""
    seen = FileStamp.of(path)
    while True:
        await asyncio.sleep(period)
        now = FileStamp.of(path)
        if now == seen or now is None:
            continue
        await asyncio.sleep(settle)
        settled = FileStamp.of(path)
        if settled != now:
            continue  # still being written: look again next period
        seen = now
        changed()

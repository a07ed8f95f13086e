"""Files put in place whole or not at all: written beside their destination, synced, renamed
over it (`os.replace` is atomic), and the directory synced so the rename survives a crash.
Used by the archive's local directory and the compaction swap; it knows nothing of trails."""

from __future__ import annotations

import os
from pathlib import Path


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(src: Path, dest: Path) -> None:
    """Put `src` in `dest`'s place, atomically and durably."""
    _fsync(src)
    os.replace(src, dest)
    _fsync(dest.parent)


def write_durably(dest: Path, data: bytes) -> None:
    """Write `data` to `dest` through a temporary file beside it (`replace_durably`)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    replace_durably(tmp, dest)

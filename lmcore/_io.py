"""Atomic file writes and integrity checks shared by checkpoints, caches and tokenizers.

A file is first written to a temporary name in the same directory, flushed to disk and then
renamed over the target.  ``os.replace`` is atomic on POSIX and Windows, so a reader sees either
the old file or the complete new one, never a half-written file.  The temporary names match
``temp_pattern(target)``, so the leftovers of a killed writer can be found and removed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "sha256_file", "temp_pattern", "remove_stale_temps"]


def temp_pattern(path: str | os.PathLike) -> str:
    """The glob (relative to ``path``'s folder) matching :func:`atomic_write`'s temporary files for ``path``."""
    return f".{Path(path).name}.*.tmp"


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files that killed :func:`atomic_write` calls for ``path`` left behind; returns them.

    Only files matching :func:`temp_pattern` next to ``path`` are touched.  Call it only where no
    other process is writing ``path`` at the same time (it would delete that writer's file).
    """
    path = Path(path)
    stale = sorted(path.parent.glob(temp_pattern(path))) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    # The umask can only be read by setting it; it is set straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched.  The file
    gets the mode a plain ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s
    private ``0o600``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

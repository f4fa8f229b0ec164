"""Small files replaced whole, durably: the store's metadata, checkpoints,
its begin address and the PSF registry.

What must stay true: a reader, or recovery after a crash or a power cut,
finds the old file or the new one, never a mix of the two or neither; and
once `write_atomic` returns, the new one survives a power cut. Hence the
order: write a temp file beside it, fsync it, rename it over the old one,
then fsync the directory (the rename is durable only once the directory is).

A crash can leave a temp file (`<name>.tmp`): nothing reads one, and the
owner of the directory removes them when it opens (`TEMP_SUFFIX`).
Failures raise the library's NativeIOError or DiskFull naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import io_error

TEMP_SUFFIX = ".tmp"


def replace_file(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, durably: on return its bytes are on disk and
    the rename is done, but the directory is not yet fsynced (fsync_dir).
    On failure `path` is untouched and the temp file is gone."""
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise io_error("write of", path, exc) from exc


def fsync_dir(path: Path) -> None:
    """Make the names in directory `path` durable (created, renamed, removed)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise io_error("fsync of", path, exc) from exc


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (replace_file, then
    fsync_dir of its directory)."""
    replace_file(path, data)
    fsync_dir(path.parent)


def tree_bytes(directory: Path) -> int:
    """Bytes of the files under `directory` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed by hand meanwhile
                pass
    return total

"""A fault-injecting, power-cut-simulating layer over the os calls shoal's
store writes files with (tests only).

`FaultyDisk(root)` wraps os.pwrite, os.write, os.fsync and os.ftruncate for
files under `root` (other files pass straight through; os.replace and
os.unlink only to forget the files they remove) and, per file:

  * counts calls (`calls["fsync"]`, ...);
  * injects faults: `fail("pwrite", after_bytes=N)` lets N more bytes be
    written (a write crossing the limit is cut short at a 4 KiB boundary,
    as O_DIRECT needs) and then raises OSError(ENOSPC) on every write;
    `fail("fsync", nth=k)` raises on the k-th fsync from now (nth=None: on
    every one); `errno=` picks the error; `where=` limits a fault to files
    whose path contains that text; `heal()` clears them all;
    `fsync_delay_s` makes every fsync take that long (as a slow disk would),
    `write_delay_s` every pwrite (before it writes, so whatever else runs
    meanwhile lands first);
  * simulates a power cut: it keeps a shadow of each file's bytes as the
    completed writes left them, copies the shadow on each fsync, and
    `power_cut_copy(dest)` writes the tree as a power cut now would leave it:
    only names present at their directory's last fsync, each with the bytes
    of its last fsync (empty if never fsynced).

Files are identified by inode, so a rename keeps its content (and a file
removed is forgotten, since its inode may be reused). The `faulty_disk`
fixture (tests/conftest.py) installs it over a test's tmp dir.
"""
from __future__ import annotations

import errno as errno_mod
import os
import shutil
import stat
import threading
import time
from pathlib import Path

BLOCK = 4096


class FaultyDisk:
    def __init__(self, root: Path, monkeypatch) -> None:
        self.root = str(Path(root).resolve())
        self.calls = {"pwrite": 0, "write": 0, "fsync": 0, "ftruncate": 0}
        self._lock = threading.Lock()
        self._real = {n: getattr(os, n) for n in ("pwrite", "write", "fsync", "ftruncate", "replace", "unlink")}
        # call -> [where, bytes left (writes) or countdown (fsync; None: always), errno]
        self._faults: dict[str, list] = {}
        self._shadow: dict[int, bytearray] = {}   # inode -> bytes as completed writes left them
        self._durable: dict[int, bytes] = {}      # inode -> bytes at its last fsync
        self._names: dict[str, set[str]] = {}     # directory -> names at its last fsync
        self.fsync_delay_s = 0.0
        self.write_delay_s = 0.0
        for name in self._real:
            monkeypatch.setattr(os, name, getattr(self, "_" + name))

    # ---- configuration ----
    def fail(self, call: str, *, after_bytes: int = 0, nth: int | None = 1,
             errno: int = errno_mod.ENOSPC, where: str = "") -> None:
        assert call in ("pwrite", "write", "fsync")
        with self._lock:
            self._faults[call] = [where, nth if call == "fsync" else after_bytes, errno]

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    # ---- helpers ----
    def _path(self, fd: int) -> str | None:
        try:
            p = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return p if p.startswith(self.root) else None

    def _shadow_of(self, path: str, ino: int) -> bytearray:
        sh = self._shadow.get(ino)
        if sh is None:  # first sight: what the file holds now
            with open(path, "rb") as f:
                sh = self._shadow[ino] = bytearray(f.read())
        return sh

    def _allow(self, call: str, path: str, n: int) -> int:
        """Bytes of an n-byte write to let through; raises when none may be."""
        fault = self._faults.get(call)
        if fault is None or fault[0] not in path:
            return n
        _, budget, err = fault
        if n <= budget:
            fault[1] = budget - n
            return n
        allowed = budget - budget % BLOCK if call == "pwrite" else budget
        if allowed <= 0:
            raise OSError(err, os.strerror(err))
        fault[1] = budget - allowed
        return allowed

    def _note_write(self, path: str, fd: int, data, offset: int) -> None:
        ino = os.fstat(fd).st_ino
        sh = self._shadow_of(path, ino)
        end = offset + len(data)
        if len(sh) < end:
            sh.extend(bytes(end - len(sh)))
        sh[offset:end] = data

    # ---- wrapped calls ----
    def _pwrite(self, fd, data, offset):
        path = self._path(fd)
        if path is None:
            return self._real["pwrite"](fd, data, offset)
        view = memoryview(data)
        with self._lock:
            self.calls["pwrite"] += 1
            n = self._allow("pwrite", path, len(view))
        if self.write_delay_s:
            time.sleep(self.write_delay_s)
        written = self._real["pwrite"](fd, view[:n], offset)
        with self._lock:
            self._note_write(path, fd, view[:written], offset)
        return written

    def _write(self, fd, data):
        path = self._path(fd)
        if path is None:
            return self._real["write"](fd, data)
        view = memoryview(data)
        with self._lock:
            self.calls["write"] += 1
            n = self._allow("write", path, len(view))
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        written = self._real["write"](fd, view[:n])
        with self._lock:
            self._note_write(path, fd, view[:written], offset)
        return written

    def _ftruncate(self, fd, length):
        path = self._path(fd)
        self._real["ftruncate"](fd, length)
        if path is not None:
            with self._lock:
                self.calls["ftruncate"] += 1
                sh = self._shadow_of(path, os.fstat(fd).st_ino)
                del sh[length:]
                sh.extend(bytes(length - len(sh)))

    def _forget(self, path) -> None:
        """Before `path` is removed or replaced: its inode may be reused."""
        p = os.path.abspath(path)
        if not p.startswith(self.root):
            return
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return
        if st.st_nlink <= 1:
            with self._lock:
                self._shadow.pop(st.st_ino, None)
                self._durable.pop(st.st_ino, None)

    def _replace(self, src, dst, **kw):
        self._forget(dst)
        return self._real["replace"](src, dst, **kw)

    def _unlink(self, path, **kw):
        self._forget(path)
        return self._real["unlink"](path, **kw)

    def _fsync(self, fd):
        path = self._path(fd)
        if path is None:
            return self._real["fsync"](fd)
        with self._lock:
            self.calls["fsync"] += 1
            fault = self._faults.get("fsync")
            if fault is not None and fault[0] in path:
                _, nth, err = fault
                if nth is None or nth <= 1:
                    if nth is not None:
                        del self._faults["fsync"]
                    raise OSError(err, os.strerror(err))
                fault[1] = nth - 1
            # What is durable once this fsync returns: what completed before it.
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                self._names[path] = set(os.listdir(path))
            else:
                self._durable[st.st_ino] = bytes(self._shadow_of(path, st.st_ino))
        if self.fsync_delay_s:
            time.sleep(self.fsync_delay_s)
        return self._real["fsync"](fd)

    # ---- power cut ----
    def power_cut_copy(self, source: Path, dest: Path) -> None:
        """Copy `source` (under root) to `dest` as a power cut now would leave
        it. Directories are assumed durable; files need their names fsynced
        in their directory and their bytes fsynced."""
        source = Path(source).resolve()
        with self._lock:
            for dirpath, _dirs, files in os.walk(source):
                rel = Path(dirpath).relative_to(source)
                (dest / rel).mkdir(parents=True, exist_ok=True)
                durable_names = self._names.get(dirpath, set())
                for name in files:
                    if name not in durable_names:
                        continue
                    try:
                        ino = os.stat(Path(dirpath) / name).st_ino
                    except FileNotFoundError:
                        continue
                    (dest / rel / name).write_bytes(self._durable.get(ino, b""))


def copy_tree(source: Path, dest: Path) -> None:
    """A plain copy (what a SIGKILL leaves: everything written)."""
    shutil.copytree(source, dest)

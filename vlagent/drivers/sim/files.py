"""The simulated phone's files: what ``adb push``/``pull``, the sync service and shell redirections see.

A small in-memory tree of directories and files (bytes, mode, mtime) shaped like an Android
phone as the ``shell`` user sees it: ``/sdcard`` (also ``/storage/emulated/0``) and
``/data/local/tmp`` are writable, the rest of the tree is read-only. Errors carry the text
toybox prints (``No such file or directory``, ``Is a directory``, ``Read-only file system``)
and the errno the sync protocol reports. Storage is finite, as on a phone: past
``capacity`` bytes or ``max_entries`` files and directories a write fails with ``No space
left on device`` (ENOSPC), so a client that fills the phone meets the phone's error and the
simulator's memory stays bounded. This module must not touch the host's files.
"""

from __future__ import annotations

import errno
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_MAX_ENTRIES", "PATH_MAX", "FileEntry", "FsError", "SimFiles"]

_DIRS = (
    "/",
    "/data",
    "/data/local",
    "/data/local/tmp",
    "/sdcard",
    "/sdcard/Download",
    "/sdcard/DCIM",
    "/sdcard/Pictures",
    "/storage",
    "/storage/emulated",
    "/system",
    "/system/bin",
    "/dev",
)
_WRITABLE = ("/sdcard", "/data/local/tmp")
#: Paths that name the same directory on a phone.
_ALIASES = {"/storage/emulated/0": "/sdcard", "/storage/self/primary": "/sdcard", "/mnt/sdcard": "/sdcard"}
#: Where the shell user may not even look (``/data`` itself is not listable on a phone).
_PRIVATE = ("/data/data", "/data/app", "/data/system")


class FsError(Exception):
    """A file operation failed: ``message`` is what toybox prints, ``errno`` what the sync service sends."""

    def __init__(self, path: str, code: int) -> None:
        super().__init__(f"{path}: {_MESSAGES.get(code, 'I/O error')}")
        self.path = path
        self.errno = code


_MESSAGES = {
    errno.ENOENT: "No such file or directory",
    errno.EISDIR: "Is a directory",
    errno.ENOTDIR: "Not a directory",
    errno.EEXIST: "File exists",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.ENOTEMPTY: "Directory not empty",
    errno.ENAMETOOLONG: "File name too long",
    errno.ENOSPC: "No space left on device",
}
#: The longest path a file or directory may be created at (Linux's PATH_MAX).
PATH_MAX = 4096
#: Bytes of file data the simulated phone holds before writes fail with ENOSPC.
DEFAULT_CAPACITY = 256 * 1024 * 1024
#: Files and directories it holds (an inode limit: many empty files cost memory too).
DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class FileEntry:
    """One directory entry as ``stat`` reports it."""

    name: str
    mode: int
    size: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class SimFiles:
    """The phone's file tree. Thread-safe; paths are absolute or relative to ``/``."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        now = int(clock())
        self._dirs: dict[str, int] = dict.fromkeys(_DIRS, now)
        self._files: dict[str, tuple[bytes, int, int]] = {}  # path -> (data, permission bits, mtime)
        self.capacity = capacity
        self.max_entries = max_entries
        self._used = 0  # bytes of file data held

    @property
    def used(self) -> int:
        """Bytes of file data the phone holds now."""
        return self._used

    def _check_room(self, path: str, added_bytes: int, added_entries: int) -> None:
        if self._used + added_bytes > self.capacity or (
            added_entries and len(self._dirs) + len(self._files) + added_entries > self.max_entries
        ):
            raise FsError(path, errno.ENOSPC)

    @staticmethod
    def normalize(path: str) -> str:
        full = posixpath.normpath(posixpath.join("/", path))
        full = "/" + full.lstrip("/")
        for alias, target in _ALIASES.items():
            if full == alias or full.startswith(alias + "/"):
                return target + full[len(alias) :]
        return full

    # --- queries ----------------------------------------------------------------------------

    def stat(self, path: str) -> FileEntry:
        full = self.normalize(path)
        with self._lock:
            name = posixpath.basename(full) or "/"
            if full in self._dirs:
                return FileEntry(name, stat.S_IFDIR | 0o771, 4096, self._dirs[full])
            if full in self._files:
                data, perms, mtime = self._files[full]
                return FileEntry(name, stat.S_IFREG | perms, len(data), mtime)
            if posixpath.dirname(full) in self._files:
                raise FsError(path, errno.ENOTDIR)
            raise FsError(path, errno.EACCES if full.startswith(_PRIVATE) else errno.ENOENT)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FsError:
            return False
        return True

    def is_dir(self, path: str) -> bool:
        return self.normalize(path) in self._dirs

    def read(self, path: str) -> bytes:
        full = self.normalize(path)
        with self._lock:
            if full in self._files:
                return self._files[full][0]
            if full in self._dirs:
                raise FsError(path, errno.EISDIR)
            self.stat(path)  # raises the right error
            raise FsError(path, errno.ENOENT)

    def list(self, path: str) -> list[FileEntry]:
        """Entries of a directory, sorted by name (``.`` and ``..`` left out)."""
        full = self.normalize(path)
        with self._lock:
            if full not in self._dirs:
                self.stat(path)
                raise FsError(path, errno.ENOTDIR)
            if full == "/data":
                raise FsError(path, errno.EACCES)
            prefix = full.rstrip("/") + "/"
            names = {
                p[len(prefix) :]
                for p in (*self._dirs, *self._files)
                if p.startswith(prefix) and p != full and "/" not in p[len(prefix) :]
            }
            return [self.stat(prefix + name) for name in sorted(names)]

    # --- changes ----------------------------------------------------------------------------

    def _check_writable(self, full: str, path: str) -> None:
        if len(full.encode("utf-8", "surrogateescape")) >= PATH_MAX:
            raise FsError(path[:200] + "..." if len(path) > 200 else path, errno.ENAMETOOLONG)
        if not any(full == root or full.startswith(root + "/") for root in _WRITABLE):
            readonly = full == "/" or full.startswith(("/system", "/storage", "/dev"))
            raise FsError(path, errno.EROFS if readonly else errno.EACCES)

    def write(self, path: str, data: bytes, *, append: bool = False, mode: int = 0o644, mkdirs: bool = False) -> None:
        """Create or replace a file (``mkdirs``: create missing parents, as ``adb push`` does)."""
        full = self.normalize(path)
        with self._lock:
            self._check_writable(full, path)
            if full in self._dirs:
                raise FsError(path, errno.EISDIR)
            parent = posixpath.dirname(full)
            if parent not in self._dirs:
                if not mkdirs:
                    raise FsError(path, errno.ENOTDIR if parent in self._files else errno.ENOENT)
                self.mkdir(parent, parents=True)
            old = self._files.get(full)
            before = len(old[0]) if old else 0
            after = before + len(data) if old and append else len(data)
            self._check_room(path, after - before, 0 if old else 1)
            body = (old[0] if old and append else b"") + data
            perms = old[1] if old else mode & 0o7777
            self._files[full] = (body, perms, int(self._clock()))
            self._used += after - before

    def touch(self, path: str) -> None:
        full = self.normalize(path)
        with self._lock:
            if full in self._dirs:
                self._dirs[full] = int(self._clock())
            elif full in self._files:
                data, perms, _ = self._files[full]
                self._files[full] = (data, perms, int(self._clock()))
            else:
                self.write(path, b"")

    def mkdir(self, path: str, *, parents: bool = False) -> None:
        full = self.normalize(path)
        with self._lock:
            if full in self._dirs:
                if parents:
                    return
                raise FsError(path, errno.EEXIST)
            if full in self._files:
                raise FsError(path, errno.EEXIST)
            self._check_writable(full, path)
            missing = [full]  # the directory, then each missing parent up to one that exists
            while (parent := posixpath.dirname(missing[-1])) not in self._dirs:
                if not parents:
                    raise FsError(path, errno.ENOENT)
                if parent in self._files:
                    raise FsError(parent, errno.EEXIST)
                self._check_writable(parent, parent)
                missing.append(parent)
            self._check_room(path, 0, len(missing))
            now = int(self._clock())
            for directory in missing:
                self._dirs[directory] = now

    def remove(self, path: str, *, recursive: bool = False) -> None:
        full = self.normalize(path)
        with self._lock:
            if full in self._files:
                self._check_writable(full, path)
                self._used -= len(self._files.pop(full)[0])
                return
            if full not in self._dirs:
                raise FsError(path, errno.ENOENT)
            if not recursive:
                raise FsError(path, errno.EISDIR)
            self._check_writable(full, path)
            if full in _WRITABLE:
                raise FsError(path, errno.EACCES)
            prefix = full + "/"
            for p in [p for p in self._files if p.startswith(prefix)]:
                self._used -= len(self._files.pop(p)[0])
            for p in [p for p in self._dirs if p.startswith(prefix) or p == full]:
                del self._dirs[p]

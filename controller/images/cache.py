"""The image cache: where an image's files are, their stamps, the download lock, the partial file.

Called by `fetch_image` (a cache hit, a re-verification, the lock) and by the download code
(`Partial`, the file a download writes and renames into place). Local files only.

The cache keeps one set of files per sha256 (`cache_paths`):

    <sha256>            the verified image, read-only; only ever made by a rename of the partial
    <sha256>.ok         its stamp: size, device, inode, mtime and ctime when it was verified
    <sha256>.part       a download in progress or interrupted; never returned
    <sha256>.part.json  the ETag / Last-Modified of the response the partial came from
    <sha256>.lock       flock(2)ed by the one process that downloads this image (kept)

A cache hit is trusted on its stamp, not re-hashed: re-hashing costs a read of the whole
image (about 1 s per GiB here) on every call, while any write to the file, a truncation,
a chmod or a replacement changes its ctime, which no program can set back. What the stamp
cannot see is the disk itself going bad underneath, and the import step catches that for
free: it reads every byte anyway to upload it, so it hashes what it sends. `rehash=True`
forces a full re-hash. A file whose stamp is missing or stale is re-hashed once and then
either stamped again or deleted and downloaded anew.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .errors import CacheError, ChecksumMismatch, Stalled
from .progress import ProgressCallback, human_size, report

__all__ = [
    "CHUNK", "CachePaths", "Fetched", "Partial", "cache_paths", "check_space", "download_lock",
    "hash_file", "remove", "reverify", "stamped",
]

CHUNK = 1 << 20
"""Bytes read or written at a time."""

_LOCK_POLL = 0.1


@dataclass(frozen=True)
class Fetched:
    """A verified image in the cache.

    `transferred` is how many bytes this call read from the source (0 for a cache hit);
    `resumed_from` the offset an interrupted download was resumed at (0 if it was not).
    """

    path: Path
    size: int
    sha256: str
    transferred: int = 0
    resumed_from: int = 0


class CachePaths(NamedTuple):
    """The files of one sha256 in the cache (see the module docstring)."""

    image: Path
    stamp: Path
    partial: Path
    meta: Path
    lock: Path


def cache_paths(cache_dir: Path, sha256: str) -> CachePaths:
    """The cache files of one image; `sha256` must already be 64 lowercase hex digits."""
    base = Path(cache_dir) / sha256
    return CachePaths(image=base, stamp=base.with_name(f"{sha256}.ok"),
                      partial=base.with_name(f"{sha256}.part"),
                      meta=base.with_name(f"{sha256}.part.json"),
                      lock=base.with_name(f"{sha256}.lock"))


def stamped(paths: CachePaths, expected: str) -> Fetched | None:
    """The cached image if its stamp still describes the file exactly; else None."""
    try:
        st = paths.image.stat()
        stamp = json.loads(paths.stamp.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp != _stamp_of(st, expected):
        return None
    return Fetched(path=paths.image, size=st.st_size, sha256=expected)


def _stamp_of(st: os.stat_result, sha256: str) -> dict[str, int | str]:
    return {"sha256": sha256, "size": st.st_size, "dev": st.st_dev, "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _write_stamp(paths: CachePaths, sha256: str) -> None:
    """Stamp the image as verified. A stamp that cannot be written only costs a re-hash."""
    tmp = paths.stamp.with_name(paths.stamp.name + ".tmp")
    try:
        tmp.write_text(json.dumps(_stamp_of(paths.image.stat(), sha256)))
        os.replace(tmp, paths.stamp)
    except OSError:
        remove(tmp)


def reverify(paths: CachePaths, expected: str) -> Fetched | None:
    """Hash a cached image whose stamp is missing or stale: stamp it again, or delete it."""
    remove(paths.stamp)
    try:
        size, actual = hash_file(paths.image)
    except OSError:
        actual, size = "", 0
    if actual == expected:
        _write_stamp(paths, expected)
        return Fetched(path=paths.image, size=size, sha256=expected)
    remove(paths.image)
    return None


def hash_file(path: Path, *, hasher: hashlib._Hash | None = None) -> tuple[int, str]:
    """Feed the file to `hasher` (a new sha256 by default); return its size and hex digest."""
    hasher = hasher or hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
            size += n
    return size, hasher.hexdigest()


def remove(*files: Path) -> None:
    """Delete the files that exist."""
    for file in files:
        try:
            file.unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def download_lock(paths: CachePaths, *, patience: float, progress: ProgressCallback | None,
                  shown: str) -> Iterator[None]:
    """Hold the image's flock; wait while another holder's partial grows, up to `patience`."""
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CacheError(f"cannot create {paths.lock}: {exc.strerror}", url=shown) from exc
    try:
        _wait_for_lock(fd, paths, patience=patience, progress=progress, shown=shown)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for messages
        yield
    finally:
        os.close(fd)  # releases the flock


def _wait_for_lock(fd: int, paths: CachePaths, *, patience: float,
                   progress: ProgressCallback | None, shown: str) -> None:
    last_size, last_change = -1, time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return
        try:
            size = paths.partial.stat().st_size
        except OSError:
            size = -1
        now = time.monotonic()
        if size != last_size:
            last_size, last_change = size, now
            if size >= 0:
                report(progress, size, None)
        elif now - last_change >= patience:
            try:
                holder = f" (pid {int(paths.lock.read_text().strip())})"
            except (OSError, ValueError):
                holder = ""
            raise Stalled(f"another process{holder} is downloading {shown} and has written "
                          f"nothing for {patience:g} s", url=shown)
        time.sleep(_LOCK_POLL)


class Partial:
    """The partial file being written: writes that fail remove it and raise CacheError."""

    def __init__(self, paths: CachePaths, *, append: bool, shown: str, total: int | None):
        self.paths, self.shown, self.total = paths, shown, total
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self.fd = os.open(paths.partial, flags, 0o644)
            self.size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise self._failed(exc, opened=False) from exc

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise self._failed(exc) from exc

    def finish(self, *, digest: str, expected: str, transferred: int,
               resumed_from: int) -> Fetched:
        """Verify, then rename into place; a mismatch removes the partial and raises."""
        if digest != expected:
            self.close()
            remove(self.paths.partial, self.paths.meta)
            raise ChecksumMismatch(
                f"checksum mismatch for {self.shown}: expected sha256 {expected}, got {digest} "
                f"({self.size} bytes); nothing was kept", url=self.shown, expected=expected,
                actual=digest, size=self.size)
        try:
            os.fsync(self.fd)
            os.fchmod(self.fd, 0o444)
            self.close()
            os.replace(self.paths.partial, self.paths.image)
            _fsync_dir(self.paths.image.parent)
        except OSError as exc:
            raise self._failed(exc) from exc
        remove(self.paths.meta)
        _write_stamp(self.paths, expected)
        return Fetched(path=self.paths.image, size=self.size, sha256=expected,
                       transferred=transferred, resumed_from=resumed_from)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _failed(self, exc: OSError, *, opened: bool = True) -> CacheError:
        """Close and remove the partial (a half-written file on a full disk helps nobody)."""
        if opened:
            self.close()
        remove(self.paths.partial, self.paths.meta)
        where = self.paths.image.parent
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            of = f" of {human_size(self.total)}" if self.total is not None else ""
            return CacheError(f"no space left in {where} for {self.shown} (wrote "
                              f"{human_size(self.size)}{of}); the partial download was removed",
                              url=self.shown)
        return CacheError(f"cannot write {self.paths.partial} for {self.shown}: {exc.strerror}; "
                          "the partial download was removed", url=self.shown)


def check_space(directory: Path, need: int, *, shown: str) -> None:
    """Raise CacheError if `directory` has fewer than `need` bytes free (unknown: no check)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise CacheError(f"not enough space in {directory} for {shown}: it needs "
                         f"{human_size(need)} more, {human_size(free)} are free", url=shown)

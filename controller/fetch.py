"""Download an image by URL and sha256 into a local cache, verified: the download half of `Image`.

CONTRACT.md section 6: an `Image` is a `url` (http, https or file) and the `sha256` of its
bytes. `fetch_image()` turns the two into a verified file in a content-addressed cache
(`--state-dir`/images), which the import step then uploads into a libvirt pool with a
volume stream. Called by that step, and by the CLI with `ProgressLine` on a terminal. This
module does network and local files only; it never imports libvirt, and it imports its
HTTP client (urllib3) only when a download starts, so `reconcile` starts as fast without it.

    ReconcileError                      (controller.errors)
     └── FetchError         the image cannot be had now; `retryable`: may a later try work?
          ├── BadInput          not an http/https/file URL, or not a sha256       (permanent)
          ├── NotFound          HTTP 404 or 410; a file:// path that does not exist (permanent)
          ├── HTTPError         any other error status: 5xx, 408, 429 retryable; other 4xx not
          ├── Unreachable       refused, no such host, no connection within the connect timeout,
          │                     TLS failure                                       (retryable)
          ├── Stalled           no byte for `stall_timeout` s; the partial is kept (retryable)
          ├── Interrupted       the connection ended early; the partial is kept    (retryable)
          ├── ChecksumMismatch  the bytes are not the ones asked for; nothing kept (permanent)
          └── CacheError        the cache cannot hold the file: full, read-only   (permanent)

Every message is one line and names the URL without its user:password and with its query
hidden (`redact_url`): signed URLs carry their secret there.

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

A file:// URL is copied into the cache, not returned in place: the upload of a multi-GiB
image takes a while, and a user's file may change between verification and upload (or be on
a share that goes away); the cached copy belongs to reconcile, is read-only and stamped,
and the caller has one kind of path to upload. The copy costs one write of the image, in
the same pass that hashes it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, Self, TextIO
from urllib.parse import unquote, urlsplit

from .errors import ReconcileError

if TYPE_CHECKING:
    import urllib3

__all__ = [
    "BadInput", "CacheError", "CachePaths", "ChecksumMismatch", "FetchError", "Fetched",
    "HTTPError", "Interrupted", "NotFound", "ProgressCallback", "ProgressLine", "Stalled",
    "Unreachable", "cache_paths", "fetch_image", "redact_url",
]

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None when the server does not say)."""

_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_LOCK_POLL = 0.1
_USER_AGENT = "reconcile-libvirt"


# ---------------------------------------------------------------------------- errors

class FetchError(ReconcileError):
    """The image cannot be had now. `url` is the redacted URL."""

    retryable = False

    def __init__(self, message: str, *, url: str):
        super().__init__(message)
        self.url = url


class BadInput(FetchError):
    """The URL is not an absolute http, https or file URL, or the sha256 is not 64 hex digits."""


class NotFound(FetchError):
    """The server answered 404 or 410, or the file:// path does not exist."""


class HTTPError(FetchError):
    """The server answered with another error status, kept in `status`."""

    def __init__(self, message: str, *, url: str, status: int):
        super().__init__(message, url=url)
        self.status = status
        self.retryable = status >= 500 or status in (408, 425, 429)


class Unreachable(FetchError):
    """No connection: refused, no such host, not accepted in time, or TLS failed."""

    retryable = True


class Stalled(FetchError):
    """No byte arrived for `stall_timeout` seconds (or no answer at all). The partial is kept."""

    retryable = True


class Interrupted(FetchError):
    """The connection ended before the last byte. The partial is kept for a resume."""

    retryable = True


class ChecksumMismatch(FetchError):
    """The downloaded bytes do not have the expected sha256. Nothing of them is kept."""

    def __init__(self, message: str, *, url: str, expected: str, actual: str, size: int):
        super().__init__(message, url=url)
        self.expected = expected
        self.actual = actual
        self.size = size


class CacheError(FetchError):
    """The cache directory cannot hold the image: no space, read-only, not writable."""


# ---------------------------------------------------------------------------- values

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


def redact_url(url: str) -> str:
    """The URL as messages show it: no user:password, no fragment, and its query hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    return shown + ("?…" if parts.query else "")


@dataclass(frozen=True)
class _Source:
    url: str                   # what is requested: without userinfo and fragment
    shown: str                 # what messages say
    local: Path | None         # the path of a file:// URL
    authorization: str | None  # "user:password" from the URL, unquoted


def _parse_source(url: str) -> _Source:
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise BadInput(f"not a valid URL: {shown}", url=shown) from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise BadInput(f"a file URL must name an absolute local path (file:///path): {shown}",
                           url=shown)
        return _Source(url=url, shown=shown, local=Path(unquote(parts.path)), authorization=None)
    if scheme not in ("http", "https"):
        raise BadInput(f"unsupported URL scheme {parts.scheme or '(none)'!r} in {shown}: "
                       "use http, https or file", url=shown)
    if not parts.hostname:
        raise BadInput(f"the URL has no host: {shown}", url=shown)
    auth = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2], fragment="").geturl()
    return _Source(url=bare, shown=shown, local=None, authorization=auth)


# ---------------------------------------------------------------------------- entry point

def fetch_image(*, url: str, sha256: str, cache_dir: Path, stall_timeout: float = 60.0,
                connect_timeout: float | None = None, progress: ProgressCallback | None = None,
                rehash: bool = False) -> Fetched:
    """Return the verified image with this sha256, downloading or copying it if need be.

    A cached, stamped image is returned without touching the source. Otherwise the one
    process holding the image's lock downloads into a partial file (resuming an earlier
    partial with a Range request where the server allows it), verifies the sha256 and
    renames it into place; other callers wait for it and then find it cached.

    `stall_timeout`: seconds without a byte (or without an answer) before `Stalled`.
    `connect_timeout`: seconds for a connection to be accepted (default: `stall_timeout`).
    Raises a `FetchError`; nothing partial or unverified is ever returned.
    """
    source = _parse_source(url)
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise BadInput(f"not a sha256 (64 hex digits): {sha256!r} for {source.shown}",
                       url=source.shown)
    if not stall_timeout > 0 or (connect_timeout is not None and not connect_timeout > 0):
        raise BadInput("stall_timeout and connect_timeout must be positive", url=source.shown)
    expected = sha256.lower()
    cache_dir = Path(cache_dir)
    paths = cache_paths(cache_dir, expected)
    if not rehash:
        hit = _stamped(paths, expected)
        if hit is not None:
            _report(progress, hit.size, hit.size)
            return hit
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the image cache {cache_dir}: {exc.strerror}",
                         url=source.shown) from exc
    with _download_lock(paths, patience=2 * stall_timeout, progress=progress, shown=source.shown):
        hit = None if rehash else _stamped(paths, expected)
        if hit is None and paths.image.exists():
            hit = _reverify(paths, expected)
        if hit is not None:
            _report(progress, hit.size, hit.size)
            return hit
        if source.local is not None:
            return _copy_local(source, source.local, expected, paths, progress)
        return _download(source, expected, paths, progress, stall_timeout=stall_timeout,
                         connect_timeout=connect_timeout or stall_timeout)


def _report(progress: ProgressCallback | None, done: int, total: int | None) -> None:
    if progress is not None:
        progress(done, total)


# ---------------------------------------------------------------------------- the cache

def _stamped(paths: CachePaths, expected: str) -> Fetched | None:
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
        _remove(tmp)


def _reverify(paths: CachePaths, expected: str) -> Fetched | None:
    """Hash a cached image whose stamp is missing or stale: stamp it again, or delete it."""
    _remove(paths.stamp)
    try:
        size, actual = _hash_file(paths.image)
    except OSError:
        actual, size = "", 0
    if actual == expected:
        _write_stamp(paths, expected)
        return Fetched(path=paths.image, size=size, sha256=expected)
    _remove(paths.image)
    return None


def _hash_file(path: Path, *, hasher: hashlib._Hash | None = None) -> tuple[int, str]:
    hasher = hasher or hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
            size += n
    return size, hasher.hexdigest()


def _remove(*files: Path) -> None:
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
def _download_lock(paths: CachePaths, *, patience: float, progress: ProgressCallback | None,
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
            return
        except BlockingIOError:
            pass
        try:
            size = paths.partial.stat().st_size
        except OSError:
            size = -1
        now = time.monotonic()
        if size != last_size:
            last_size, last_change = size, now
            if size >= 0:
                _report(progress, size, None)
        elif now - last_change >= patience:
            try:
                holder = f" (pid {int(paths.lock.read_text().strip())})"
            except (OSError, ValueError):
                holder = ""
            raise Stalled(f"another process{holder} is downloading {shown} and has written "
                          f"nothing for {patience:g} s", url=shown)
        time.sleep(_LOCK_POLL)


class _Partial:
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
            _remove(self.paths.partial, self.paths.meta)
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
        _remove(self.paths.meta)
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
        _remove(self.paths.partial, self.paths.meta)
        where = self.paths.image.parent
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            of = f" of {_human(self.total)}" if self.total is not None else ""
            return CacheError(f"no space left in {where} for {self.shown} (wrote "
                              f"{_human(self.size)}{of}); the partial download was removed",
                              url=self.shown)
        return CacheError(f"cannot write {self.paths.partial} for {self.shown}: {exc.strerror}; "
                          "the partial download was removed", url=self.shown)


def _check_space(directory: Path, need: int, *, shown: str) -> None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise CacheError(f"not enough space in {directory} for {shown}: it needs "
                         f"{_human(need)} more, {_human(free)} are free", url=shown)


# ---------------------------------------------------------------------------- file://

def _copy_local(source: _Source, path: Path, expected: str, paths: CachePaths,
                progress: ProgressCallback | None) -> Fetched:
    try:
        src = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path} ({source.shown})", url=source.shown) from None
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror}", url=source.shown) from exc
    with src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"not a regular file: {path} ({source.shown})", url=source.shown)
        _check_space(paths.image.parent, st.st_size, shown=source.shown)
        _remove(paths.meta)
        out = _Partial(paths, append=False, shown=source.shown, total=st.st_size)
        try:
            hasher = hashlib.sha256()
            buffer = bytearray(_CHUNK)
            view = memoryview(buffer)
            done = 0
            _report(progress, 0, st.st_size)
            while True:
                try:
                    n = src.readinto(buffer)
                except OSError as exc:
                    raise FetchError(f"cannot read {path}: {exc.strerror}",
                                     url=source.shown) from exc
                if not n:
                    break
                hasher.update(view[:n])
                out.write(view[:n])
                done += n
                _report(progress, done, st.st_size)
            return out.finish(digest=hasher.hexdigest(), expected=expected, transferred=done,
                              resumed_from=0)
        finally:
            out.close()


# ---------------------------------------------------------------------------- http(s)://

def _download(source: _Source, expected: str, paths: CachePaths,
              progress: ProgressCallback | None, *, stall_timeout: float,
              connect_timeout: float) -> Fetched:
    import urllib3  # here, not at the top: it costs ~50 ms of start-up that most runs never use

    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=stall_timeout),
        retries=urllib3.Retry(total=10, connect=0, read=0, status=0, other=0, redirect=10,
                              raise_on_redirect=True, raise_on_status=False))
    try:
        # A second round only when the server refused the range asked for (416, or a 206
        # for other bytes): then the partial is dropped and the whole file asked for.
        for _ in range(2):
            result = _download_once(pool, source, expected, paths, progress,
                                    timeouts=(connect_timeout, stall_timeout))
            if result is not None:
                return result
        raise FetchError(f"{source.shown} refused a plain request after a refused range",
                         url=source.shown)
    finally:
        pool.clear()


def _download_once(pool: urllib3.PoolManager, source: _Source, expected: str,
                   paths: CachePaths, progress: ProgressCallback | None, *,
                   timeouts: tuple[float, float]) -> Fetched | None:
    """One GET (resuming the partial if there is one); None if the range asked was refused."""
    import urllib3

    hasher = hashlib.sha256()
    offset = 0
    if paths.partial.exists():
        try:
            offset, digest = _hash_file(paths.partial, hasher=hasher)
        except OSError:
            _remove(paths.partial)
            offset, hasher = 0, hashlib.sha256()
        else:
            if digest == expected:  # complete but not renamed: killed just before the end
                out = _Partial(paths, append=True, shown=source.shown, total=offset)
                try:
                    return out.finish(digest=digest, expected=expected, transferred=0,
                                      resumed_from=offset)
                finally:
                    out.close()
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if source.authorization is not None:
        headers.update(urllib3.make_headers(basic_auth=source.authorization))
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = _read_validator(paths.meta)
        if validator:
            headers["If-Range"] = validator
    response = _request(pool, source, headers, timeouts=timeouts)
    try:
        status = response.status
        if status in (404, 410):
            raise NotFound(f"{_status_line(status, response.reason)} from {source.shown}",
                           url=source.shown)
        if status == 416 and offset:
            _remove(paths.partial, paths.meta)
            return None
        if status >= 400 or status not in (200, 206) or (status == 206 and not offset):
            raise HTTPError(f"{_status_line(status, response.reason)} from {source.shown}",
                            url=source.shown, status=status)
        total: int | None
        reused = 0
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                _remove(paths.partial, paths.meta)
                return None
            total = None if match.group(3) == "*" else int(match.group(3))
            resumed_from = offset
        else:  # the whole file: the partial, if any, is overwritten (and its space reused)
            reused, offset, resumed_from, hasher = offset, 0, 0, hashlib.sha256()
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None:
            _check_space(paths.image.parent, total - offset - reused, shown=source.shown)
        if status == 200:
            _write_validator(paths.meta, response.headers)
        out = _Partial(paths, append=status == 206, shown=source.shown, total=total)
        try:
            done = _receive(response, out, hasher, offset=offset, total=total,
                            progress=progress, shown=source.shown, stall_timeout=timeouts[1])
            return out.finish(digest=hasher.hexdigest(), expected=expected,
                              transferred=done - offset, resumed_from=resumed_from)
        finally:
            out.close()
    finally:
        response.close()  # an unread rest is not drained: the connection is dropped instead
        response.release_conn()


def _receive(response: urllib3.BaseHTTPResponse, out: _Partial, hasher: hashlib._Hash, *,
             offset: int, total: int | None, progress: ProgressCallback | None,
             shown: str, stall_timeout: float) -> int:
    """Stream the body into `out` and `hasher`; return the bytes in the partial at the end."""
    import urllib3

    done = offset
    _report(progress, done, total)
    while True:
        try:
            chunk = response.read1(_CHUNK, decode_content=False)  # what arrived: a stall loses none
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise _stalled(shown, done, total, stall_timeout) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _interrupted(shown, done, total) from exc
        if not chunk:
            break
        hasher.update(chunk)
        out.write(chunk)
        done += len(chunk)
        _report(progress, done, total)
    if total is not None and done < total:
        raise _interrupted(shown, done, total)
    return done


def _status_line(status: int, reason: str | None) -> str:
    return f"HTTP {status} {reason}" if reason else f"HTTP {status}"


def _stalled(shown: str, done: int, total: int | None, timeout: float) -> Stalled:
    of = f" of {_human(total)}" if total is not None else ""
    return Stalled(f"no byte from {shown} for {timeout:g} s after {_human(done)}{of}; the partial "
                   "download is kept and the next try resumes it", url=shown)


def _interrupted(shown: str, done: int, total: int | None) -> Interrupted:
    of = f" of {_human(total)}" if total is not None else ""
    return Interrupted(f"the connection to {shown} ended after {_human(done)}{of}; the partial "
                       "download is kept and the next try resumes it", url=shown)


def _request(pool: urllib3.PoolManager, source: _Source, headers: dict[str, str], *,
             timeouts: tuple[float, float]) -> urllib3.BaseHTTPResponse:
    """Send the GET and return the response with its body unread, or raise a FetchError."""
    from urllib3 import exceptions as e

    connect_timeout, stall_timeout = timeouts
    shown = source.shown
    try:
        return pool.request("GET", source.url, headers=headers, preload_content=False,
                            decode_content=False)
    except e.MaxRetryError as exc:
        reason: BaseException | None = exc.reason
    except e.HTTPError as exc:
        reason = exc
    assert reason is not None
    host = urlsplit(source.url).netloc
    if isinstance(reason, e.NameResolutionError):
        raise Unreachable(f"cannot resolve the host of {shown}", url=shown) from reason
    if isinstance(reason, e.NewConnectionError):
        raise Unreachable(f"cannot connect to {host} for {shown}: {_os_reason(reason)}",
                          url=shown) from reason
    if isinstance(reason, e.ConnectTimeoutError):
        raise Unreachable(f"{host} accepted no connection within {connect_timeout:g} s "
                          f"({shown})", url=shown) from reason
    if isinstance(reason, e.ReadTimeoutError):
        raise Stalled(f"{host} sent no answer within {stall_timeout:g} s ({shown})",
                      url=shown) from reason
    if isinstance(reason, e.SSLError):
        raise Unreachable(f"TLS failed with {host} for {shown}: {_os_reason(reason)}",
                          url=shown) from reason
    if isinstance(reason, e.ProtocolError):
        raise Interrupted(f"the connection to {host} ended before an answer ({shown})",
                          url=shown) from reason
    if isinstance(reason, e.ResponseError):
        raise FetchError(f"too many redirects from {shown}", url=shown) from reason
    if isinstance(reason, e.LocationValueError):
        raise BadInput(f"not a valid URL: {shown}", url=shown) from reason
    raise Unreachable(f"cannot get {shown}: {type(reason).__name__}", url=shown) from reason


def _os_reason(exc: BaseException) -> str:
    """The OS's words for the error under a urllib3 exception, without reprs or URLs."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        if type(seen).__module__.startswith("ssl"):
            return str(seen).splitlines()[0][:200]
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _read_validator(meta: Path) -> str | None:
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("validator") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _write_validator(meta: Path, headers: urllib3.HTTPHeaderDict) -> None:
    """Keep what If-Range needs: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    if not validator:
        _remove(meta)
        return
    try:
        meta.write_text(json.dumps({"validator": validator}))
    except OSError:
        _remove(meta)  # without it a resume only costs a useless range on a changed file


# ---------------------------------------------------------------------------- progress

def _human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """A `progress` callback that keeps one `\\r`-rewritten line on a terminal.

    Writes nothing unless `stream` is a TTY; repaints at most once per `interval` seconds;
    `close()` (or leaving the `with`) paints the last state and ends the line. Used by the
    CLI around `fetch_image` when stderr is a terminal:

        with ProgressLine(label="debian-12") as line:
            fetch_image(url=..., sha256=..., cache_dir=..., progress=line)
    """

    def __init__(self, *, label: str, stream: TextIO | None = None, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self._start: tuple[float, int] | None = None
        self._last: tuple[int, int | None] | None = None
        self._painted_at: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._start is None:
            self._start = (now, done)
        self._last = (done, total)
        if self._painted_at is None or now - self._painted_at >= self.interval:
            self._paint(now, end="")

    def close(self) -> None:
        """Paint the final state and end the line (only if anything was reported)."""
        if self.enabled and self._last is not None:
            self._paint(self.clock(), end="\n")
            self._last = None

    def render(self, done: int, total: int | None, *, elapsed: float, since: int = 0) -> str:
        """The text of the line: done, of total and percent when known, and the mean rate."""
        text = f"{self.label}: {_human(done)}"
        if total:
            text += f" of {_human(total)} ({100 * done // total}%)"
        if elapsed > 0 and done > since:
            text += f", {_human((done - since) / elapsed)}/s"
        return text

    def _paint(self, now: float, *, end: str) -> None:
        assert self._last is not None and self._start is not None
        done, total = self._last
        started, since = self._start
        self.stream.write("\r\x1b[K" + self.render(done, total, elapsed=now - started,
                                                   since=since) + end)
        self.stream.flush()
        self._painted_at = now

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

"""Getting the bytes of an image into the cache: a file:// copy, or an http(s) download.

Called by `fetch_image` with the image's lock held and no valid cached copy. Both write
through `controller.images.cache.Partial`, hashing in the same pass, and end with its
`finish()`: verified and renamed into place, or removed. The http(s) download resumes an
interrupted partial with a Range request (and If-Range), and turns every urllib3 failure
into one `FetchError` with a one-line message. urllib3 is imported only when a download
starts, so `reconcile` starts as fast without it.

A file:// URL is copied into the cache, not returned in place: the upload of a multi-GiB
image takes a while, and a user's file may change between verification and upload (or be on
a share that goes away); the cached copy belongs to reconcile, is read-only and stamped,
and the caller has one kind of path to upload. The copy costs one write of the image, in
the same pass that hashes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .cache import CHUNK, CachePaths, Fetched, Partial, check_space, hash_file, remove
from .errors import BadInput, FetchError, HTTPError, Interrupted, NotFound, Stalled, Unreachable
from .progress import ProgressCallback, human_size, report
from .urls import Source

if TYPE_CHECKING:
    import urllib3

__all__ = ["copy_local", "download_http"]

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_USER_AGENT = "reconcile-libvirt"


# ---------------------------------------------------------------------------- file://

def copy_local(source: Source, path: Path, expected: str, paths: CachePaths,
               progress: ProgressCallback | None) -> Fetched:
    """Copy and hash a local file into the partial, then verify and rename it into place."""
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
        check_space(paths.image.parent, st.st_size, shown=source.shown)
        remove(paths.meta)
        out = Partial(paths, append=False, shown=source.shown, total=st.st_size)
        try:
            hasher = hashlib.sha256()
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            done = 0
            report(progress, 0, st.st_size)
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
                report(progress, done, st.st_size)
            return out.finish(digest=hasher.hexdigest(), expected=expected, transferred=done,
                              resumed_from=0)
        finally:
            out.close()


# ---------------------------------------------------------------------------- http(s)://

def download_http(source: Source, expected: str, paths: CachePaths,
                  progress: ProgressCallback | None, *, stall_timeout: float,
                  connect_timeout: float) -> Fetched:
    """GET the image into the partial (resuming it if it can), then verify and rename it."""
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


def _download_once(pool: urllib3.PoolManager, source: Source, expected: str,
                   paths: CachePaths, progress: ProgressCallback | None, *,
                   timeouts: tuple[float, float]) -> Fetched | None:
    """One GET (resuming the partial if there is one); None if the range asked was refused."""
    import urllib3

    hasher = hashlib.sha256()
    offset = 0
    if paths.partial.exists():
        try:
            offset, digest = hash_file(paths.partial, hasher=hasher)
        except OSError:
            remove(paths.partial)
            offset, hasher = 0, hashlib.sha256()
        else:
            if digest == expected:  # complete but not renamed: killed just before the end
                out = Partial(paths, append=True, shown=source.shown, total=offset)
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
            remove(paths.partial, paths.meta)
            return None
        if status >= 400 or status not in (200, 206) or (status == 206 and not offset):
            raise HTTPError(f"{_status_line(status, response.reason)} from {source.shown}",
                            url=source.shown, status=status)
        total: int | None
        reused = 0
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                remove(paths.partial, paths.meta)
                return None
            total = None if match.group(3) == "*" else int(match.group(3))
            resumed_from = offset
        else:  # the whole file: the partial, if any, is overwritten (and its space reused)
            reused, offset, resumed_from, hasher = offset, 0, 0, hashlib.sha256()
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None:
            check_space(paths.image.parent, total - offset - reused, shown=source.shown)
        if status == 200:
            _write_validator(paths.meta, response.headers)
        out = Partial(paths, append=status == 206, shown=source.shown, total=total)
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


def _receive(response: urllib3.BaseHTTPResponse, out: Partial, hasher: hashlib._Hash, *,
             offset: int, total: int | None, progress: ProgressCallback | None,
             shown: str, stall_timeout: float) -> int:
    """Stream the body into `out` and `hasher`; return the bytes in the partial at the end."""
    import urllib3

    done = offset
    report(progress, done, total)
    while True:
        try:
            chunk = response.read1(CHUNK, decode_content=False)  # what arrived: a stall loses none
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise _stalled(shown, done, total, stall_timeout) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _interrupted(shown, done, total) from exc
        if not chunk:
            break
        hasher.update(chunk)
        out.write(chunk)
        done += len(chunk)
        report(progress, done, total)
    if total is not None and done < total:
        raise _interrupted(shown, done, total)
    return done


def _status_line(status: int, reason: str | None) -> str:
    return f"HTTP {status} {reason}" if reason else f"HTTP {status}"


def _stalled(shown: str, done: int, total: int | None, timeout: float) -> Stalled:
    of = f" of {human_size(total)}" if total is not None else ""
    return Stalled(f"no byte from {shown} for {timeout:g} s after {human_size(done)}{of}; the "
                   "partial download is kept and the next try resumes it", url=shown)


def _interrupted(shown: str, done: int, total: int | None) -> Interrupted:
    of = f" of {human_size(total)}" if total is not None else ""
    return Interrupted(f"the connection to {shown} ended after {human_size(done)}{of}; the "
                       "partial download is kept and the next try resumes it", url=shown)


def _request(pool: urllib3.PoolManager, source: Source, headers: dict[str, str], *,
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
        remove(meta)
        return
    try:
        meta.write_text(json.dumps({"validator": validator}))
    except OSError:
        remove(meta)  # without it a resume only costs a useless range on a changed file

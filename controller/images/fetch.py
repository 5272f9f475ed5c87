"""`fetch_image`: an image by URL and sha256 as a verified file in the local cache.

CONTRACT.md section 6: an `Image` is a `url` (http, https or file) and the `sha256` of its
bytes. `fetch_image()` turns the two into a verified file in a content-addressed cache
(`--state-dir`/images), which the import step then uploads into a libvirt pool with a
volume stream. Called by that step, and by the CLI with `ProgressLine` on a terminal.
It checks its arguments, answers a cache hit at once, and otherwise takes the image's lock
and has controller.images.download copy or download it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .cache import Fetched, cache_paths, download_lock, reverify, stamped
from .download import copy_local, download_http
from .errors import BadInput, CacheError
from .progress import ProgressCallback, report
from .urls import parse_source

__all__ = ["fetch_image"]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


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
    source = parse_source(url)
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise BadInput(f"not a sha256 (64 hex digits): {sha256!r} for {source.shown}",
                       url=source.shown)
    if not stall_timeout > 0 or (connect_timeout is not None and not connect_timeout > 0):
        raise BadInput("stall_timeout and connect_timeout must be positive", url=source.shown)
    expected = sha256.lower()
    cache_dir = Path(cache_dir)
    paths = cache_paths(cache_dir, expected)
    if not rehash:
        hit = stamped(paths, expected)
        if hit is not None:
            report(progress, hit.size, hit.size)
            return hit
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the image cache {cache_dir}: {exc.strerror}",
                         url=source.shown) from exc
    with download_lock(paths, patience=2 * stall_timeout, progress=progress, shown=source.shown):
        hit = None if rehash else stamped(paths, expected)
        if hit is None and paths.image.exists():
            hit = reverify(paths, expected)
        if hit is not None:
            report(progress, hit.size, hit.size)
            return hit
        if source.local is not None:
            return copy_local(source, source.local, expected, paths, progress)
        return download_http(source, expected, paths, progress, stall_timeout=stall_timeout,
                             connect_timeout=connect_timeout or stall_timeout)

"""Download an image by URL and sha256 into a local cache, verified: the download half of `Image`.

CONTRACT.md section 6. The public surface is here; the import step and the CLI import from
`controller.images`, never from its modules:

    fetch.py     fetch_image(): check the arguments, answer a cache hit, else lock and fetch
    download.py  the file:// copy and the http(s) download with resume and deadlines
    cache.py     the cache's files per sha256, their stamps, the lock, the partial file
    urls.py      redact_url() and what a fetch needs from a URL
    errors.py    FetchError and its subclasses, each saying whether a retry may work
    progress.py  the progress callback and ProgressLine, the terminal's one line

This package does network and local files only; it never imports libvirt, and it imports
its HTTP client (urllib3) only when a download starts.
"""

from .cache import CachePaths, Fetched, cache_paths
from .errors import (
    BadInput,
    CacheError,
    ChecksumMismatch,
    FetchError,
    HTTPError,
    Interrupted,
    NotFound,
    Stalled,
    Unreachable,
)
from .fetch import fetch_image
from .progress import ProgressCallback, ProgressLine
from .urls import redact_url

__all__ = [
    "BadInput", "CacheError", "CachePaths", "ChecksumMismatch", "FetchError", "Fetched",
    "HTTPError", "Interrupted", "NotFound", "ProgressCallback", "ProgressLine", "Stalled",
    "Unreachable", "cache_paths", "fetch_image", "redact_url",
]

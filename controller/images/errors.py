"""The errors of an image fetch: one class per way an image cannot be had, and whether to retry.

Raised by the rest of controller.images; caught by the import step (which retries the
`retryable` ones later) and by the CLI (which prints the one-line message).

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
hidden (`controller.images.urls.redact_url`): signed URLs carry their secret there.
"""

from __future__ import annotations

from controller.errors import ReconcileError

__all__ = [
    "BadInput", "CacheError", "ChecksumMismatch", "FetchError", "HTTPError", "Interrupted",
    "NotFound", "Stalled", "Unreachable",
]


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

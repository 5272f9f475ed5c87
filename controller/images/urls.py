"""Image URLs: what a message may show of one, and what a fetch needs from one.

`redact_url` is public (the CLI and the messages of controller.images use it);
`parse_source` is called by `fetch_image` and raises `BadInput` for a URL it cannot fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import BadInput

__all__ = ["Source", "parse_source", "redact_url"]


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
class Source:
    """What a fetch needs from a URL: what to request, what to show, a local path, the login."""

    url: str                   # what is requested: without userinfo and fragment
    shown: str                 # what messages say
    local: Path | None         # the path of a file:// URL
    authorization: str | None  # "user:password" from the URL, unquoted


def parse_source(url: str) -> Source:
    """The Source of an absolute http, https or file URL; raise BadInput for any other."""
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
        return Source(url=url, shown=shown, local=Path(unquote(parts.path)), authorization=None)
    if scheme not in ("http", "https"):
        raise BadInput(f"unsupported URL scheme {parts.scheme or '(none)'!r} in {shown}: "
                       "use http, https or file", url=shown)
    if not parts.hostname:
        raise BadInput(f"the URL has no host: {shown}", url=shown)
    auth = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2], fragment="").geturl()
    return Source(url=bare, shown=shown, local=None, authorization=auth)

"""A plain HTTP GET for tests that read the service's own endpoints (`/metrics`,
`/healthz`) on 127.0.0.1. Called by tests/service."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str, *, timeout: float = 10) -> tuple[int, str]:
    """(status, body) of GET `url`; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

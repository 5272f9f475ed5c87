"""libvirt's errors turned into ours, once, by their (code, domain) and message.

Every call into libvirt in this package runs inside `translate`, so a
`libvirt.libvirtError` never leaves it: callers see the classes of
`controller.errors` (not found, already exists, transient, connection lost,
permanent), each with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from ..errors import (
    AlreadyExists,
    ConnectionLost,
    DomainNotFound,
    HypervisorError,
    PermanentError,
    TransientError,
)


def code(name: str) -> int:
    """libvirt's number for the constant `name`, or -1 where this binding lacks it."""
    return int(getattr(libvirt, name, -1))


_CONNECTION_CODES = {code("VIR_ERR_NO_CONNECT"), code("VIR_ERR_INVALID_CONN"),
                     code("VIR_ERR_RPC"), code("VIR_ERR_AUTH_FAILED")}
_CONNECTION_DOMAINS = {code("VIR_FROM_RPC"), code("VIR_FROM_REMOTE")}
_CONNECTION_WORDS = ("client socket is closed", "end of file while reading data",
                     "cannot write data", "cannot recv data", "connection reset",
                     "broken pipe", "no connection driver", "failed to connect socket")
_TRANSIENT_CODES = {code("VIR_ERR_OPERATION_TIMEOUT"), code("VIR_ERR_AGENT_UNRESPONSIVE"),
                    code("VIR_ERR_RESOURCE_BUSY")}
_TRANSIENT_WORDS = ("cannot acquire state change lock", "timed out", "resource busy",
                    "job is already active")

_error_handler_installed = False


def silence_libvirt_stderr() -> None:
    """libvirt prints every error to stderr unless a handler is registered; we report our own."""
    global _error_handler_installed
    if not _error_handler_installed:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _error_handler_installed = True


def classify(exc: libvirt.libvirtError, what: str) -> HypervisorError:
    """Turn a libvirtError into one of ours, with a one-line message."""
    number = exc.get_error_code()
    domain = exc.get_error_domain()
    text = (exc.get_error_message() or str(exc)).strip().replace("\n", " ")
    message = f"{what}: {text} (libvirt error {number}, domain {domain})"
    lowered = text.lower()
    cls: type[HypervisorError]
    if number == code("VIR_ERR_NO_DOMAIN"):
        cls = DomainNotFound
    elif "already exists" in lowered and number in (
            code("VIR_ERR_OPERATION_FAILED"), code("VIR_ERR_DOM_EXIST")):
        cls = AlreadyExists
    elif (number in _CONNECTION_CODES
          or (domain in _CONNECTION_DOMAINS and number in (
              code("VIR_ERR_SYSTEM_ERROR"), code("VIR_ERR_INTERNAL_ERROR")))
          or any(word in lowered for word in _CONNECTION_WORDS)):
        cls = ConnectionLost
    elif number in _TRANSIENT_CODES or any(word in lowered for word in _TRANSIENT_WORDS):
        cls = TransientError
    else:
        cls = PermanentError
    return cls(message, code=number, domain=domain)


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Run a libvirt call; its error leaves as one of ours, saying `what` failed."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise classify(exc, what) from exc


def as_connection_lost(error: HypervisorError) -> ConnectionLost:
    return ConnectionLost(str(error), code=error.code, domain=error.domain)


def is_not_running(error: HypervisorError) -> bool:
    return error.code == code("VIR_ERR_OPERATION_INVALID") and "not running" in str(error)

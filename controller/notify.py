"""sd_notify(3) without libsystemd: READY, STATUS, WATCHDOG and STOPPING datagrams.

Used by the service to tell systemd (a `Type=notify` unit) how it is doing.
Does nothing when $NOTIFY_SOCKET is unset, so the service runs the same by
hand. A leading '@' in the address means Linux's abstract socket namespace.
Sending never raises nor blocks: losing a status message must not stop the service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """One service's channel to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        elif address:
            log.warning("ignoring NOTIFY_SOCKET=%s: not a path or an abstract socket", address)
        self._watchdog_usec = _watchdog_usec(env)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of what systemd asks for), or None."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, *assignments: str) -> bool:
        """Send 'KEY=value' lines in one datagram; True if it was sent."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    # Non-blocking: a receiver that stops reading must not stall the service.
                    self._socket = socket.socket(
                        socket.AF_UNIX,
                        socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self._socket.sendto(message, self.address)
            except BlockingIOError:
                log.debug("NOTIFY_SOCKET is full; dropped: %s", message.decode())
                return False
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify systemd at NOTIFY_SOCKET: %s", exc.strerror or exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.send(*lines)

    def status(self, text: str) -> bool:
        """STATUS=<text>, sent only when it differs from the last one sent."""
        line = _one_line(text)
        if line == self._last_status:
            return False
        sent = self.send(f"STATUS={line}")
        if sent:
            self._last_status = line
        return sent

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.send(*lines)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """$WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or ours)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())

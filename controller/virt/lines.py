"""The calls in flight on each connection of one host, and the extra connections.

libvirtd stops reading a connection that has `max_client_requests` (default 5)
calls in flight, keepalive replies included, and its keepalive drops that
connection 30 s later. So every call holds a slot of the connection it uses,
at most CALLS_PER_CONNECTION per connection, and when the worker threads want
more, another connection to the same URI is opened in the background.
Used by `connection.Connection` only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from ..errors import ConnectionLost

log = logging.getLogger(__name__)


#: Calls one connection may have in flight. libvirtd stops reading a connection that has
#: `max_client_requests` (default 5) calls in flight, keepalive replies included, and its
#: keepalive drops the connection 30 s later: five slow calls at once (live migrations, a
#: hung QEMU's monitor) would cost every call on it. Four never stop it reading.
CALLS_PER_CONNECTION = 4


def connections_for(workers: int) -> int:
    """How many connections `workers` threads need to never queue in libvirtd."""
    return max(1, -(-workers // CALLS_PER_CONNECTION))


class Line:
    """One connection and the calls in flight on it."""

    __slots__ = ("busy", "closer", "conn")

    def __init__(self, conn: Any):
        self.conn = conn
        self.busy = 0
        self.closer: Callable[[Any], None] | None = None  # once out of the pool


class Lines:
    """A Hypervisor's connections: the first one (events, listings) and, when the
    workers need more than CALLS_PER_CONNECTION calls in flight, extra ones, opened in
    the background when first needed. Every call holds a slot of the connection it uses.
    """

    def __init__(self, most: int, opener: Callable[[], Any], where: str):
        self.most = most
        self._where = where
        self._opener = opener  # opens one more connection (raises ConnectionLost)
        self._lines: list[Line] = []
        self._free = threading.Condition()
        self._generation = 0  # a reconnect starts a new one; late opens of an old one close
        self._opening = False
        self._cannot_grow = False

    def reset(self, first: Any) -> list[Line]:
        """Start over with `first` (None: no connection); returns the lines it replaces,
        with the calls still in flight on each."""
        with self._free:
            old = self._lines
            self._lines = [Line(first)] if first is not None else []
            self._generation += 1
            self._cannot_grow = False
            self._free.notify_all()
        return old

    def take(self, on: Any = None) -> Line | None:
        """A slot on `on` (the connection of a domain handle; None when that connection
        is no longer ours) or, with on=None, on any of ours, waiting for one if need be."""
        with self._free:
            while True:
                if on is not None:
                    lines = [line for line in self._lines if line.conn is on]
                    if not lines:
                        return None  # the call fails with libvirt's own reason
                elif not self._lines:
                    raise ConnectionLost(f"not connected to {self._where}")
                else:  # the least busy: a domain handle's calls can only use its own
                    lines = sorted(self._lines, key=lambda line: line.busy)
                    if lines[0].busy >= CALLS_PER_CONNECTION // 2:
                        self._grow_locked()  # before the slots run out: opening takes a while
                line = next((line for line in lines if line.busy < CALLS_PER_CONNECTION), None)
                if line is not None:
                    line.busy += 1
                    return line
                self._free.wait()

    def in_flight(self) -> list[int]:
        with self._free:
            return [line.busy for line in self._lines]

    def give_back(self, line: Line, *, failed: bool) -> None:
        """Free the slot; after a failed call, drop an extra connection that died. A
        connection out of the pool is closed when its last call returns."""
        close = None
        with self._free:
            line.busy -= 1
            if failed and line in self._lines[1:] and not is_alive(line.conn):
                self._lines.remove(line)
                line.closer = close_quietly
            if line.closer is not None and not line.busy and line not in self._lines:
                close, line.closer = line.closer, None
            self._free.notify_all()  # waiters may want different connections
        if close is not None:
            close(line.conn)

    def wait_idle(self, lines: list[Line], timeout: float | None = None) -> bool:
        """Until no call is in flight on any of `lines` (already out of the pool), or
        `timeout` seconds; returns whether they are idle."""
        with self._free:
            return self._free.wait_for(lambda: not any(line.busy for line in lines),
                                       timeout)

    def retire(self, line: Line, closer: Callable[[Any], None]) -> None:
        """Close `line`, already out of the pool, now or when its last call returns:
        closing a connection under a call on it crashes libvirt's client."""
        with self._free:
            if line.busy:
                line.closer = closer
                return
        closer(line.conn)

    def _grow_locked(self) -> None:
        if self._opening or self._cannot_grow or len(self._lines) >= self.most:
            return
        self._opening = True
        threading.Thread(target=self._grow, args=(self._generation,), daemon=True,
                         name="libvirt-open").start()

    def _grow(self, generation: int) -> None:
        conn = None
        try:
            conn = self._opener()
        except ConnectionLost as error:
            log.debug("no extra libvirt connection: %s", error)
        with self._free:
            self._opening = False
            current = generation == self._generation and bool(self._lines)
            if conn is None:
                self._cannot_grow = current
            elif current:
                self._lines.append(Line(conn))
                log.info("opened connection %d of %d to %s: more than %d calls wanted at once",
                         len(self._lines), self.most, self._where, CALLS_PER_CONNECTION)
                conn = None
            self._free.notify_all()
        if conn is not None:
            close_quietly(conn)


def is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass

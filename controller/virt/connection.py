"""One host's libvirt connection: opening it, noticing and replacing a lost one, and the
call slots every libvirt call of this package holds (see lines.py).

Used by `Hypervisor` (reads and steps call through `call`) and by the host layer
(`controller.hosts`), which decides when to connect and reconnect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import libvirt

from ..errors import ConnectionLost
from .errors import as_connection_lost, classify, silence_libvirt_stderr
from .lines import Line, Lines, close_quietly, is_alive
from .loop import event_loop_alive
from .sockets import bound_unacknowledged, unacknowledged_limit

log = logging.getLogger(__name__)


class Connection:
    """A libvirt host's connection (more when the worker threads want more than
    CALLS_PER_CONNECTION calls in flight), shared by the threads, reopened when lost."""

    def __init__(self, uri: str | None, *, readonly: bool = False,
                 keepalive: tuple[int, int] | None = None, connections: int = 1,
                 keepalive_ready: Callable[[], bool] = event_loop_alive):
        """`connections`: at most this many, for calls by worker threads (see
        `connections_for`); the extra ones are opened only when the calls need them.
        `keepalive` (interval s, count): a remote host that stops answering fails calls
        after about interval x (count + 1) s instead of TCP's minutes; it needs libvirt's
        event loop running, which `keepalive_ready` tells."""
        self.uri = uri
        self.readonly = readonly
        self.keepalive = keepalive
        self._keepalive_ready = keepalive_ready
        self._conn: Any = None
        self._given_up: Any = None  # see give_up()
        self._lock = threading.Lock()
        self._closes = 0  # close() calls, seen by a reconnect that waited without the lock
        self._lines = Lines(connections, self._open_extra, uri or "libvirt")
        self.calls = 0  # libvirt calls made, for benchmarks and -v
        #: Run when the connection is closed or replaced: a holder of libvirt handles
        #: drops them, or they would keep the old connection alive (a test driver's
        #: state too).
        self.on_reset: list[Callable[[], None]] = []

    # --- opening and replacing ------------------------------------------------------

    def connect(self) -> None:
        """Open the connection; raise ConnectionLost with libvirt's reason if it fails."""
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        self._conn = self._open_one()
        if self.uri is None:
            self.uri = self._conn.getURI()
        self._retire(self._lines.reset(self._conn))

    def _open_one(self) -> Any:
        silence_libvirt_stderr()
        where = self.uri or "the default libvirt URI"
        try:
            if self.readonly:
                conn = libvirt.openReadOnly(self.uri)
            else:
                conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise as_connection_lost(classify(exc, f"cannot connect to {where}")) from exc
        if self.keepalive and self._keepalive_ready():
            try:
                conn.setKeepAlive(*self.keepalive)
            except libvirt.libvirtError as exc:  # local drivers have no keepalive
                log.debug("no keepalive on %s: %s", self.uri, exc)
            else:  # a cut link: a socket error first, never keepalive's death (sockets.py)
                bound_unacknowledged(self.uri, seconds=unacknowledged_limit(*self.keepalive))
        return conn

    def _open_extra(self) -> Any:
        # test:/// opens a fresh, separate hypervisor per connection (and has no limit).
        if (self.uri or "").startswith("test:"):
            raise ConnectionLost("the test driver shares no state between connections")
        return self._open_one()

    def reconnect(self, failed: Any = None) -> None:
        """Open a new connection, unless another thread already did: the current one
        is alive and is not `failed`.

        Calls still in flight on the old connection (a host that stopped answering) are
        waited for first, for as long as keepalive takes to end them (`drain_limit`), and
        without the lock: a call that libvirt never ends must not hold up this host, nor
        `close`. The old connection is closed only once its last call returns: closing it
        under a call crashed libvirt's client (segfaults in libvirt.so and GLib).
        """
        with self._lock:
            if self._conn is not None and self._conn is not failed and self.alive():
                return
            self._conn = self._given_up = None
            self._reset_hooks()
            old = self._lines.reset(None)
            closes = self._closes
        if not self._lines.wait_idle(old, self.drain_limit()):
            log.warning("%s: %d call(s) still wait on the lost connection after %gs; "
                        "opening a new one beside it", self.uri or "libvirt",
                        sum(line.busy for line in old), self.drain_limit())
        with self._lock:
            self._retire(old)
            if self._closes != closes:
                raise ConnectionLost(f"the connection to {self.uri or 'libvirt'} was closed")
            if self._conn is None:  # else another thread connected meanwhile
                self._open_locked()

    def drain_limit(self) -> float:
        """How long a reconnect waits for the lost connection's calls: until keepalive
        has ended them, and one interval more."""
        if self.keepalive is None:
            return 30.0
        interval, count = self.keepalive
        return float(interval * (count + 2))

    def give_up(self) -> None:
        """Count the current connection as lost although libvirt has not said so (its
        calls stopped answering): the next `reconnect` replaces it."""
        self._given_up = self._conn

    def _retire(self, lines: list[Line]) -> None:
        """Close replaced connections, each once no call waits on it any more (a host
        that stopped answering may hold one for as long as it is cut off)."""
        for index, line in enumerate(lines):
            self._lines.retire(line, self._forget if index == 0 else close_quietly)

    def _forget(self, conn: Any) -> None:
        """Close a connection being replaced; errors of a dead one are moot."""
        close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            self._closes += 1  # a reconnect waiting meanwhile opens nothing
            self._conn = None
            self._reset_hooks()
            self._retire(self._lines.reset(None))

    def _reset_hooks(self) -> None:
        for hook in self.on_reset:
            hook()

    # --- state ------------------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the current connection is open and its peer not known to be gone.
        A local check: no round trip to the daemon."""
        conn = self._conn
        return conn is not None and conn is not self._given_up and is_alive(conn)

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still turn out dead on the next call)."""
        return self._conn is not None

    def current(self) -> Any:
        """The connection object in use now (to pass to `reconnect(failed=...)`); only
        for comparing: this package alone calls libvirt on it."""
        return self._conn

    def in_flight(self) -> list[int]:
        """Calls in flight on each open connection, the first one first."""
        return self._lines.in_flight()

    # --- calling --------------------------------------------------------------------

    @property
    def conn(self) -> Any:
        conn = self._conn
        if conn is None:
            raise ConnectionLost(f"not connected to {self.uri or 'libvirt'}")
        return conn

    @contextmanager
    def slot(self, on: Any = None) -> Iterator[Any]:
        """A connection to call libvirt on, holding one of its call slots meanwhile:
        `on` (a domain handle's connection) or any of ours."""
        if on is None and self._conn is None:
            raise ConnectionLost(f"not connected to {self.uri or 'libvirt'}")
        line = self._lines.take(on)
        if line is None:  # a handle of a connection already replaced: its calls fail
            yield on
            return
        failed = True
        try:
            yield line.conn
            failed = False
        finally:
            self._lines.give_back(line, failed=failed)

    def call(self, what: str, on: Any = None) -> _Call:
        """`slot` and `translate` together: the usual way to call libvirt
        (`with connection.call("cannot read domain 'web'") as conn: ...`)."""
        return _Call(self, what, on)


class _Call:
    """Connection.call's context manager: a class, since two generator-based ones cost
    more per call than a no-op pass's libvirt call itself on the client side."""

    __slots__ = ("_connection", "_line", "_on", "_what")

    def __init__(self, connection: Connection, what: str, on: Any):
        self._connection, self._what, self._on = connection, what, on
        self._line: Line | None = None

    def __enter__(self) -> Any:
        on = self._on
        if on is None and self._connection._conn is None:
            raise ConnectionLost(f"not connected to {self._connection.uri or 'libvirt'}")
        line = self._connection._lines.take(on)
        if line is None:  # a handle of a connection already replaced: its calls fail
            return on
        self._line = line
        return line.conn

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        line, self._line = self._line, None
        if line is not None:
            self._connection._lines.give_back(line, failed=error is not None)
        if isinstance(error, libvirt.libvirtError):
            raise classify(error, self._what) from error

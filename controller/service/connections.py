"""The service's connection supervisor: keeps each host it converges connected.

Run by the service's main loop (`tend`, once per tick and per host). Each host is
connected in a thread of its own, with the connect deadline and a backoff of its own:
a missing daemon is a log line, not a crash, and one host never holds up another.
It drives the `Host` state (hosts.py) that the reconciler and the resync read; the
close callback of a watched connection (libvirt's event thread) only records a loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import ConnectionLost
from ..hosts import Host, Hosts

log = logging.getLogger("controller.service")

CONNECT_BACKOFF = (0.5, 30.0)
#: A connection up this long is stable: losing it then starts the backoff afresh.
STABLE = 30.0


class Supervisor:
    """Connects, notices losses, reconnects with backoff; see the module."""

    def __init__(self, hosts: Hosts, *, where: Callable[[Host], str],
                 on_up: Callable[[Host], None], on_unreachable: Callable[[Host], None],
                 on_down: Callable[[Host], None], wake: Callable[[], None]):
        self.hosts = hosts
        self._where = where  # how a host's URI is named in logs
        self._on_up = on_up  # a host (re)connected: resync
        self._on_unreachable = on_unreachable  # its VMs are failed (unknown)
        self._on_down = on_down  # the connection was lost (metrics)
        self._wake = wake

    def tend(self, host: Host, now: float) -> float:
        """One host's connection: notice a loss, start or finish a (re)connect in its own
        thread, back off. Returns when this host next needs the loop."""
        timeout = self.hosts.connect_timeout
        if host.lost is not None:
            reason, host.lost = host.lost, None
            log.warning("lost the libvirt connection to %s (%s); reconnecting",
                        self._where(host), reason)
            if now - host.up_since >= STABLE:
                host.next_connect, host.delay = now, CONNECT_BACKOFF[0]
            else:  # lost again right after connecting: keep backing off
                host.next_connect = now + host.delay
                host.delay = min(host.delay * 2, CONNECT_BACKOFF[1])
        if host.opener is not None:
            if host.opener.is_alive():
                waited = now - host.opened_at
                if waited >= timeout and not host.said_unreachable:
                    host.said_unreachable = True
                    host.error = f"no answer from {self._where(host)} within {timeout:g}s"
                    log.warning("host %s is unreachable: %s; still trying", host.label,
                                host.error)
                    self._on_unreachable(host)
                return now + max(0.1, min(1.0, timeout - waited))
            host.opener, error = None, host.open_error
            if error is None:
                host.up_since = time.monotonic()
                host.said_unreachable = False
                if not host.up:  # the connection was fine after all: no on_open ran
                    self.opened(host.name)
            else:
                host.error = str(error)
                log.warning("%slibvirt is not reachable: %s; retrying in %gs",
                            f"host {host.label}: " if self.hosts.several else "", error,
                            host.delay)
                host.next_connect = now + host.delay
                host.delay = min(host.delay * 2, CONNECT_BACKOFF[1])
                self._on_unreachable(host)
        if not host.up and host.opener is None:
            if now >= host.next_connect:
                host.open_error, host.opened_at = None, now
                host.opener = threading.Thread(target=self._connect, args=(host,),
                                               name=f"connect-{host.label}", daemon=True)
                host.opener.start()
                return now + min(1.0, timeout)
            return host.next_connect
        return float("inf")

    def _connect(self, host: Host) -> None:
        """In a thread of its own: connect or reconnect one host, and wake the loop."""
        try:
            connection = host.hypervisor.connection
            if connection.current() is None:
                connection.connect()
            else:
                connection.reconnect()  # nothing to do if a worker reconnected already
        except ConnectionLost as error:
            host.open_error = error
        self._wake()

    def opened(self, name: str) -> None:
        """A connection of `name` opened (under its connection lock, in whichever thread
        connected)."""
        host = self.hosts.get(name)
        if host is None:
            return
        host.up = True
        host.error = None
        log.info("connected to %s; watching domain lifecycle events", host.hypervisor.uri)
        self._on_up(host)
        self._wake()

    def closed(self, name: str, reason: str) -> None:
        """A connection of `name` was lost (libvirt's event thread, or a worker's)."""
        host = self.hosts.get(name)
        if host is not None and host.up:
            host.up = False
            host.lost = reason
            host.error = f"the connection was lost ({reason})"
            self._on_down(host)
            self._wake()

    def close_all(self) -> None:
        for host in self.hosts.all():
            if host.opener is None or not host.opener.is_alive():
                host.hypervisor.connection.close()  # an open in flight holds its lock

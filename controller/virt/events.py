"""Connections that deliver lifecycle events and report their own loss (the service).

Callbacks run in libvirt's event thread (loop.py): they must only record what
happened (enqueue a name, set a flag), never call back into libvirt or wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import libvirt

from .connection import Connection
from .errors import as_connection_lost, classify
from .loop import event_loop_alive, start_event_loop

log = logging.getLogger(__name__)
__all__ = ["WatchedConnection", "event_loop_alive", "start_event_loop"]

#: (domain name, event: "defined", "undefined", "started", "stopped", ...)
DomainEventCallback = Callable[[str, str], None]
#: (why the connection closed: "eof", "keepalive", "error", "client")
ConnectionCallback = Callable[[str], None]
#: (domain name, True: the guest agent connected its channel, False: it disconnected)
AgentEventCallback = Callable[[str, bool], None]

_LIFECYCLE_EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped",
                     "shutdown", "pmsuspended", "crashed")
_CLOSE_REASONS = {0: "error", 1: "eof", 2: "keepalive", 3: "client"}
_NETWORK_EVENTS = ("defined", "undefined", "started", "stopped")
_POOL_EVENTS = ("defined", "undefined", "started", "stopped", "created", "deleted")
_AGENT_CONNECTED = int(getattr(libvirt,
                               "VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED", 1))


class WatchedConnection(Connection):
    """A Connection whose every connection, the first and each reopened one, delivers
    domain lifecycle events (and, with `on_agent`, guest agent lifecycle events) and
    reports its own loss (close callback, keepalive). Network and storage pool lifecycle
    events arrive as the resource's key: the callback gets "network:NAME" or "pool:NAME"
    instead of a domain name.

    `on_open` runs after each successful (re)connection, under the connection lock: it
    must only record that it happened.
    """

    def __init__(self, uri: str | None, *, on_event: DomainEventCallback,
                 on_open: Callable[[], None], on_close: ConnectionCallback,
                 keepalive: tuple[int, int] = (5, 3), connections: int = 1,
                 on_agent: AgentEventCallback | None = None):
        super().__init__(uri, keepalive=keepalive, connections=connections,
                         keepalive_ready=event_loop_alive)
        self._on_event = on_event
        self._on_open = on_open
        self._on_close = on_close
        self._on_agent = on_agent
        self._callback_ids: dict[int, list[int]] = {}  # id(connection) → its event callbacks
        #: id(connection) → its network and pool event callbacks
        self._resource_ids: dict[int, tuple[int, int]] = {}

    def _open_locked(self) -> None:
        start_event_loop()
        super()._open_locked()
        conn = self._conn
        try:
            ids = self._callback_ids.setdefault(id(conn), [])
            ids.append(conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None))
            if self._on_agent is not None:
                ids.append(conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._agent, None))
            self._resource_ids[id(conn)] = (
                conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE,
                                             self._network_lifecycle, None),
                conn.storagePoolEventRegisterAny(
                    None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, self._pool_lifecycle,
                    None))
            conn.registerCloseCallback(self._closed, None)
        except libvirt.libvirtError as exc:
            self._conn = None
            self._lines.reset(None)
            self._forget(conn)
            raise as_connection_lost(classify(exc, f"cannot watch events on {self.uri}")) from exc
        self._on_open()

    def _forget(self, conn: Any) -> None:
        """Deregister our callbacks from `conn` and close it; errors of a dead one are moot."""
        undos = [partial(conn.domainEventDeregisterAny, callback_id)
                 for callback_id in self._callback_ids.pop(id(conn), [])]
        network_id, pool_id = self._resource_ids.pop(id(conn), (None, None))
        if network_id is not None:
            undos.append(partial(conn.networkEventDeregisterAny, network_id))
        if pool_id is not None:
            undos.append(partial(conn.storagePoolEventDeregisterAny, pool_id))
        for undo in (*undos, conn.unregisterCloseCallback, conn.close):
            try:
                undo()
            except (libvirt.libvirtError, KeyError, TypeError):
                pass

    def _lifecycle(self, conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        kind = _LIFECYCLE_EVENTS[event] if 0 <= event < len(_LIFECYCLE_EVENTS) else str(event)
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        self._on_event(name, kind)

    def _agent(self, conn: Any, dom: Any, state: int, _reason: int, _opaque: Any) -> None:
        if self._on_agent is None:
            return
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        self._on_agent(name, state == _AGENT_CONNECTED)

    def _network_lifecycle(self, conn: Any, network: Any, event: int, _detail: int,
                           _opaque: Any) -> None:
        self._resource_event("network", network, _NETWORK_EVENTS, event)

    def _pool_lifecycle(self, conn: Any, pool: Any, event: int, _detail: int,
                        _opaque: Any) -> None:
        self._resource_event("pool", pool, _POOL_EVENTS, event)

    def _resource_event(self, kind: str, handle: Any, names: tuple[str, ...],
                        event: int) -> None:
        what = names[event] if 0 <= event < len(names) else str(event)
        try:
            name = handle.name()
        except libvirt.libvirtError:
            return
        self._on_event(f"{kind}:{name}", what)

    def _closed(self, conn: Any, reason: int, _opaque: Any) -> None:
        if conn is self._conn:  # not one we closed on purpose
            self._on_close(_CLOSE_REASONS.get(reason, str(reason)))

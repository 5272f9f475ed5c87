"""The libvirt edge of the service on test:///default (libvirt's in-process test driver,
which delivers lifecycle events like the real one): events reach the callback as
(name, event), every reopened connection is watched again, and reconnect() does nothing
while the connection is fine."""

from __future__ import annotations

import re
import threading

import pytest

from controller.errors import ConnectionLost
from controller.virt.events import WatchedConnection, event_loop_alive

XML = """<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>"""


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.opened = 0
        self.closed: list[str] = []
        self._cond = threading.Condition()

    def event(self, name: str, kind: str) -> None:
        with self._cond:
            self.seen.append((name, kind))
            self._cond.notify_all()

    def opened_one(self) -> None:
        self.opened += 1

    def wait_for(self, wanted: tuple[str, str]) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: wanted in self.seen, 30), self.seen


def test_lifecycle_events_reach_the_callback_on_every_connection() -> None:
    events = Events()
    connection = WatchedConnection("test:///default", on_event=events.event,
                                   on_open=events.opened_one, on_close=events.closed.append)
    connection.connect()
    try:
        assert event_loop_alive()
        assert events.opened == 1 and connection.alive()
        first = connection.current()
        dom = first.defineXML(XML.format(name="t-events-a"))
        events.wait_for(("t-events-a", "defined"))
        dom.create()
        events.wait_for(("t-events-a", "started"))
        dom.destroy()
        events.wait_for(("t-events-a", "stopped"))
        dom.undefine()
        events.wait_for(("t-events-a", "undefined"))

        connection.reconnect()  # the connection is fine: nothing to do
        assert connection.current() is first and events.opened == 1

        connection.reconnect(failed=first)  # the caller saw this one fail: a new one
        second = connection.current()
        assert second is not first and events.opened == 2
        second.defineXML(XML.format(name="t-events-b"))
        events.wait_for(("t-events-b", "defined"))
        # Closing on purpose is not a lost connection.
        assert events.closed == []
    finally:
        connection.close()
    assert connection.current() is None and not connection.alive()


def test_a_failed_connect_reports_connection_lost() -> None:
    connection = WatchedConnection("qemu+unix:///system?socket=/nonexistent/sock",
                                   on_event=lambda *_: None, on_open=lambda: None,
                                   on_close=lambda _: None)
    with pytest.raises(ConnectionLost,
                       match=re.escape("cannot connect to qemu+unix:///system?socket=")):
        connection.connect()
    assert connection.current() is None


def test_network_and_pool_events_reach_the_callback_as_their_keys() -> None:
    """Network and storage pool lifecycle events arrive as "network:NAME" and "pool:NAME",
    the keys the service's workers reconcile them by, and the reconnect watches again."""
    events = Events()
    connection = WatchedConnection("test:///default", on_event=events.event,
                                   on_open=events.opened_one, on_close=events.closed.append)
    connection.connect()
    try:
        conn = connection.current()
        network = conn.networkDefineXML(
            "<network><name>t-events-net</name><bridge name='t-evbr0'/></network>")
        events.wait_for(("network:t-events-net", "defined"))
        network.create()
        events.wait_for(("network:t-events-net", "started"))
        network.destroy()
        events.wait_for(("network:t-events-net", "stopped"))
        network.undefine()
        events.wait_for(("network:t-events-net", "undefined"))
        pool = conn.storagePoolDefineXML(
            "<pool type='dir'><name>t-events-pool</name><target><path>/t-events-pool</path>"
            "</target></pool>", 0)
        events.wait_for(("pool:t-events-pool", "defined"))
        pool.create(0)
        events.wait_for(("pool:t-events-pool", "started"))
        pool.destroy()
        events.wait_for(("pool:t-events-pool", "stopped"))
        pool.undefine()
        events.wait_for(("pool:t-events-pool", "undefined"))
        assert not [name for name, _ in events.seen
                    if name.startswith("t-events") and ":" not in name]
    finally:
        connection.close()

"""A Connection's call slots (controller.virt.lines.Lines), on test:/// connections:
at most 4 calls in flight per connection, a second connection opened when the workers
want more, and a replaced connection closed only once no call waits on it.
(tests/reliability/test_call_slots.py shows why, on a real libvirtd.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from controller.virt.lines import CALLS_PER_CONNECTION, Line, Lines, connections_for
from tests.support.waiting import wait_until


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    conns: list[Any] = []
    yield conns
    for conn in conns:
        if conn._o is not None:  # not closed by the code under test
            conn.close()


def opener(opened: list[Any]) -> Any:
    def open_one() -> Any:
        conn = libvirt.open("test:///default")
        opened.append(conn)
        return conn
    return open_one


def test_connections_for_workers() -> None:
    assert [connections_for(w) for w in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]


def test_more_calls_than_one_connection_takes_go_over_a_second(opened: list[Any]) -> None:
    lines = Lines(2, opener(opened), "test:///default")
    first = opener(opened)()
    lines.reset(first)
    held = [lines.take() for _ in range(CALLS_PER_CONNECTION + 1)]  # the last may wait
    counts = lines.in_flight()
    assert len(counts) == 2 and sum(counts) == 5 and max(counts) <= CALLS_PER_CONNECTION
    for line in held:
        assert line is not None
        lines.give_back(line, failed=False)
    assert lines.in_flight() == [0, 0]


def test_the_second_connection_opens_once_the_first_is_half_full(opened: list[Any]) -> None:
    lines = Lines(2, opener(opened), "test:///default")
    lines.reset(opener(opened)())
    one, two = lines.take(), lines.take()
    assert lines.in_flight() == [2]
    three = lines.take()  # finds it half full: the second one opens in the background
    wait_until(lambda: len(lines.in_flight()) == 2, 10, what="a second connection")
    four = lines.take()
    assert lines.in_flight() == [3, 1], "a call by name did not take the least busy"
    for line in (one, two, three, four):
        assert line is not None
        lines.give_back(line, failed=False)


def test_no_more_connections_than_allowed(opened: list[Any]) -> None:
    lines = Lines(1, opener(opened), "test:///default")
    lines.reset(opener(opened)())
    held = [lines.take() for _ in range(CALLS_PER_CONNECTION)]
    got: list[Line | None] = []
    waiter = threading.Thread(target=lambda: got.append(lines.take()), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got, "a fifth call went ahead on a full connection"
    assert held[0] is not None
    lines.give_back(held[0], failed=False)
    waiter.join(5)
    assert got and got[0] is not None and got[0].conn is held[0].conn
    assert len(opened) == 1


def test_a_handle_waits_for_its_own_connection(opened: list[Any]) -> None:
    lines = Lines(2, opener(opened), "test:///default")
    first = opener(opened)()
    lines.reset(first)
    held = [lines.take(on=first) for _ in range(CALLS_PER_CONNECTION)]
    held.append(lines.take())  # waits for a second connection
    assert lines.in_flight() == [4, 1]
    got: list[Line | None] = []
    waiter = threading.Thread(target=lambda: got.append(lines.take(on=first)), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "a call on the first connection's handle took another's slot"
    on_first = next(line for line in held if line and line.conn is first)
    lines.give_back(on_first, failed=False)
    waiter.join(5)
    assert got and got[0] is not None and got[0].conn is first


def test_a_replaced_connection_is_closed_when_its_last_call_returns(
        opened: list[Any]) -> None:
    lines = Lines(1, opener(opened), "test:///default")
    old = opener(opened)()
    lines.reset(old)
    busy = lines.take()
    closed: list[Any] = []
    for line in lines.reset(opener(opened)()):
        lines.retire(line, closed.append)
    assert closed == [], "closed under a call still in flight"
    assert busy is not None
    lines.give_back(busy, failed=False)
    assert closed == [old]


def test_an_idle_replaced_connection_is_closed_at_once(opened: list[Any]) -> None:
    lines = Lines(1, opener(opened), "test:///default")
    old = opener(opened)()
    lines.reset(old)
    closed: list[Any] = []
    for line in lines.reset(None):
        lines.retire(line, closed.append)
    assert closed == [old]
    with pytest.raises(Exception, match="not connected"):
        lines.take()


def test_test_driver_uris_never_get_a_second_connection() -> None:
    from controller.virt import Connection

    connection = Connection("test:///default", connections=3)
    connection.connect()
    try:
        held = [connection._lines.take() for _ in range(CALLS_PER_CONNECTION)]
        got: list[Line | None] = []
        waiter = threading.Thread(target=lambda: got.append(connection._lines.take()),
                                  daemon=True)
        waiter.start()
        wait_until(lambda: connection._lines._cannot_grow, 5, what="the refused open")
        assert connection.in_flight() == [4]
        assert held[0] is not None
        connection._lines.give_back(held[0], failed=False)
        waiter.join(5)
        assert not waiter.is_alive()
        assert connection.in_flight() == [4]  # three held here, one by the waiter
        for line in [*held[1:], *got]:
            assert line is not None
            connection._lines.give_back(line, failed=False)
    finally:
        connection.close()


def test_a_given_up_connection_is_replaced_once_its_calls_return() -> None:
    from controller.virt import Connection

    connection = Connection("test:///default")
    connection.connect()
    first = connection.current()
    stuck = connection._lines.take()  # a call that has not returned
    connection.give_up()
    assert not connection.alive()
    replacing = threading.Thread(target=connection.reconnect, daemon=True)
    replacing.start()
    replacing.join(0.3)
    assert replacing.is_alive(), "a new connection was opened beside a call in flight"
    assert stuck is not None
    connection._lines.give_back(stuck, failed=False)
    replacing.join(10)
    assert not replacing.is_alive()
    assert connection.alive() and connection.current() is not first
    assert first._o is None, "the replaced connection was not closed"
    connection.close()

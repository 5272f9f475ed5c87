"""A lost connection's calls and a reconnect (controller.virt.connection, sockets.py), on
test:/// connections and a real TCP socket on 127.0.0.1: the deadline on unacknowledged
data that a remote libvirt connection's socket gets, and a reconnect that waits for the
lost connection's calls without its lock, for a bounded time. (tests/multihost/
test_cut_calls.py shows why, with a real libvirtd whose link is cut.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from controller.errors import ConnectionLost
from controller.virt.connection import Connection
from controller.virt.sockets import bound_unacknowledged, libvirt_peer, unacknowledged_limit
from tests.support.waiting import wait_until


@pytest.mark.parametrize(("uri", "peer"), [
    ("qemu+tcp://10.1.2.3/system", ("10.1.2.3", 16509)),
    ("qemu+tcp://kvm-1:1234/system", ("kvm-1", 1234)),
    ("qemu+tls://kvm-1/system", ("kvm-1", 16514)),
    ("qemu://kvm-1/system", ("kvm-1", 16514)),  # a remote URI without a transport: TLS
    ("qemu+ssh://root@kvm-1/system", None),
    ("qemu+unix:///system?socket=/tmp/x", None),
    ("qemu:///system", None),
    ("test:///default", None),
    (None, None),
])
def test_which_uris_have_a_tcp_socket(uri: str | None, peer: tuple[str, int] | None) -> None:
    assert libvirt_peer(uri) == peer


def test_the_limit_comes_before_keepalives_death() -> None:
    # keepalive's death: interval x count s at the earliest after the host's last packet;
    # the first data sent into a cut link leaves up to one interval after that packet
    for interval, count in ((5, 3), (2, 2), (1, 5), (10, 2)):
        assert interval + unacknowledged_limit(interval, count) < interval * (count + 1)
        assert unacknowledged_limit(interval, count) < interval * count


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, int]]:
    """A connected client socket on 127.0.0.1 and its server's port."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        yield client, server.getsockname()[1]
    finally:
        for sock in (client, accepted, server):
            sock.close()


def test_the_sockets_to_the_libvirt_host_get_the_deadline(
        tcp_pair: tuple[socket.socket, int]) -> None:
    client, port = tcp_pair
    option = socket.TCP_USER_TIMEOUT
    assert client.getsockopt(socket.IPPROTO_TCP, option) == 0
    assert bound_unacknowledged(f"qemu+tcp://127.0.0.1:{port}/system", seconds=2.5) >= 1
    assert client.getsockopt(socket.IPPROTO_TCP, option) == 2500
    client.sendall(b"still open")  # our copy of the socket was closed, not the socket


def test_sockets_to_other_ports_are_left_alone(tcp_pair: tuple[socket.socket, int]) -> None:
    client, port = tcp_pair
    assert bound_unacknowledged(f"qemu+tcp://127.0.0.1:{port + 1}/system", seconds=2) == 0
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


# --- a reconnect while a call is still in flight on the lost connection ----------------------

@pytest.fixture
def connection() -> Iterator[Connection]:
    # keepalive is refused by the test driver, but it sets how long a reconnect waits
    conn = Connection("test:///default", keepalive=(1, 1))
    conn.connect()
    try:
        yield conn
    finally:
        conn.close()


class HeldCall:
    """A call in flight on the connection until `release` (a host that stopped answering)."""

    def __init__(self, connection: Connection):
        self.started = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(connection,), daemon=True)
        self._thread.start()
        assert self.started.wait(10)

    def _hold(self, connection: Connection) -> None:
        with connection.call("cannot hold a call"):
            self.started.set()
            self._release.wait(60)

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def test_a_reconnect_waits_a_bounded_time_for_the_lost_calls_then_opens_beside_them(
        connection: Connection) -> None:
    old = connection.current()
    held = HeldCall(connection)
    connection.give_up()
    started = time.monotonic()
    try:
        connection.reconnect()
        took = time.monotonic() - started
        # it waited for the call, but not for as long as the call lasts (60 s)
        assert connection.drain_limit() <= took < connection.drain_limit() + 20
        assert connection.current() is not old and connection.alive()
        assert old.isAlive()  # not closed under the call still in flight on it
    finally:
        held.release()
    wait_until(lambda: old._o is None, 10, what="the old connection closed after its call")


def test_close_does_not_wait_for_a_reconnect_that_waits_for_lost_calls(
        connection: Connection) -> None:
    held = HeldCall(connection)
    connection.give_up()
    errors: list[ConnectionLost] = []

    def reconnect() -> None:
        try:
            connection.reconnect()
        except ConnectionLost as error:
            errors.append(error)

    thread = threading.Thread(target=reconnect, daemon=True)
    thread.start()
    wait_until(lambda: connection.current() is None, 10, what="the reconnect to start")
    closer = threading.Thread(target=connection.close, daemon=True)
    closer.start()  # with the lock held across the wait, this waited for the held call
    closer.join(10)
    assert not closer.is_alive(), "close() waited for the reconnect"
    held.release()
    thread.join(10)
    assert not thread.is_alive()
    assert errors and "closed" in str(errors[0])  # and it opened nothing
    assert connection.current() is None

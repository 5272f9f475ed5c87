"""Calls in flight per connection.

libvirtd stops reading a connection that has `max_client_requests` (5) calls in flight,
and with keepalive on (the service, several hosts) it then drops the connection once its
pings go unanswered. Here five calls that block inside libvirtd (each on the monitor of a
guest whose QEMU is stopped with SIGSTOP) cost a plain connection its life, while a
`Hypervisor` keeps at most four in flight per connection and takes a second connection
for more. The daemon is a private one whose keepalive gives up after about 3 s instead
of 30 s.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import libvirt
import pytest

from controller.virt import Hypervisor
from controller.virt.loop import start_event_loop
from tests.support.domains import MIB, define_unmanaged
from tests.support.sandbox import Sandbox
from tests.support.waiting import wait_until

from .conftest import FIGURES


@pytest.fixture(scope="module")
def strict_daemon() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("needs root for a private libvirtd")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start_event_loop()  # keepalive needs it, before any connection is opened
    daemon = Sandbox(conf="keepalive_interval = 1\nkeepalive_count = 2\n")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


class FrozenGuests:
    """Running tiny guests whose QEMU is stopped, so a monitor call on them blocks."""

    def __init__(self, daemon: Sandbox, names: list[str], virt_type: str):
        self.daemon = daemon
        self.names = names
        self.conn = libvirt.open(daemon.uri)
        self.pids: list[int] = []
        for name in names:
            define_unmanaged(self.conn, name, virt_type, start=True)
            pid_file = daemon.base / "root/run/libvirt/qemu" / f"{name}.pid"
            self.pids.append(int(pid_file.read_text()))
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        self.thaw()

        def remove_one(name: str) -> None:
            try:
                dom = self.conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass

        with ThreadPoolExecutor(len(self.names)) as pool:  # destroys wait on QEMU's exit
            list(pool.map(remove_one, self.names))
        self.conn.close()


@pytest.fixture
def frozen(strict_daemon: Sandbox, prefix: str, virt_type: str
           ) -> Iterator[Callable[[int], FrozenGuests]]:
    made: list[FrozenGuests] = []

    def make(count: int) -> FrozenGuests:
        names = [f"{prefix}f{len(made)}-{index}" for index in range(count)]
        made.append(FrozenGuests(strict_daemon, names, virt_type))
        return made[-1]

    yield make
    for guests in made:
        guests.remove()


def in_threads(call: Callable[[str], None], names: list[str]) -> tuple[list[threading.Thread],
                                                                       dict[str, str]]:
    """Run call(name) for each name in a thread of its own; return the threads and, once
    they end, each name's "ok" or error."""
    results: dict[str, str] = {}

    def run(name: str) -> None:
        try:
            call(name)
            results[name] = "ok"
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            results[name] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a call still blocked after its guest was thawed"


@pytest.mark.parametrize("connections", [1, 2])
def test_five_blocked_calls_drop_a_plain_connection_but_not_ours(
        strict_daemon: Sandbox, frozen: Callable[[int], FrozenGuests], connections: int
) -> None:
    plain_frozen, our_frozen = frozen(5), frozen(5)
    plain_guests, our_guests = plain_frozen.names, our_frozen.names
    # The control: five calls at once on one plain connection with keepalive.
    plain = libvirt.open(strict_daemon.uri)
    plain.setKeepAlive(1, 2)
    plain_threads, plain_results = in_threads(
        lambda name: plain.lookupByName(name).setMemoryFlags(
            60 * MIB, libvirt.VIR_DOMAIN_AFFECT_LIVE), plain_guests)
    # Ours: the same five calls through the Hypervisor.
    hypervisor = Hypervisor.open(strict_daemon.uri, keepalive=(1, 2), connections=connections)
    ours = hypervisor.connection
    ours.connect()
    our_threads, our_results = in_threads(
        lambda name: hypervisor.steps.set_memory_live(name, 60 * MIB), our_guests)
    try:
        want = [4] if connections == 1 else [4, 1]
        wait_until(lambda: ours.in_flight() == want, 20,
                   what=f"our calls in flight per connection to be {want}")
        wait_until(lambda: not plain.isAlive(), 30,
                   what="libvirtd to drop the plain connection with five calls in flight")
        assert ours.alive(), "our connection was dropped too"
        assert ours.in_flight() == want
    finally:
        plain_frozen.thaw()
        our_frozen.thaw()
    join(our_threads)
    join(plain_threads)
    assert our_results == {name: "ok" for name in our_guests}
    assert all(result != "ok" for result in plain_results.values()), plain_results
    assert ours.alive()
    plain_error = next(iter(plain_results.values()))
    FIGURES.setdefault("calls in flight per connection", []).append(
        f"five calls blocked inside libvirtd: a plain connection was dropped "
        f"({plain_error[:70]}); ours, {connections} connection(s) allowed, had {want} in "
        f"flight, stayed up and all five completed")
    ours.close()
    plain.close()

"""sd_notify against a NOTIFY_SOCKET we bind ourselves (a path and an abstract name), and
the metrics endpoint's address parsing and HTTP answers."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.metrics import Metrics, parse_address
from controller.notify import Notifier
from tests.support.http import http_get


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket and the NOTIFY_SOCKET value that reaches it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        address = f"@reconcile-test-{secrets.token_hex(6)}"
        sock.bind("\0" + address[1:])
    sock.settimeout(10)
    yield address, sock
    sock.close()


def _receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive_as_systemd_expects(receiver: tuple[str, socket.socket]) -> None:
    address, sock = receiver
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready("2 in sync, 0 pending, 0 failed")
    assert _receive(sock) == "READY=1\nSTATUS=2 in sync, 0 pending, 0 failed"
    assert notifier.watchdog()
    assert _receive(sock) == "WATCHDOG=1"
    assert notifier.status("1 in sync,\n 1 pending, 0 failed")  # always one line
    assert _receive(sock) == "STATUS=1 in sync, 1 pending, 0 failed"
    assert notifier.stopping()
    assert _receive(sock) == "STOPPING=1"
    notifier.close()


def test_status_is_sent_only_when_it_changes(receiver: tuple[str, socket.socket]) -> None:
    address, sock = receiver
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.status("a")
    assert not notifier.status("a")
    assert notifier.status("b")
    assert [_receive(sock), _receive(sock)] == ["STATUS=a", "STATUS=b"]
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)  # nothing else was sent
    notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval is None


def test_a_relative_notify_socket_is_ignored() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_receiver_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled
    assert not notifier.ready()
    assert not notifier.stopping()
    notifier.close()


def test_a_receiver_that_stops_reading_never_blocks_the_sender(
        receiver: tuple[str, socket.socket]) -> None:
    address, _sock = receiver  # bound, never read: its queue fills up
    notifier = Notifier({"NOTIFY_SOCKET": address})
    sent: list[bool] = []
    sender = threading.Thread(target=lambda: sent.extend(
        notifier.status(f"{index} in sync") for index in range(2000)))
    sender.start()
    sender.join(timeout=30)
    assert not sender.is_alive(), "sd_notify blocked on a full NOTIFY_SOCKET"
    assert sent[0] is True and sent[-1] is False  # the first ones went, the rest were dropped
    notifier.close()


@pytest.mark.parametrize(("environ", "interval"), [
    ({"WATCHDOG_USEC": "60000000"}, 30.0),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_what_systemd_asks(environ: dict[str, str],
                                                        interval: float | None) -> None:
    assert Notifier(environ).watchdog_interval == interval


# --- metrics -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "address"), [
    ("9100", ("127.0.0.1", 9100)),
    (":9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:9100", ("::1", 9100)),
])
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "host:", "host:port", "70000", ":-1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics-address"):
        parse_address(text)


def test_metrics_and_healthz_over_http() -> None:
    health = [(True, "ok")]
    metrics = Metrics(vm_counts=lambda: {"in_sync": 2, "failed": 1}, queue_depth=lambda: 3)
    host, port = metrics.serve("127.0.0.1:0", lambda: health[-1])
    try:
        base = f"http://{host}:{port}"
        metrics.connected(True)
        metrics.connected(False, host="kvm-2")
        metrics.reconciled("converged", 0.3)
        metrics.reconciled("unchanged", 0.01)
        metrics.step("define", "done")
        metrics.step("start", "failed", host="kvm-2")
        code, body = http_get(base + "/metrics")
        assert code == 200
        lines = set(body.splitlines())
        for expected in (
            'reconcile_reconciles_total{host="default",result="converged"} 1.0',
            'reconcile_reconciles_total{host="default",result="unchanged"} 1.0',
            'reconcile_steps_total{action="define",host="default",outcome="done"} 1.0',
            'reconcile_steps_total{action="start",host="kvm-2",outcome="failed"} 1.0',
            'reconcile_vms{state="in_sync"} 2.0',
            'reconcile_vms{state="out_of_sync"} 0.0',
            'reconcile_vms{state="failed"} 1.0',
            "reconcile_queue_depth 3.0",
            'reconcile_libvirt_connected{host="default"} 1.0',
            'reconcile_libvirt_connected{host="kvm-2"} 0.0',
            "reconcile_pass_duration_seconds_count 2.0",
        ):
            assert expected in lines, expected
        assert http_get(base + "/healthz") == (200, "ok\n")
        health.append((False, "libvirt unreachable"))
        assert http_get(base + "/healthz") == (503, "libvirt unreachable\n")
        assert http_get(base + "/other")[0] == 404
    finally:
        metrics.close()

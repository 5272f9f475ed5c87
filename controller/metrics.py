"""The service's Prometheus metrics and /healthz, served on --metrics-address.

Used by service.py. Off by default: then the service records into `Recorder`,
whose methods do nothing, and prometheus_client is not even imported.

    reconcile_reconciles_total{host,result}     VM passes by result (converged, failed, ...)
    reconcile_steps_total{host,action,outcome}  libvirt steps by action; outcome done | failed
    reconcile_pass_duration_seconds             one VM's observe → plan → execute, histogram
    reconcile_vms{state}                        VMs in_sync | out_of_sync | failed, now
    reconcile_queue_depth                       names queued for a worker, now
    reconcile_libvirt_connected{host}           1 while the host's libvirt connection is up
    reconcile_vm_ready{host,name,readiness}     1 when a running VM is ready by spec.readiness
    reconcile_vm_address_info{host,name,address,prefix,mac,source}   its addresses (always 1)
    reconcile_vm_agent_up{host,name}            1 while its guest agent answers guest-ping
      (these three from the service's guest watch, service/guests.py)

`host` is the host's name from hosts.yaml, or "default" for the -c connection.

GET /healthz answers 200 "ok" while libvirt is connected and the service loop
is alive, else 503 with the reason.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

VM_STATES = ("in_sync", "out_of_sync", "failed")
#: Health check: (healthy, reason).
Health = Callable[[], tuple[bool, str]]


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[V6]:PORT', ':PORT' or 'PORT'; no host means 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--metrics-address {text!r}: the port is not a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"--metrics-address {text!r}: the port is out of range")
    return host, number


def _count_of(counts: Callable[[], dict[str, int]], state: str) -> Callable[[], float]:
    return lambda: float(counts().get(state, 0))


class Recorder:
    """Where the service records what it does; this base records nothing."""

    def reconciled(self, result: str, seconds: float, host: str = "default") -> None:
        """One VM pass finished with `result` after `seconds`."""

    def step(self, action: str, outcome: str, host: str = "default") -> None:
        """One libvirt step ended: outcome 'done' or 'failed'."""

    def connected(self, up: bool, host: str = "default") -> None:
        """A host's libvirt connection went up or down."""

    def close(self) -> None:
        """Stop serving."""


class Metrics(Recorder):
    """Prometheus metrics in a registry of their own, served over HTTP with /healthz."""

    def __init__(self, *, vm_counts: Callable[[], dict[str, int]],
                 queue_depth: Callable[[], int]):
        import prometheus_client as prom  # only when metrics are asked for

        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self._reconciles = prom.Counter("reconcile_reconciles", "VM passes by result",
                                        ["host", "result"], registry=self.registry)
        self._steps = prom.Counter("reconcile_steps", "libvirt steps by action and outcome",
                                   ["host", "action", "outcome"], registry=self.registry)
        self._duration = prom.Histogram(
            "reconcile_pass_duration_seconds", "One VM's observe, plan and execute",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry)
        vms = prom.Gauge("reconcile_vms", "VMs by state", ["state"], registry=self.registry)
        for state in VM_STATES:
            vms.labels(state=state).set_function(_count_of(vm_counts, state))
        depth = prom.Gauge("reconcile_queue_depth", "VM names queued for a worker",
                           registry=self.registry)
        depth.set_function(lambda: float(queue_depth()))
        self._connected = prom.Gauge("reconcile_libvirt_connected",
                                     "1 while the host's libvirt connection is up",
                                     ["host"], registry=self.registry)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def reconciled(self, result: str, seconds: float, host: str = "default") -> None:
        self._reconciles.labels(host=host, result=result).inc()
        self._duration.observe(seconds)

    def step(self, action: str, outcome: str, host: str = "default") -> None:
        self._steps.labels(host=host, action=action, outcome=outcome).inc()

    def connected(self, up: bool, host: str = "default") -> None:
        self._connected.labels(host=host).set(1 if up else 0)

    def exposition(self) -> bytes:
        return bytes(self._prom.generate_latest(self.registry))

    def serve(self, address: str, health: Health) -> tuple[str, int]:
        """Serve /metrics and /healthz on `address` in a daemon thread; return where."""
        host, port = parse_address(address)
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, metrics.exposition(), self._prom_type())
                elif path == "/healthz":
                    healthy, reason = health()
                    self._reply(200 if healthy else 503, (reason + "\n").encode())
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n")

            @staticmethod
            def _prom_type() -> str:
                return str(metrics._prom.CONTENT_TYPE_LATEST)

            def _reply(self, code: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics: " + format, *args)

        server_class = ThreadingHTTPServer
        if ":" in host:
            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6
            server_class = V6Server
        server_class.daemon_threads = True
        self._server = server_class((host, port), Handler)
        bound = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

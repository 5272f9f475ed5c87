"""The service as others see it: /healthz and the Prometheus metrics.

Used by service.py; reads the service's state, never changes it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..metrics import Metrics
from .guests import GuestCollector
from .states import FAILED, IN_SYNC, OUT_OF_SYNC
from .workers import metric_host

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("controller.service")


class Health:
    def __init__(self, service: Service):
        self.service = service

    def serve(self, address: str) -> Metrics:
        """Serve /metrics and /healthz on `address`; the metrics recorder to use."""
        service = self.service

        def vm_counts() -> dict[str, int]:
            counts = service.states.counts(service.queue.queued() | service.queue.processing())
            return {IN_SYNC: counts.get(IN_SYNC, 0), FAILED: counts.get(FAILED, 0),
                    OUT_OF_SYNC: counts.get(OUT_OF_SYNC, 0) + counts.get("pending", 0)}

        metrics = Metrics(vm_counts=vm_counts, queue_depth=lambda: len(service.queue))
        metrics.registry.register(GuestCollector(service.guests))
        try:
            host, port = metrics.serve(address, self.check)
        except ValueError as error:
            raise UsageError(str(error)) from error
        except OSError as error:
            raise UsageError(f"cannot serve metrics on {address}: "
                             f"{error.strerror or error}") from error
        for name in service.hosts.scope(service.manifests.current(), service.only_host):
            metrics.connected(False, metric_host(name))
        log.info("metrics on http://%s:%d/metrics and /healthz",
                 f"[{host}]" if ":" in host else host, port)
        return metrics

    def check(self) -> tuple[bool, str]:
        """Healthy while the loop runs and some host is connected; with several hosts, one
        host down is the host's trouble, reported in the reason, not the service's."""
        service = self.service
        if not service.connected:
            if not service.hosts.several:
                return False, f"libvirt unreachable ({service.uri_text})"
            return False, f"no host reachable: {', '.join(service.unreachable())}"
        stale = time.monotonic() - service.heartbeat
        if stale > 3 * 5.0:
            return False, f"service loop stuck for {stale:.0f}s"
        if not service.alive():
            return False, "a worker or the libvirt event thread died"
        down = service.unreachable()
        return True, f"ok; unreachable: {', '.join(down)}" if down else "ok"

"""The service: `reconcile` without --once.

    service.py      the main loop: composition, signals, READY, shutdown
    connections.py  each host's connection: connect, notice a loss, back off
    triggers.py     manifest changes, libvirt events and resyncs → names on the queue
    workers.py      names → Reconciler.reconcile → what the outcome's cause says
    states.py       what is known of each name now; the STATUS line
    health.py       /healthz and the metrics
"""

from .service import Service, run_service

__all__ = ["Service", "run_service"]

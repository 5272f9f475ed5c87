"""libvirt's default event loop, run by one daemon thread per process.

libvirt delivers events, and runs keepalive (which notices a host that stopped
answering), only through an event loop registered before the connection was
opened and kept running by a thread.
"""

from __future__ import annotations

import logging
import threading
import time

import libvirt

log = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop: threading.Thread | None = None


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once per process.

    Must run before the connections that should deliver events are opened.
    """
    global _event_loop
    with _event_loop_lock:
        if _event_loop is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _event_loop = threading.Thread(target=_run_event_loop, name="libvirt-events",
                                       daemon=True)
        _event_loop.start()


def event_loop_alive() -> bool:
    return _event_loop is not None and _event_loop.is_alive()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:  # one bad iteration; the loop itself is fine
            log.debug("libvirt event loop: %s", exc)
            time.sleep(0.1)

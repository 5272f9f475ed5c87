"""`noop.py`'s work with libvirt's event loop running, as a service's connection has it
(events, keepalive): not a floor the targets are judged by, but what the same calls
cost a client that must keep the event loop. With an event loop registered, libvirt's
client hands each call's I/O back and forth with the loop's thread.

    python benchmarks/floors/noop_events.py URI      prints the number of domains read
"""

from __future__ import annotations

import sys
import threading

import libvirt
from noop import main


def _loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


if __name__ == "__main__":
    libvirt.virEventRegisterDefaultImpl()  # before the connection is opened
    threading.Thread(target=_loop, daemon=True).start()
    sys.exit(main(sys.argv[1:]))

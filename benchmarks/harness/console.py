"""When each guest's serial console first shows a line: the boot benchmark's clock.

`sections/storage_boot.py` starts a `ConsoleWatch` over the guests' names *before* it
launches the run that creates them (`reconcile --once` or the floor), so that both are
timed from the same instant and watched the same way: one thread per guest waits for the
domain to be running, opens its console through libvirt (`virDomainOpenConsole`, the
`<console type='pty'>` both define) and reads it until every marker has appeared.
`wait` returns, per guest, the seconds from `started` to each marker (None if not seen).
Only reads: the guests are created and removed by the caller.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import libvirt

from harness.runs import Json

#: How often a watcher looks for its domain before the run has started it.
_POLL = 0.1


class ConsoleWatch:
    """`until`: the labels whose markers, once every guest showed them, end `wait` (None:
    every marker); the other markers count only when they came first."""

    def __init__(self, uri: str, names: Sequence[str], markers: Mapping[str, str],
                 until: Sequence[str] | None = None):
        self.uri, self.markers, self.until = uri, dict(markers), until
        self.started = time.perf_counter()
        self.seen: dict[str, dict[str, float]] = {name: {} for name in names}
        self.errors: dict[str, str] = {}
        self.tails: dict[str, str] = {name: "" for name in names}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(name,), daemon=True,
                                          name=f"console-{name}") for name in names]
        for thread in self._threads:
            thread.start()

    def _watch(self, name: str) -> None:
        conn = libvirt.open(self.uri)
        try:
            stream = self._console(conn, name)
            if stream is None:
                return
            text = ""
            self.errors.pop(name, None)
            while not self._stop.is_set() and not self._seen_enough(self.seen[name]):
                chunk = stream.recv(4096)
                if not isinstance(chunk, bytes) or not chunk:
                    self.errors[name] = "the console closed"
                    return
                at = time.perf_counter() - self.started
                text = (text + chunk.decode("utf-8", errors="replace"))[-8192:]
                for label, marker in self.markers.items():
                    if label not in self.seen[name] and marker in text:
                        self.seen[name][label] = at
                self.tails[name] = text[-2000:]
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
        except libvirt.libvirtError as exc:
            self.errors[name] = str(exc)
        finally:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def _console(self, conn: Any, name: str) -> Any:
        """The console stream of `name` once it runs. A domain being started is active
        before QEMU has its PTY ("is not using a PTY", "PTY device is not yet assigned"):
        opening is retried until it works."""
        while not self._stop.is_set():
            try:
                dom = conn.lookupByName(name)
                if dom.isActive():
                    stream = conn.newStream(0)
                    try:
                        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
                    except libvirt.libvirtError:
                        with contextlib.suppress(libvirt.libvirtError):
                            stream.abort()
                        raise
                    return stream
            except libvirt.libvirtError as exc:
                self.errors[name] = str(exc)  # the last one, if it never opens
            time.sleep(_POLL)
        return None

    def stop(self) -> None:
        """The watchers stop reading (each closes its connection): the caller's cleanup."""
        self._stop.set()

    def _seen_enough(self, seen: Mapping[str, float]) -> bool:
        return all(label in seen for label in (self.until or self.markers))

    def done(self) -> bool:
        return all(self._seen_enough(seen) for seen in self.seen.values())

    def wait(self, timeout: float) -> dict[str, Json]:
        """Until every guest showed every marker (or the `until` ones), or `timeout`
        seconds from `started`."""
        deadline = self.started + timeout
        while not self.done() and time.perf_counter() < deadline:
            time.sleep(0.5)
        self._stop.set()
        return {name: {label: seen.get(label) for label in self.markers}
                | ({"error": self.errors[name]} if name in self.errors else {})
                for name, seen in self.seen.items()}

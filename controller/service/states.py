"""What the service knows of each VM name now: in sync, out of sync, failed, orphan, and
the last thing it said about it (so a repeated message is logged once).

Written by the workers and the resync, read by STATUS, /healthz and the metrics.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from ..model import Result

log = logging.getLogger("controller.service")

IN_SYNC, OUT_OF_SYNC, FAILED, ORPHAN = "in_sync", "out_of_sync", "failed", "orphan"
STATE_OF = {
    Result.UNCHANGED: IN_SYNC, Result.CONVERGED: IN_SYNC, Result.PRUNED: IN_SYNC,
    Result.RESTART_PENDING: OUT_OF_SYNC, Result.SUSPENDED: OUT_OF_SYNC,
    Result.PLANNED: OUT_OF_SYNC, Result.FAILED: FAILED, Result.CONFLICT: FAILED,
}


class VMStates:
    """Name → state, and name → the last message logged about it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._said: dict[str, str] = {}

    def put(self, name: str, state: str) -> None:
        with self._lock:
            self._states[name] = state

    def forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)
            self._said.pop(name, None)

    def keep_only(self, names: set[str]) -> None:
        """Drop the names a resync no longer finds anywhere."""
        with self._lock:
            for name in set(self._states) - names:
                del self._states[name]

    def say(self, name: str, level: int, text: str, *, once: bool = True) -> None:
        """Log `name: text`; with once, a message repeated for the same name goes to debug."""
        with self._lock:
            repeated = once and self._said.get(name) == text
            self._said[name] = text
        log.log(logging.DEBUG if repeated else level, "%s: %s", name, text)

    def counts(self, busy: set[str]) -> dict[str, int]:
        """VMs per state now; names in `busy` (queued or in a worker) count as pending."""
        with self._lock:
            states = dict(self._states)
        counts: Counter[str] = Counter()
        for name, state in states.items():
            counts["pending" if name in busy else state] += 1
        counts["pending"] += len(busy - set(states))
        return dict(counts)


def status_text(counts: dict[str, int], unreachable: list[str], *, several: bool,
                where: str, not_ready: int = 0) -> str:
    """The one-line STATUS: '3 in sync, 0 pending, 0 failed, 1 not ready; unreachable:
    kvm-2' (not ready: running VMs whose spec.readiness is not met yet)."""
    text = (f"{counts.get(IN_SYNC, 0)} in sync, {counts.get('pending', 0)} pending, "
            f"{counts.get(FAILED, 0)} failed")
    if counts.get(OUT_OF_SYNC):
        text += f", {counts[OUT_OF_SYNC]} out of sync"
    if counts.get(ORPHAN):
        text += f", {counts[ORPHAN]} orphans"
    if not_ready:
        text += f", {not_ready} not ready"
    if unreachable and not several:
        text += f"; libvirt unreachable ({where})"
    elif unreachable:
        text += f"; unreachable: {', '.join(unreachable)}"
    return text

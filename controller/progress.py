"""A one-line progress display on a terminal: VMs done of total, and each running step.

Used by `reconcile --once` when stderr is a terminal and the output is text; never
with `-o json` or when piped. Fed by the engine's step observer and pass callback.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from .model import Outcome, Step


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total = total
        self.done = 0
        self.stream = stream
        self._running: dict[str, str] = {}
        self._lock = threading.Lock()

    def step(self, name: str, step: Step, phase: str) -> None:
        with self._lock:
            if phase == "start":
                self._running[name] = step.action.value
            else:
                self._running.pop(name, None)
            self._paint()

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self.done += 1
            self._running.pop(outcome.name, None)
            self._paint()

    def close(self) -> None:
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _paint(self) -> None:
        working = ", ".join(f"{name}: {action}" for name, action in sorted(self._running.items()))
        line = f"[{self.done}/{self.total}] {working}"
        self.stream.write("\r\x1b[K" + line[:200])
        self.stream.flush()

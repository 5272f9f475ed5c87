"""`--step-log FILE`: an append-only audit trail of every libvirt step, one JSON line each.

Any number of processes (the service, pipeline runs) may append to the same file:
each line is written with one O_APPEND write, which the kernel keeps whole. A line:
{"time": 1764096000.123456, "pid": 4242, "vm": "web-1", "action": "define",
 "phase": "start" | "done", "reason": "memory 512 MiB → 1 GiB"}
and, for the steps of a move between hosts, "host": the host the step ran on.
"""

from __future__ import annotations

import json
import os
import time

from .errors import UsageError
from .executor import StepObserver
from .model import Step


class StepLog:
    def __init__(self, path: str):
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise UsageError(f"cannot open step log {path}: {exc.strerror}") from exc

    def __call__(self, name: str, step: Step, phase: str) -> None:
        entry = {"time": time.time(), "pid": os.getpid(), "vm": name,
                 "action": step.action.value, "phase": phase, "reason": step.reason}
        if step.host is not None:  # a move's step names the host it runs on
            entry["host"] = step.host or "(-c)"
        line = json.dumps(entry, ensure_ascii=False)
        os.write(self._fd, (line + "\n").encode("utf-8"))


def chain(*observers: StepObserver | None) -> StepObserver | None:
    """One observer that calls each of `observers` that is set, in order."""
    present = [observer for observer in observers if observer is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call_all(name: str, step: Step, phase: str) -> None:
        for observer in present:
            observer(name, step, phase)
    return call_all

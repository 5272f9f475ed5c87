"""The soak's manifest folder: valid manifests of tiny guests, invalid ones of four kinds,
removals, each written atomically and recorded in the timeline once in place.
Used by tests/soak/run.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.support.manifests import vm_manifest, write_atomically

from .schedule import Want
from .timeline import INVALID, REMOVED, Desire, Timeline


def invalid_manifest(name: str, variant: int) -> str:
    """A document that names `name` but can never be valid (or is no YAML at all)."""
    head = f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
    return [
        f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {{name: {name}\n",  # YAML
        head + "spec:\n  memory: 64MiB\n  vcpus: many\n",  # a wrong type
        head + "spec:\n  memory: 64MiB\n  vcpus: 1\n  colour: blue\n",  # an unknown key
        head + "spec:\n  memory: lots\n  vcpus: 1\n",  # a bad size
    ][variant]


class ManifestFolder:
    def __init__(self, path: Path, timeline: Timeline, lock: threading.Lock):
        self.path = path
        self.timeline = timeline
        self._lock = lock

    def _file(self, name: str) -> Path:
        return self.path / f"{name}.yaml"

    def _record(self, name: str, desire: Desire) -> float:
        with self._lock:
            at = time.time()
            self.timeline.record(name, at, desire)
        return at

    def write(self, name: str, want: Want) -> float:
        write_atomically(self._file(name), vm_manifest(name, memory=f"{want.memory}MiB",
                                                       state=want.state, stop_timeout=0))
        return self._record(name, want)

    def write_invalid(self, name: str, variant: int) -> float:
        write_atomically(self._file(name), invalid_manifest(name, variant))
        return self._record(name, INVALID)

    def remove(self, name: str) -> float:
        self._file(name).unlink(missing_ok=True)
        return self._record(name, REMOVED)

    def desire(self, name: str, at: float | None = None) -> Desire | None:
        with self._lock:
            return self.timeline.at(name, time.time() if at is None else at)

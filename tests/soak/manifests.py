"""The soak's manifest folder: valid manifests of tiny guests, invalid ones of four kinds,
removals, each written atomically and recorded in the timeline once in place. A storage
VM's manifest (Want.disk > 0) also has a root volume made from the soak's Image, a raw
data volume `<vm>-d<generation>` and a cloud-init seed from a user-data file, all in
the soak's pool; Image manifests are written here too.
Used by tests/soak/run.py and storage.py."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

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


SEED_PADDING = 256 * 1024  # bytes of comment in each user data: the upload takes a moment


@dataclass(frozen=True)
class StorageNames:
    """Where storage VMs keep their volumes, and the Image their root volume is made of."""

    pool: str
    image: str


def data_volume(name: str, want: Want) -> str:
    return f"{name}-d{want.generation}"


def storage_spec(name: str, want: Want, storage: StorageNames) -> str:
    """The YAML lines (under spec:) of a storage VM's disks and cloud-init."""
    spec = {"disks": [{"volume": f"{name}-root", "pool": storage.pool, "image": storage.image},
                      {"volume": data_volume(name, want), "pool": storage.pool,
                       "size": f"{want.disk}MiB", "format": "raw"}],
            "cloudInit": {"userDataFile": f"{name}.v{want.seed}.user-data",
                          "pool": storage.pool}}
    text = yaml.safe_dump(spec, sort_keys=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


def root_only_spec(name: str, *, pool: str, image: str) -> str:
    """The YAML lines (under spec:) of one root volume made from `image` in `pool`."""
    return (f"  disks:\n  - volume: {name}-root\n    pool: {pool}\n    image: {image}\n")


def user_data(name: str, version: int) -> str:
    line = "# " + "x" * 61 + "\n"
    return (f"#cloud-config\n# {name} version {version}\n"
            + line * (SEED_PADDING // len(line)))


class ManifestFolder:
    def __init__(self, path: Path, timeline: Timeline, lock: threading.Lock,
                 storage: StorageNames | None = None):
        self.path = path
        self.timeline = timeline
        self._lock = lock
        self.storage = storage

    def _file(self, name: str) -> Path:
        return self.path / f"{name}.yaml"

    def _record(self, name: str, desire: Desire) -> float:
        with self._lock:
            at = time.time()
            self.timeline.record(name, at, desire)
        return at

    def write(self, name: str, want: Want) -> float:
        extra = ""
        if want.storage:
            assert self.storage is not None
            seed = self.path / f"{name}.v{want.seed}.user-data"
            if not seed.exists():
                write_atomically(seed, user_data(name, want.seed))
            extra = storage_spec(name, want, self.storage)
        write_atomically(self._file(name), vm_manifest(name, memory=f"{want.memory}MiB",
                                                       state=want.state, stop_timeout=0,
                                                       extra=extra))
        return self._record(name, want)

    def write_text(self, name: str, text: str, desire: Desire) -> float:
        write_atomically(self._file(name), text)
        return self._record(name, desire)

    def write_document(self, name: str, document: dict[str, object], desire: Desire) -> float:
        """Any other manifest (an Image, the full pool's VM), recorded as `desire`."""
        write_atomically(self._file(name), yaml.safe_dump(document, sort_keys=False))
        return self._record(name, desire)

    def write_invalid(self, name: str, variant: int) -> float:
        write_atomically(self._file(name), invalid_manifest(name, variant))
        return self._record(name, INVALID)

    def remove(self, name: str) -> float:
        self._file(name).unlink(missing_ok=True)
        return self._record(name, REMOVED)

    def desire(self, name: str, at: float | None = None) -> Desire | None:
        with self._lock:
            return self.timeline.at(name, time.time() if at is None else at)

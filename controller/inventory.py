"""What each host held at its last complete listing, kept across runs in --state-dir.

With several hosts, a VM whose host cannot be reached is unknown, not absent:
before a VM is created on one host, the controller asks whether an unreachable
host held it when it was last listed. Only a complete listing replaces a host's
entry; a move updates the two hosts it touched. The file is JSON, replaced
atomically under a lock, and merged on write, so a service and a `--once` run
sharing a state directory do not lose each other's hosts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .statedir import default_state_dir

log = logging.getLogger(__name__)

FILE_NAME = "inventory.json"

__all__ = ["FILE_NAME", "Inventory", "default_state_dir"]


class Inventory:
    """Host name ("" for the -c connection) → the domain names of its last listing."""

    def __init__(self, state_dir: str, *, writable: bool = True):
        self.directory = Path(state_dir)
        self.path = self.directory / FILE_NAME
        self.writable = writable
        self.tracking = True  # False: keep nothing (a single host needs no inventory)
        self._lock = threading.Lock()
        self._hosts: dict[str, set[str]] = {}
        self._warned = False
        self._hosts = {host: set(entry.get("domains", ()))
                       for host, entry in self._read().get("hosts", {}).items()}

    def held(self, host: str, name: str) -> bool:
        with self._lock:
            return name in self._hosts.get(host, ())

    def holders(self, name: str) -> list[str]:
        with self._lock:
            return sorted(host for host, names in self._hosts.items() if name in names)

    def record(self, host: str, names: Iterable[str]) -> None:
        """A complete listing of `host`: its entry becomes exactly `names`."""
        listed = set(names)
        with self._lock:  # held while writing: two writers must not reorder their snapshots
            if self._hosts.get(host) == listed:
                return
            self._hosts[host] = listed
            self._write({host: listed})

    def add(self, host: str, name: str) -> None:
        """`host` holds `name` now (it was just defined there)."""
        with self._lock:
            if name in self._hosts.get(host, ()):
                return
            self._hosts.setdefault(host, set()).add(name)
            self._write({host: set(self._hosts[host])})

    def moved(self, name: str, source: str, target: str) -> None:
        """A VM left `source` for `target`."""
        with self._lock:
            self._hosts.setdefault(source, set()).discard(name)
            self._hosts.setdefault(target, set()).add(name)
            self._write({source: set(self._hosts[source]), target: set(self._hosts[target])})

    # --- the file --------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("ignoring the inventory %s: %s", self.path, error)
            return {}
        return data if isinstance(data, dict) and isinstance(data.get("hosts"), dict) else {}

    def _write(self, changed: dict[str, set[str]]) -> None:
        if not self.writable or not self.tracking:
            return
        try:
            with self._file_lock():
                data = self._read()
                hosts = data.setdefault("hosts", {})
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                for host, names in changed.items():
                    hosts[host] = {"domains": sorted(names), "updated": now}
                data["version"] = 1
                import tempfile  # with shutil, bz2, lzma: not needed on one host

                fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".inventory-")
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, indent=1, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path)
        except OSError as error:
            if not self._warned:
                log.warning("cannot write the inventory %s: %s", self.path, error)
                self._warned = True

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(self.directory / ".inventory.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

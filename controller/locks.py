"""The per-VM lock: one lock file per domain name, held with flock(2).

Used by the engine around observe → plan → execute of one VM, so that no two
plans ever interleave on one VM: not between worker threads (each acquisition
opens its own file description, and flock locks conflict between those even
in one process), and not between processes (the service and a pipeline's
`reconcile --once`). The kernel drops the lock when a holder dies, even by
`kill -9`, so a crashed run never leaves a VM locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockTimeout, UsageError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_lock_dir() -> str:
    """/run/reconcile/locks for root; the user's runtime directory otherwise."""
    explicit = os.environ.get("RECONCILE_LOCK_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/run/reconcile/locks"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/reconcile-{os.geteuid()}"
    return os.path.join(runtime, "reconcile", "locks")


class VMLocks:
    """Hands out the lock of one VM name at a time."""

    def __init__(self, directory: str, *, timeout: float = 300.0):
        self.directory = Path(directory)
        self.timeout = timeout
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UsageError(f"cannot create lock directory {directory}: {exc.strerror}") from exc

    def path_for(self, name: str) -> Path:
        if _SAFE_NAME.match(name):
            return self.directory / f"{name}.lock"
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return self.directory / f"_{digest}.lock"

    @contextmanager
    def hold(self, name: str, *, timeout: float | None = None) -> Iterator[bool]:
        """Hold `name`'s lock; yields whether another holder had to be waited for.

        Raises LockTimeout after `timeout` seconds (default: the instance's).
        """
        limit = self.timeout if timeout is None else timeout
        path = self.path_for(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            waited = self._acquire(fd, name, limit)
            try:
                yield waited
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @staticmethod
    def _acquire(fd: int, name: str, limit: float) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            pass
        # flock(2) has no timeout: poll with a growing interval up to the deadline.
        deadline = time.monotonic() + limit
        interval = 0.005
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(
                    f"another reconcile run held the lock of '{name}' for more than "
                    f"{limit:g} s (--lock-timeout)")
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.1)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue

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
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .errors import LockTimeout, UsageError

_SAFE_NAME = re.compile(r"^([a-z]+:)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # "image:debian-12"


@dataclass(frozen=True)
class Held:
    """A held lock: whether it had to be waited for, and when a holder last stamped it.
    `stamp()` before changing anything: from then on the file's mtime says so, and it is
    stamped again at the release."""

    waited: bool
    previous_touch_ns: int
    stamp: Callable[[], None] = field(compare=False, repr=False)

    def untouched_since(self, time_ns: int) -> bool:
        """Whether no holder changed anything under this lock at or after `time_ns` (a
        holder stamps before its first change and at its release; one that only looks
        does not), and none held it while this one waited.

        File times come from the kernel's coarse clock, up to a tick behind the
        real one, hence the margin.
        """
        return not self.waited and self.previous_touch_ns < time_ns - _CLOCK_MARGIN_NS


_CLOCK_MARGIN_NS = 50_000_000


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
        self._folder = str(self.directory)  # str paths: pathlib costs more than the syscalls
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UsageError(f"cannot create lock directory {directory}: {exc.strerror}") from exc

    def path_for(self, name: str) -> Path:
        return Path(self._file(name))

    def _file(self, name: str) -> str:
        if _SAFE_NAME.match(name):
            return f"{self._folder}/{name}.lock"
        import hashlib  # rare: not worth its ~2 ms import (OpenSSL) in every run

        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return f"{self._folder}/_{digest}.lock"

    def hold(self, name: str, *, timeout: float | None = None) -> _Hold:
        """Hold `name`'s lock: `with locks.hold(name) as held: ...`. Raises LockTimeout
        after `timeout` seconds (default: the instance's).

        A holder that changes something stamps the file's mtime first (`Held.stamp`)
        and again when it releases the lock, so the next holder can tell whether anyone
        changed it since a given time; one that only looked stamps nothing.
        """
        return _Hold(self._file(name), name, self.timeout if timeout is None else timeout)

    def held_now(self, names: Iterable[str]) -> set[str]:
        """The names whose lock some holder has at this moment (a probe; stamps nothing)."""
        busy = set()
        for name in names:
            try:
                fd = os.open(self._file(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                busy.add(name)
            finally:
                os.close(fd)
        return busy

    @staticmethod
    def _acquire(fd: int, name: str, limit: float) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return False
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
            except BlockingIOError:
                continue
            return True


class _Hold:
    """VMLocks.hold's context manager (a class: a generator-based one costs more per VM
    than the lock's system calls)."""

    __slots__ = ("_fd", "_limit", "_name", "_path", "_stamped")

    def __init__(self, path: str, name: str, limit: float):
        self._path = path
        self._name = name
        self._limit = limit
        self._fd = -1
        self._stamped = False

    def __enter__(self) -> Held:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            waited = VMLocks._acquire(fd, self._name, self._limit)
            try:
                previous = os.fstat(fd).st_mtime_ns
            except BaseException:
                _release(fd, stamp=False)
                raise
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return Held(waited=waited, previous_touch_ns=previous, stamp=self._stamp)

    def _stamp(self) -> None:
        """The holder is about to change something: a kill -9 from here on still leaves
        the mark."""
        if not self._stamped and self._fd >= 0:
            os.utime(self._fd)
            self._stamped = True

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        fd, self._fd = self._fd, -1
        try:
            _release(fd, stamp=self._stamped)
        finally:
            os.close(fd)


def _release(fd: int, *, stamp: bool) -> None:
    """Stamp the release of a holder that changed something, then unlock (closing the
    file would unlock it too)."""
    try:
        if stamp:
            os.utime(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)

"""The service's work queue of VM names, with the semantics of the Kubernetes workqueue.

Fed by the three triggers of the service (manifest watcher, libvirt lifecycle
events, periodic resync) and drained by its worker threads; see service.py.
Pure threading, no libvirt, no manifests: a name is only a key.

- A name is queued at most once, however often it is added before a worker
  takes it (`dirty`).
- A name is never handed to two workers at once: added again while it is
  being processed, it is queued again only when its worker calls `done`
  (`processing`).
- `add_rate_limited` re-adds a failing name after a per-name exponential
  backoff (`Backoff`), without holding up any other name; `forget` resets it.
- `add_after` adds a name later; `shut_down` makes `get` return None at once,
  even with names still queued (take no new work), and `wait_idle` waits for
  the names in flight.
- `lanes`: at most that many names are handed out at once while they are quick;
  a name in flight for `slow_after` seconds (waiting on libvirt: a start, a
  shutdown) frees its lane for another worker. Converged VMs cost a little CPU
  each: more threads than CPUs only take turns at the interpreter, at a cost
  (a resync of 1,000 VMs took 0.49 s of CPU with 8 workers on 2 CPUs, 0.29 s
  with 2), while slow steps still run `workers` at a time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]

#: Seconds in flight after which a name no longer holds one of the queue's lanes: far
#: above what looking at a converged VM takes (about a millisecond), and small against a
#: step that waits on libvirt (a start takes 0.3 s and more).
SLOW_AFTER = 0.025


class Backoff:
    """Per-name exponential backoff: base, 2·base, 4·base, ... capped at `cap` seconds."""

    def __init__(self, *, base: float = 1.0, cap: float = 300.0):
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_delay(self, name: str) -> float:
        """Count one more failure of `name` and return how long to wait before retrying it."""
        with self._lock:
            failures = self._failures.get(name, 0)
            self._failures[name] = failures + 1
        # The shift is bounded: the cap is reached long before 2**64 anyway.
        return min(self.cap, self.base * (1 << min(failures, 64)))

    def failures(self, name: str) -> int:
        with self._lock:
            return self._failures.get(name, 0)

    def forget(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


class WorkQueue:
    """A set-like FIFO of names for worker threads; see the module docstring."""

    def __init__(self, *, backoff: Backoff | None = None, clock: Clock = time.monotonic,
                 lanes: int | None = None, slow_after: float = SLOW_AFTER):
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._lanes = lanes  # None: hand out names to every worker that asks
        self._slow_after = slow_after
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait here for a name
        self._idle = threading.Condition(lock)  # wait_idle waits here
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: dict[str, float] = {}  # name → when it was handed out
        self._untimed_waiters = 0  # workers waiting without a deadline (nothing queued)
        # Delayed adds: a heap of (due time, sequence, name); `_due` keeps each name's earliest.
        self._waiting: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._sequence = itertools.count()
        self._shutting_down = False

    # --- adding --------------------------------------------------------------------

    def add(self, name: str) -> None:
        """Queue `name` unless it is queued already; if it is being processed, queue it
        again once its worker is done."""
        with self._cond:
            self._add_locked(name)

    def _add_locked(self, name: str) -> None:
        if self._shutting_down or name in self._dirty:
            return
        self._dirty.add(name)
        if name not in self._processing:
            self._queue.append(name)
            if (self._lanes is None or self._untimed_waiters
                    or self._lane_wait_locked(self._clock()) == 0.0):
                # (a worker waiting for a lane looks again when its holder turns slow)
                self._cond.notify()

    def add_after(self, name: str, delay: float) -> None:
        """Add `name` after `delay` seconds (at once when delay <= 0). An earlier pending
        delayed add of the same name wins."""
        if delay <= 0:
            self.add(name)
            return
        with self._cond:
            if self._shutting_down:
                return
            due = self._clock() + delay
            if name in self._due and self._due[name] <= due:
                return
            self._due[name] = due
            heapq.heappush(self._waiting, (due, next(self._sequence), name))
            self._cond.notify_all()  # a sleeping get() may now have an earlier deadline

    def add_rate_limited(self, name: str) -> float:
        """Add `name` after its next backoff delay; return that delay."""
        delay = self.backoff.next_delay(name)
        self.add_after(name, delay)
        return delay

    def forget(self, name: str) -> None:
        """`name` succeeded: its next failure starts the backoff from the beginning."""
        self.backoff.forget(name)

    # --- taking ----------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> str | None:
        """The next name to process, marked as processing; None after `shut_down`, or when
        `timeout` (seconds; 0 = do not wait) passes with nothing to do."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutting_down:
                    return None
                now = self._clock()
                self._promote_due_locked(now)
                wait: float | None = None
                if self._queue:
                    wait = self._lane_wait_locked(now)
                    if wait == 0.0:
                        name = self._queue.popleft()
                        self._dirty.discard(name)
                        self._processing[name] = now
                        return name
                if self._waiting:
                    due = max(0.0, self._waiting[0][0] - now)
                    wait = due if wait is None else min(wait, due)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                if wait is not None:
                    self._cond.wait(wait)
                    continue
                self._untimed_waiters += 1
                try:
                    self._cond.wait()
                finally:
                    self._untimed_waiters -= 1

    def _lane_wait_locked(self, now: float) -> float:
        """0 when a lane is free; else the seconds until a name in flight turns slow."""
        if self._lanes is None or len(self._processing) < self._lanes:
            return 0.0
        quick_for = [left for taken in self._processing.values()
                     if (left := self._slow_after - (now - taken)) > 0]
        if len(quick_for) < self._lanes:
            return 0.0
        return min(quick_for)

    def _promote_due_locked(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            due, _, name = heapq.heappop(self._waiting)
            if self._due.get(name) == due:  # not superseded by an earlier delayed add
                del self._due[name]
                self._add_locked(name)

    def done(self, name: str, *, taking_next: bool = False) -> None:
        """The worker finished `name`; queue it again if it was added meanwhile.
        `taking_next`: the caller asks for the next name at once, so no other worker is
        woken for the lane it frees (a thread switch per name costs more than the name)."""
        with self._cond:
            self._processing.pop(name, None)
            if name in self._dirty and not self._shutting_down:
                self._queue.append(name)
            if self._queue and not taking_next:
                self._cond.notify()  # its lane is free: one waiting worker may take a name
            if not self._processing:
                self._idle.notify_all()

    # --- shutting down -----------------------------------------------------------------

    def shut_down(self) -> None:
        """Take no new work: every get() returns None from now on; add() is ignored."""
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()
            self._idle.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no name is being processed; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._processing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    # --- looking -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Names queued and ready to be taken (the queue depth)."""
        with self._cond:
            return len(self._queue)

    def queued(self) -> set[str]:
        """Names queued, including those due again after being processed."""
        with self._cond:
            return set(self._dirty)

    def processing(self) -> set[str]:
        with self._cond:
            return set(self._processing)

    def waiting(self) -> set[str]:
        """Names waiting for a delayed add (a backoff, for instance)."""
        with self._cond:
            return set(self._due)

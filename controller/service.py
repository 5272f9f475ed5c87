"""`reconcile` without --once: keep the host converged until SIGTERM.

Called by cli.py (`run_service(args)`). Three triggers turn changes into VM
names on one work queue, and never decide what to do with them:

    manifest watcher (watch.py)     ─┐
    libvirt lifecycle events         ├─▶ WorkQueue of names ─▶ workers ─▶ Engine.reconcile(spec)
    periodic / SIGHUP / reconnect    ─┘   (workqueue.py)                  or Engine.prune(name)
    resync: every manifest + orphan

A worker reads the manifests and the domain afresh for each name, under the
VM's lock (the same one `--once` takes), so the service and a pipeline can
work side by side. The main thread owns the rest: connecting (with backoff,
a missing daemon is a log line, not a crash), resyncs, signals, sd_notify
(READY after the first full pass, WATCHDOG while the loop runs, STATUS,
STOPPING) and the optional metrics server.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from types import FrameType

from .engine import Engine
from .errors import ConnectionLost, HypervisorError, UsageError
from .hypervisor import WatchedHypervisor, event_loop_alive
from .locks import VMLocks, default_lock_dir
from .manifests import DEFAULT_DISK_ROOTS, LoadResult, load_directory
from .metrics import Metrics, Recorder
from .model import Outcome, Result, Step
from .notify import Notifier
from .steplog import StepLog, chain
from .watch import ManifestSet, ManifestWatcher
from .workqueue import Backoff, WorkQueue

log = logging.getLogger(__name__)

#: How long SIGTERM waits for the VMs in flight before giving up on them.
SHUTDOWN_TIMEOUT = 90.0
#: A manifest must have been gone this long before its domain is pruned, so a file being
#: rewritten (truncated, then written) is not mistaken for a deleted one.
PRUNE_SETTLE = 1.0
#: Longest the main loop sleeps: /healthz calls it dead after three missed ticks.
TICK = 5.0
CONNECT_BACKOFF = (0.5, 30.0)
#: A connection up this long is stable: losing it then starts the backoff afresh.
STABLE = 30.0

IN_SYNC, OUT_OF_SYNC, FAILED, ORPHAN = "in_sync", "out_of_sync", "failed", "orphan"
_STATE_OF = {
    Result.UNCHANGED: IN_SYNC, Result.CONVERGED: IN_SYNC, Result.PRUNED: IN_SYNC,
    Result.RESTART_PENDING: OUT_OF_SYNC, Result.SUSPENDED: OUT_OF_SYNC,
    Result.PLANNED: OUT_OF_SYNC, Result.FAILED: FAILED, Result.CONFLICT: FAILED,
}


def run_service(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean shutdown."""
    logging.getLogger("watchdog").setLevel(logging.INFO)  # its debug log is every inotify event
    return Service(args).run()


class Service:
    """One running service: its queue, triggers, workers and main loop (see the module)."""

    def __init__(self, args: argparse.Namespace, *, notifier: Notifier | None = None):
        self.args = args
        self.uri_text = args.connect or "the default libvirt URI"
        self.queue = WorkQueue(backoff=Backoff(base=1.0, cap=300.0))
        self.manifests = ManifestSet(args.manifests,
                                     disk_roots=args.disk_roots or list(DEFAULT_DISK_ROOTS),
                                     strict_permissions=getattr(args, "strict_permissions",
                                                                False))
        self.locks = VMLocks(args.lock_dir or default_lock_dir(), timeout=args.lock_timeout)
        self.hypervisor = WatchedHypervisor(args.connect, on_event=self._on_event,
                                            on_open=self._on_open, on_close=self._on_close)
        step_log = StepLog(args.step_log) if getattr(args, "step_log", None) else None
        self.engine = Engine(self.hypervisor, self.locks, workers=args.workers,
                             observer=chain(step_log, self._on_step))
        self.notifier = notifier or Notifier()
        self.metrics: Recorder = Recorder()
        self.watcher = ManifestWatcher(args.manifests, self._on_manifest_change)

        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._said: dict[str, str] = {}  # the last thing logged per name, to log changes once
        self._why: dict[str, str] = {}  # what queued each name last
        self._orphans: set[str] = set()
        self._first_pass: set[str] | None = None
        self._ready = False
        self._step = threading.local()

        # Written by callbacks and signal handlers, read by the main loop.
        self._connected = False
        self._lost: str | None = None
        self._resync_reason: str | None = None
        self._stop_signal: str | None = None
        self._heartbeat = time.monotonic()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._workers: list[threading.Thread] = []

    # --- the main loop -----------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        if self.args.metrics_address:
            self._serve_metrics(self.args.metrics_address)
        load = self.manifests.reload().load
        if load.problem and not os.path.isdir(self.args.manifests):
            log.warning("waiting for manifest directory %s to appear", self.args.manifests)
        self.watcher.start()
        for index in range(max(1, self.args.workers)):
            thread = threading.Thread(target=self._work, name=f"worker-{index + 1}", daemon=True)
            thread.start()
            self._workers.append(thread)
        log.info("service started: manifests %s, libvirt %s, %d workers, resync every %gs%s",
                 self.args.manifests, self.uri_text, len(self._workers), self.args.resync,
                 ", pruning" if self.args.prune else "")
        self._loop()
        return self._shut_down()

    def _loop(self) -> None:
        next_connect = connected_at = time.monotonic()
        connect_delay = CONNECT_BACKOFF[0]
        next_resync = float("inf")
        next_ping = time.monotonic()
        watchdog = self.notifier.watchdog_interval
        while self._stop_signal is None:
            now = self._heartbeat = time.monotonic()
            if self._lost is not None:
                reason, self._lost = self._lost, None
                log.warning("lost the libvirt connection to %s (%s); reconnecting",
                            self.uri_text, reason)
                if now - connected_at >= STABLE:
                    next_connect, connect_delay = now, CONNECT_BACKOFF[0]
                else:  # lost again right after connecting: keep backing off
                    next_connect = now + connect_delay
                    connect_delay = min(connect_delay * 2, CONNECT_BACKOFF[1])
            if not self._connected and now >= next_connect:
                error = self._connect()
                if error is None:
                    connected_at = time.monotonic()
                else:
                    log.warning("libvirt is not reachable: %s; retrying in %gs", error,
                                connect_delay)
                    next_connect = now + connect_delay
                    connect_delay = min(connect_delay * 2, CONNECT_BACKOFF[1])
            if self._connected and (self._resync_reason is not None or now >= next_resync):
                reason, self._resync_reason = self._resync_reason or "periodic", None
                if self._resync(reason):
                    next_resync = time.monotonic() + self.args.resync
            self._maybe_ready()
            if watchdog is not None and now >= next_ping:
                if self._alive():
                    self.notifier.watchdog()
                next_ping = now + watchdog
            self.notifier.status(self.status_line())
            deadlines = [next_resync if self._connected else next_connect, now + TICK]
            if watchdog is not None:
                deadlines.append(next_ping)
            self._sleep(min(deadlines) - time.monotonic())

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            select.select([self._wake_r], [], [], seconds)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except BlockingIOError:
            pass  # the pipe is full: the loop will wake anyway

    def _alive(self) -> bool:
        """The loop ticks (it is the caller), the workers and libvirt's event thread run."""
        workers = all(thread.is_alive() for thread in self._workers)
        events = event_loop_alive() or not self._connected
        return workers and events

    # --- signals -------------------------------------------------------------------------

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: set a flag, wake the loop, no locks.
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self._resync_reason = name
        else:
            self._stop_signal = name
        self._wake()

    # --- libvirt connection ----------------------------------------------------------------

    def _connect(self) -> ConnectionLost | None:
        """Connect or reconnect; the error when libvirt cannot be reached."""
        try:
            if self.hypervisor.current() is None:
                self.hypervisor.connect()
            else:
                self.hypervisor.reconnect()  # nothing to do if a worker reconnected already
        except ConnectionLost as error:
            return error
        if not self._connected:  # the connection was fine after all: no _on_open ran
            self._on_open()
        return None

    def _on_open(self) -> None:
        # Under the hypervisor's connection lock, in whichever thread reconnected.
        first = not self._ready and self._first_pass is None
        self._connected = True
        self._resync_reason = "start" if first else "reconnected"
        self.metrics.connected(True)
        log.info("connected to %s; watching domain lifecycle events", self.hypervisor.uri)
        self._wake()

    def _on_close(self, reason: str) -> None:
        # In libvirt's event thread.
        if self._connected:
            self._connected = False
            self._lost = reason
            self.metrics.connected(False)
            self._wake()

    def _on_event(self, name: str, event: str) -> None:
        # In libvirt's event thread: only say which name to look at.
        log.debug("libvirt event: %s %s", name, event)
        self._enqueue([name], f"libvirt event '{event}'")

    # --- triggers → names --------------------------------------------------------------------

    def _enqueue(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self._why[name] = why
            self.queue.add(name)

    def _on_manifest_change(self, touched: set[str]) -> None:
        load, names, before = self.manifests.reload(touched)
        self._note_invalid(load)
        self._enqueue(sorted(names), "manifest change")
        if load.prune_safe and not before.prune_safe and self.args.prune:
            # Orphans left alone while the manifests were incomplete: look at them again.
            self._resync_reason = self._resync_reason or "manifests complete again"
        self._wake()

    def _resync(self, reason: str) -> bool:
        """Reload the manifests; queue every manifest's name and every orphan."""
        started = time.monotonic()
        load = self.manifests.reload().load
        self.watcher.rearm()
        self._note_invalid(load)
        try:
            managed = self.hypervisor.managed_domains()
        except ConnectionLost as error:
            log.warning("resync (%s) cannot list domains: %s", reason, error)
            self._on_close("error")
            return False
        except HypervisorError as error:
            log.warning("resync (%s): orphans unknown: %s", reason, error)
            managed = set()
        orphans = managed - set(load.specs) - load.invalid_names
        names = set(load.specs) | orphans
        with self._lock:
            self._orphans = orphans
            for name in set(self._states) - names - load.invalid_names:
                del self._states[name]
            if not self._ready:
                self._first_pass = set(names)
        self._enqueue(sorted(names), f"resync ({reason})")
        level = logging.DEBUG if reason == "periodic" else logging.INFO
        log.log(level, "resync (%s): %d VMs, %d orphans queued (%.0f ms)", reason,
                len(load.specs), len(orphans), (time.monotonic() - started) * 1000)
        return True

    def _note_invalid(self, load: LoadResult) -> None:
        with self._lock:
            for name in load.invalid_names:
                self._states[name] = FAILED

    def _maybe_ready(self) -> None:
        with self._lock:
            if self._ready or self._first_pass is None or self._first_pass:
                return
            self._ready = True
        status = self.status_line()
        log.info("first pass done: %s", status)
        self.notifier.ready(status)

    # --- workers -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            name = self.queue.get()
            if name is None:
                return
            try:
                processed = self._process(name)
            except Exception:  # a bug must not kill the worker: report it and back off
                log.exception("%s: unexpected error", name)
                self._set_state(name, FAILED)
                self.queue.add_rate_limited(name)
                processed = True
            finally:
                self.queue.done(name)
            if processed:
                with self._lock:
                    if self._first_pass is not None:
                        self._first_pass.discard(name)
            self._wake()

    def _process(self, name: str) -> bool:
        """Look at one name once. False when it could not be looked at (no connection)."""
        why = self._why.pop(name, "")
        if not self._connected:
            log.debug("%s: not connected; the resync after reconnecting covers it", name)
            return False
        load = self.manifests.current()
        spec = load.specs.get(name)
        if spec is not None:
            started = time.monotonic()
            outcome = self.engine.reconcile(spec)
            self._finish_steps()
            self._record(outcome, time.monotonic() - started, why)
        elif name in load.invalid_names:
            self._set_state(name, FAILED)
            self._say(name, logging.WARNING, "its manifest is invalid; leaving the domain as it is")
        else:
            self._orphan(name, load, why)
        return True

    def _record(self, outcome: Outcome, seconds: float, why: str) -> None:
        name, result = outcome.name, outcome.result
        self.metrics.reconciled(result.value, seconds)
        self._set_state(name, _STATE_OF.get(result, FAILED))
        steps = ", ".join(step.action.value for step in outcome.steps)
        if result is Result.FAILED:
            if not self.hypervisor.alive():
                self._on_close("error")  # the resync after reconnecting retries it
                self._say(name, logging.WARNING, f"failed while libvirt was away: {outcome.error}")
                return
            delay = self.queue.add_rate_limited(name)
            self._say(name, logging.ERROR, f"failed: {outcome.error}; retrying in {delay:g}s",
                      once=False)
            return
        self.queue.forget(name)
        if result is Result.CONFLICT:
            self._say(name, logging.ERROR, f"conflict: {outcome.error}")
        elif result is Result.SUSPENDED:
            drift = "; ".join(str(change) for change in outcome.changes) or steps
            self._say(name, logging.WARNING, f"drift found, nothing changed (suspend): {drift}")
        elif result is Result.RESTART_PENDING:
            self._say(name, logging.INFO, f"restart pending: {outcome.note}")
        elif outcome.steps:
            self._say(name, logging.INFO, f"{result.value} ({steps}) after {why}", once=False)
        else:
            self._say(name, logging.DEBUG, f"{result.value} after {why}", once=False)

    def _orphan(self, name: str, load: LoadResult, why: str) -> None:
        try:
            observed = self.hypervisor.observe(name)
        except HypervisorError as error:
            if not self.hypervisor.alive():
                self._on_close("error")
            self._say(name, logging.WARNING, f"cannot tell whether it is an orphan: {error}")
            return
        if not observed.exists or not observed.managed:
            log.debug("%s: neither in the manifests nor a managed domain; ignored", name)
            self._forget(name)
            return
        self._set_state(name, ORPHAN)
        with self._lock:
            self._orphans.add(name)
        if not self.args.prune:
            self._say(name, logging.INFO, "orphan: a managed domain that no manifest names "
                                          "(not pruned; --prune removes it)")
            return
        if not load.prune_safe:
            self._say(name, logging.WARNING, "orphan not pruned: "
                      f"{load.problem or f'{len(load.invalid)} invalid manifest(s)'}")
            return
        settle = PRUNE_SETTLE - (time.monotonic() - self.manifests.changed_at)
        if settle > 0:
            self.queue.add_after(name, settle)
            return
        fresh = load_directory(self.manifests.directory, disk_roots=self.manifests.disk_roots,
                               strict_permissions=self.manifests.strict_permissions)
        if name in fresh.specs or name in fresh.invalid_names or not fresh.prune_safe:
            return  # the directory changed again: the watcher queues it with the new state
        try:
            orphans = self.hypervisor.managed_domains() - set(fresh.specs) - fresh.invalid_names
        except HypervisorError as error:
            self._say(name, logging.WARNING, f"orphan not pruned: {error}")
            return
        if len(orphans) > self.args.max_prune:
            self._set_state(name, FAILED)
            self._say(name, logging.ERROR, f"orphan not pruned: {len(orphans)} orphans exceed "
                                           f"--max-prune {self.args.max_prune}")
            return
        started = time.monotonic()
        outcome = self.engine.prune(name)
        self._finish_steps()
        self._record(outcome, time.monotonic() - started, why)
        if outcome.result is Result.PRUNED:
            self._forget(name)

    # --- bookkeeping -------------------------------------------------------------------------

    def _on_step(self, name: str, step: Step, phase: str) -> None:
        # Called by the executor in the worker's thread; one VM per thread at a time.
        pending: Step | None = getattr(self._step, "pending", None)
        if phase == "start":
            if pending is not None:  # the previous step ended in an error the engine handled
                self.metrics.step(pending.action.value, "failed")
            self._step.pending = step
        else:
            self.metrics.step(step.action.value, "done")
            self._step.pending = None

    def _finish_steps(self) -> None:
        pending: Step | None = getattr(self._step, "pending", None)
        if pending is not None:
            self.metrics.step(pending.action.value, "failed")
            self._step.pending = None

    def _set_state(self, name: str, state: str) -> None:
        with self._lock:
            self._states[name] = state
            if state != ORPHAN:
                self._orphans.discard(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)
            self._said.pop(name, None)
            self._orphans.discard(name)
        self.queue.forget(name)

    def _say(self, name: str, level: int, text: str, *, once: bool = True) -> None:
        """Log `name: text`; with once, a message repeated for the same name goes to debug."""
        with self._lock:
            repeated = once and self._said.get(name) == text
            self._said[name] = text
        log.log(logging.DEBUG if repeated else level, "%s: %s", name, text)

    def counts(self) -> dict[str, int]:
        """VMs per state now; names queued or in a worker count as pending."""
        busy = self.queue.queued() | self.queue.processing()
        with self._lock:
            states = dict(self._states)
        counts: Counter[str] = Counter()
        for name, state in states.items():
            counts["pending" if name in busy else state] += 1
        counts["pending"] += len(busy - set(states))
        return dict(counts)

    def status_line(self) -> str:
        counts = self.counts()
        text = (f"{counts.get(IN_SYNC, 0)} in sync, {counts.get('pending', 0)} pending, "
                f"{counts.get(FAILED, 0)} failed")
        if counts.get(OUT_OF_SYNC):
            text += f", {counts[OUT_OF_SYNC]} out of sync"
        if counts.get(ORPHAN):
            text += f", {counts[ORPHAN]} orphans"
        if not self._connected:
            text += f"; libvirt unreachable ({self.uri_text})"
        return text

    # --- metrics ---------------------------------------------------------------------------------

    def _serve_metrics(self, address: str) -> None:
        def vm_counts() -> dict[str, int]:
            counts = self.counts()
            return {IN_SYNC: counts.get(IN_SYNC, 0), FAILED: counts.get(FAILED, 0),
                    OUT_OF_SYNC: counts.get(OUT_OF_SYNC, 0) + counts.get("pending", 0)}

        metrics = Metrics(vm_counts=vm_counts, queue_depth=lambda: len(self.queue))
        try:
            host, port = metrics.serve(address, self.health)
        except ValueError as error:
            raise UsageError(str(error)) from error
        except OSError as error:
            raise UsageError(f"cannot serve metrics on {address}: "
                             f"{error.strerror or error}") from error
        metrics.connected(False)
        self.metrics = metrics
        log.info("metrics on http://%s:%d/metrics and /healthz",
                 f"[{host}]" if ":" in host else host, port)

    def health(self) -> tuple[bool, str]:
        if not self._connected:
            return False, f"libvirt unreachable ({self.uri_text})"
        stale = time.monotonic() - self._heartbeat
        if stale > 3 * TICK:
            return False, f"service loop stuck for {stale:.0f}s"
        if not self._alive():
            return False, "a worker or the libvirt event thread died"
        return True, "ok"

    # --- shutting down ---------------------------------------------------------------------------

    def _shut_down(self) -> int:
        busy = sorted(self.queue.processing())
        log.info("%s: taking no new work; finishing %s", self._stop_signal,
                 ", ".join(busy) if busy else "nothing in flight")
        self.notifier.stopping(self.status_line())
        self.queue.shut_down()
        self.watcher.stop()
        finished = self.queue.wait_idle(SHUTDOWN_TIMEOUT)
        for thread in self._workers:
            thread.join(timeout=1)
        self.hypervisor.close()
        self.metrics.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.notifier.close()
        if not finished:
            log.error("gave up after %gs waiting for %s", SHUTDOWN_TIMEOUT,
                      ", ".join(sorted(self.queue.processing())))
            return 1
        log.info("stopped")
        return 0


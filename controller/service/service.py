"""`reconcile` without --once: keep the hosts converged until SIGTERM.

    manifest watcher (watch.py)     ─┐
    libvirt lifecycle events         ├─▶ WorkQueue of names ─▶ workers ─▶ Reconciler.reconcile
    periodic / SIGHUP / reconnect    ─┘   (workqueue.py)       (workers.py)   (reconciler.py)
    resync: every manifest + orphan       (triggers.py)

The main thread owns the rest: each host's connection (connections.py), resyncs,
signals, sd_notify (READY after the first full pass, WATCHDOG while the loop runs,
STATUS, STOPPING) and the optional metrics server (health.py).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from functools import partial
from types import FrameType

from ..assemble import make_hosts, make_reconciler
from ..errors import UsageError
from ..hosts import DEFAULT_HOST, Host
from ..manifests import LoadResult
from ..metrics import Recorder
from ..notify import Notifier
from ..settings import Settings
from ..steplog import StepLog, chain
from ..virt import Hypervisor, connections_for
from ..virt.loop import event_loop_alive
from ..watch import ManifestSet, ManifestWatcher
from ..workqueue import Backoff, WorkQueue
from .connections import Supervisor
from .guests import GuestWatch
from .health import Health
from .states import VMStates, status_text
from .triggers import Triggers
from .workers import Workers, metric_host

log = logging.getLogger("controller.service")

#: How long SIGTERM waits for the VMs in flight before giving up on them.
SHUTDOWN_TIMEOUT = 90.0
#: Longest the main loop sleeps: /healthz calls it dead after three missed ticks.
TICK = 5.0
#: While names are still queued, a worker done with one wakes the main loop (STATUS) at
#: most this often: a STATUS line counts every VM, too much to do per VM of a resync.
STATUS_EVERY = 0.25


def run_service(settings: Settings) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean shutdown."""
    logging.getLogger("watchdog").setLevel(logging.INFO)  # its debug log is every inotify event
    return Service(settings).run()


class Service:
    """One running service: its queue, triggers, workers and main loop (see the module)."""

    def __init__(self, settings: Settings, *, notifier: Notifier | None = None):
        self.settings = settings
        self.uri_text = settings.connect or "the default libvirt URI"
        # as many quick names at once as this process has CPUs (workqueue.py: lanes)
        self.queue = WorkQueue(backoff=Backoff(base=1.0, cap=300.0),
                               lanes=len(os.sched_getaffinity(0)))
        self.manifests = ManifestSet(settings.manifests, disk_roots=settings.disk_roots,
                                     strict_permissions=settings.strict_permissions)
        self.manifests.extra_hosts = dict(settings.extra_hosts)
        self.only_host = settings.only_host
        self.hosts = make_hosts(settings, readonly=False, make_hypervisor=self._watched)
        self.states = VMStates()
        self.guests = GuestWatch(self.hosts)  # readiness and addresses, for the metrics
        self.notifier = notifier or Notifier()
        self.metrics: Recorder = Recorder()
        self._scope: set[str] = {DEFAULT_HOST}
        self._first_pass: set[str] | None = None
        self._ready = False
        self._ready_lock = threading.Lock()
        # Written by callbacks and signal handlers, read by the main loop.
        self._resync_reason: str | None = None
        self._stop_signal: str | None = None
        self.heartbeat = time.monotonic()
        self._woken_at = 0.0  # when a worker last woke the main loop
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        self.supervisor = Supervisor(self.hosts, where=self._where, on_up=self._on_up,
                                     on_unreachable=self._fail_host_vms,
                                     on_down=self._on_down, wake=self._wake)
        step_log = StepLog(settings.step_log) if settings.step_log else None
        self.reconciler = make_reconciler(
            settings, self.hosts, self.manifests, dry_run=False, scope=lambda: self._scope,
            observer=chain(step_log, lambda *step: self.workers.on_step(*step)),
            recover_inline=False)
        self.workers = Workers(queue=self.queue, reconciler=self.reconciler,
                               hosts=self.hosts, manifests=self.manifests, states=self.states,
                               scope=lambda: self._scope, metrics=lambda: self.metrics,
                               processed=self._processed,
                               lost=lambda host: self.supervisor.closed(host, "error"),
                               on_outcome=self.guests.outcome)
        self.triggers = Triggers(queue=self.queue, manifests=self.manifests, hosts=self.hosts,
                                 states=self.states, why=self.workers.why,
                                 scope=lambda: self._scope, prune=settings.prune,
                                 want_resync=self._want_resync, wake=self._wake)
        self.watcher = ManifestWatcher(settings.manifests, self.triggers.on_manifest_change)
        self.health = Health(self)

    def _watched(self, name: str, uri: str | None) -> Hypervisor:
        return Hypervisor.watched(uri, on_event=partial(self._domain_event, name),
                                  on_open=partial(self.supervisor.opened, name),
                                  on_close=partial(self.supervisor.closed, name),
                                  connections=connections_for(self.settings.workers),
                                  on_agent=partial(self.guests.agent_event, name))

    def _domain_event(self, host: str, name: str, event: str) -> None:
        # libvirt's event thread: queue the name, and have its guest looked at again
        self.triggers.on_event(host, name, event)
        self.guests.lifecycle_event(host, name, event)

    def _where(self, host: Host) -> str:
        return host.hypervisor.uri or self.uri_text

    def hosts_in_scope(self) -> list[Host]:
        """The hosts this service converges now."""
        return [self.hosts[name] for name in sorted(self._scope) if self.hosts.get(name)]

    def _take_hosts(self, load: LoadResult) -> None:
        """Follow hosts.yaml: connections for new hosts, none for removed ones."""
        for host in self.hosts.set_hosts(load.hosts):
            log.info("host %s is no longer in the manifests; disconnecting", host.label)
            host.hypervisor.connection.close()
        scope = self.hosts.scope(load, self.only_host)
        for name in sorted(scope - self._scope):
            added = self.hosts.get(name)
            if added is not None and not added.up:
                log.info("watching host %s (%s)", added.label, self._where(added))
        self._scope = scope

    @property
    def connected(self) -> bool:
        """Whether any host this service converges is connected."""
        return any(host.up for host in self.hosts_in_scope())

    def unreachable(self) -> list[str]:
        return [host.label for host in self.hosts_in_scope() if not host.up]

    def status_line(self) -> str:
        counts = self.states.counts(self.queue.queued() | self.queue.processing())
        return status_text(counts, self.unreachable(), several=self.hosts.several,
                           where=self.uri_text, not_ready=self.guests.not_ready())

    # --- the main loop -----------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        load = self.manifests.reload().load
        if self.only_host is not None and self.only_host not in load.hosts:
            raise UsageError(f"--host {self.only_host}: no such host in hosts.yaml or "
                             "--host NAME=URI")
        self._take_hosts(load)
        if self.settings.metrics_address:
            self.metrics = self.health.serve(self.settings.metrics_address)
        if load.problem and not os.path.isdir(self.settings.manifests):
            log.warning("waiting for manifest directory %s to appear", self.settings.manifests)
        self.watcher.start()
        self.guests.start()
        self.workers.start(max(1, self.settings.workers) * max(1, len(self._scope)))
        where = (", ".join(host.label for host in self.hosts_in_scope()) if self.hosts.several
                 else self.uri_text)
        log.info("service started: manifests %s, libvirt %s, %d workers, resync every %gs%s",
                 self.settings.manifests, where, len(self.workers.threads),
                 self.settings.resync, ", pruning" if self.settings.prune else "")
        self._loop()
        return self._shut_down()

    def _loop(self) -> None:
        next_resync = float("inf")
        next_ping = time.monotonic()
        watchdog = self.notifier.watchdog_interval
        while self._stop_signal is None:
            now = self.heartbeat = time.monotonic()
            deadlines = [now + TICK]
            for host in self.hosts_in_scope():
                deadlines.append(self.supervisor.tend(host, now))
            if self.connected and (self._resync_reason is not None or now >= next_resync):
                reason, self._resync_reason = self._resync_reason or "periodic", None
                if self._resync(reason):
                    next_resync = time.monotonic() + self.settings.resync
            if self.connected:
                deadlines.append(next_resync)
            self._maybe_ready()
            if watchdog is not None and now >= next_ping:
                if self.alive():
                    self.notifier.watchdog()
                next_ping = now + watchdog
            self.notifier.status(self.status_line())
            if watchdog is not None:
                deadlines.append(next_ping)
            self._sleep(min(deadlines) - time.monotonic())

    def _resync(self, reason: str) -> bool:
        """Reload the manifests and hosts.yaml, then queue every name (triggers.py)."""
        load = self.manifests.reload().load
        self._take_hosts(load)
        self.watcher.rearm()
        names = self.triggers.resync(
            reason, load, self.hosts_in_scope(),
            on_silent=lambda host: self.supervisor.closed(host.name, "no answer"),
            on_lost=lambda host: self.supervisor.closed(host.name, "error"))
        if names is None:
            return False
        with self._ready_lock:
            if not self._ready:
                self._first_pass = set(names)
        for host in self.hosts_in_scope():
            if not host.up and host.error:
                self._fail_host_vms(host)
        return True

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

    def alive(self) -> bool:
        """The loop ticks (it is the caller), the workers and libvirt's event thread run."""
        return self.workers.alive() and (event_loop_alive() or not self.connected)

    def _want_resync(self, reason: str) -> None:
        self._resync_reason = self._resync_reason or reason

    # --- hosts up and down ------------------------------------------------------------------

    def _on_up(self, host: Host) -> None:
        first = not self._ready and self._first_pass is None
        self._resync_reason = "start" if first else "reconnected"
        self.metrics.connected(True, metric_host(host.name))

    def _on_down(self, host: Host) -> None:
        self.metrics.connected(False, metric_host(host.name))

    def _fail_host_vms(self, host: Host) -> None:
        """The VMs placed on an unreachable host: failed (unknown), never absent."""
        load = self.manifests.current()
        names = [name for name, spec in load.specs.items()
                 if self.hosts.host_of(spec) == host.name]
        for name in names:
            self.workers.fail_unreachable(name, host.label, host.error or "not connected")
        with self._ready_lock:
            if self._first_pass is not None:
                self._first_pass.difference_update(names)

    def _processed(self, name: str) -> None:
        """A worker looked at `name`: wake the main loop for READY once the first pass is
        done, and for STATUS when the queue ran dry or every STATUS_EVERY seconds."""
        with self._ready_lock:
            first = self._first_pass
            done_first = first is not None and name in first and len(first) == 1
            if first is not None:
                first.discard(name)
        now = time.monotonic()
        if done_first or now - self._woken_at >= STATUS_EVERY or not len(self.queue):
            self._woken_at = now
            self._wake()

    def _maybe_ready(self) -> None:
        with self._ready_lock:
            if self._ready or self._first_pass is None or self._first_pass:
                return
            self._ready = True
        status = self.status_line()
        log.info("first pass done: %s", status)
        self.notifier.ready(status)

    # --- signals and shutting down -----------------------------------------------------------

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

    def _shut_down(self) -> int:
        busy = sorted(self.queue.processing())
        log.info("%s: taking no new work; finishing %s", self._stop_signal,
                 ", ".join(busy) if busy else "nothing in flight")
        self.notifier.stopping(self.status_line())
        self.queue.shut_down()
        self.watcher.stop()
        finished = self.queue.wait_idle(SHUTDOWN_TIMEOUT)
        self.guests.stop()
        for thread in self.workers.threads:
            thread.join(timeout=1)
        self.supervisor.close_all()
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

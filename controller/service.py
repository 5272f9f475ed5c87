"""`reconcile` without --once: keep the hosts converged until SIGTERM.

Called by cli.py (`run_service(args)`). Three triggers turn changes into VM
names on one work queue, and never decide what to do with them:

    manifest watcher (watch.py)     ─┐
    libvirt lifecycle events         ├─▶ WorkQueue of names ─▶ workers ─▶ Fleet.reconcile(spec)
    periodic / SIGHUP / reconnect    ─┘   (workqueue.py)                  or Fleet.prune(host, name)
    resync: every manifest + orphan

A worker reads the manifests and the domain afresh for each name, under the
VM's lock (the same one `--once` takes), so the service and a pipeline can
work side by side. The main thread owns the rest: connecting each host (in a
thread of its own, with a deadline and backoff: a missing daemon is a log
line, not a crash, and one host never holds up another), resyncs, signals,
sd_notify (READY after the first full pass, WATCHDOG while the loop runs,
STATUS, STOPPING) and the optional metrics server.

Without hosts.yaml there is one host, the -c connection. With hosts, every host
has its own connection, events, reconnects and metrics label; see fleet.py for
placement, moves and what an unreachable host means for its VMs.
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
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any

from .errors import ConnectionLost, HypervisorError, UsageError
from .fleet import DEFAULT_HOST, Fleet, HostLink
from .hypervisor import Hypervisor, WatchedHypervisor, connections_for, event_loop_alive
from .inventory import Inventory, default_state_dir
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


@dataclass
class _Connection:
    """The main loop's view of one host's connection."""

    connected: bool = False
    lost: str | None = None  # set by the close callback, read by the loop
    opener: threading.Thread | None = None
    open_error: ConnectionLost | None = None
    opened_at: float = 0.0
    connected_at: float = 0.0
    next_connect: float = 0.0
    delay: float = CONNECT_BACKOFF[0]
    said_unreachable: bool = False
    lister: threading.Thread | None = None  # the last resync's listing of this host


def metric_host(name: str) -> str:
    return name or "default"


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
        from .cli import host_options

        self.extra_hosts, self.only_host = host_options(getattr(args, "hosts", []))
        self.manifests.extra_hosts = self.extra_hosts
        step_log = StepLog(args.step_log) if getattr(args, "step_log", None) else None
        self._connections: dict[str, _Connection] = {}
        self.fleet = Fleet(
            {}, args.connect, self.locks,
            Inventory(getattr(args, "state_dir", None) or default_state_dir()),
            workers=args.workers, connect_timeout=getattr(args, "connect_timeout", 10.0),
            explicit_default=args.connect is not None,
            observer=chain(step_log, self._on_step), make_hypervisor=self._watched)
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
        self._resync_reason: str | None = None
        self._stop_signal: str | None = None
        self._heartbeat = time.monotonic()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._workers: list[threading.Thread] = []
        self._scope: set[str] = {DEFAULT_HOST}

    def _watched(self, name: str, uri: str | None) -> Hypervisor:
        return WatchedHypervisor(uri, on_event=partial(self._on_event, name),
                                 on_open=partial(self._on_open, name),
                                 on_close=partial(self._on_close, name),
                                 connections=connections_for(self.args.workers))

    def _links(self) -> list[HostLink]:
        """The hosts this service converges now."""
        return [self.fleet.links[name] for name in sorted(self._scope) if name in self.fleet.links]

    def _take_hosts(self, load: LoadResult) -> None:
        """Follow hosts.yaml: connections for new hosts, none for removed ones."""
        for link in self.fleet.set_hosts(load.hosts):
            log.info("host %s is no longer in the manifests; disconnecting", link.label)
            self._connections.pop(link.name, None)
            link.hypervisor.close()
        scope = self.fleet.scope(load, self.only_host)
        if not load.hosts and self.only_host is None:
            scope = {DEFAULT_HOST}
        for name in scope - self._scope:
            if name in self.fleet.links and name not in self._connections:
                log.info("watching host %s (%s)", self.fleet.links[name].label,
                         self.fleet.links[name].uri or "the default libvirt URI")
        self._scope = scope
        for name in scope:
            self._connections.setdefault(name, _Connection())

    @property
    def connected(self) -> bool:
        """Whether any host this service converges is connected."""
        return any(self._connections[link.name].connected for link in self._links()
                   if link.name in self._connections)

    # --- the main loop -----------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        load = self.manifests.reload().load
        if self.only_host is not None and self.only_host not in load.hosts:
            raise UsageError(f"--host {self.only_host}: no such host in hosts.yaml or "
                             "--host NAME=URI")
        self._take_hosts(load)
        if self.args.metrics_address:
            self._serve_metrics(self.args.metrics_address)
        if load.problem and not os.path.isdir(self.args.manifests):
            log.warning("waiting for manifest directory %s to appear", self.args.manifests)
        self.watcher.start()
        for index in range(max(1, self.args.workers) * max(1, len(self._scope))):
            thread = threading.Thread(target=self._work, name=f"worker-{index + 1}", daemon=True)
            thread.start()
            self._workers.append(thread)
        hosts = (", ".join(link.label for link in self._links()) if self.fleet.hosts
                 else self.uri_text)
        log.info("service started: manifests %s, libvirt %s, %d workers, resync every %gs%s",
                 self.args.manifests, hosts, len(self._workers), self.args.resync,
                 ", pruning" if self.args.prune else "")
        self._loop()
        return self._shut_down()

    def _loop(self) -> None:
        next_resync = float("inf")
        next_ping = time.monotonic()
        watchdog = self.notifier.watchdog_interval
        while self._stop_signal is None:
            now = self._heartbeat = time.monotonic()
            deadlines = [now + TICK]
            for link in self._links():
                deadlines.append(self._tend(link, now))
            if self.connected and (self._resync_reason is not None or now >= next_resync):
                reason, self._resync_reason = self._resync_reason or "periodic", None
                if self._resync(reason):
                    next_resync = time.monotonic() + self.args.resync
            if self.connected:
                deadlines.append(next_resync)
            self._maybe_ready()
            if watchdog is not None and now >= next_ping:
                if self._alive():
                    self.notifier.watchdog()
                next_ping = now + watchdog
            self.notifier.status(self.status_line())
            if watchdog is not None:
                deadlines.append(next_ping)
            self._sleep(min(deadlines) - time.monotonic())

    def _tend(self, link: HostLink, now: float) -> float:
        """One host's connection: notice a loss, start or finish a (re)connect in its own
        thread, back off. Returns when this host next needs the loop."""
        state = self._connections[link.name]
        where = link.hypervisor.uri or self.uri_text
        if state.lost is not None:
            reason, state.lost = state.lost, None
            log.warning("lost the libvirt connection to %s (%s); reconnecting", where, reason)
            if now - state.connected_at >= STABLE:
                state.next_connect, state.delay = now, CONNECT_BACKOFF[0]
            else:  # lost again right after connecting: keep backing off
                state.next_connect = now + state.delay
                state.delay = min(state.delay * 2, CONNECT_BACKOFF[1])
        if state.opener is not None:
            if state.opener.is_alive():
                waited = now - state.opened_at
                if waited >= self.fleet.connect_timeout and not state.said_unreachable:
                    state.said_unreachable = True
                    link.error = f"no answer from {where} within {self.fleet.connect_timeout:g}s"
                    log.warning("host %s is unreachable: %s; still trying", link.label,
                                link.error)
                    self._fail_host_vms(link)
                return now + max(0.1, min(1.0, self.fleet.connect_timeout - waited))
            state.opener, error = None, state.open_error
            if error is None:
                state.connected_at = time.monotonic()
                state.said_unreachable = False
                if not state.connected:  # the connection was fine after all: no _on_open ran
                    self._on_open(link.name)
            else:
                link.error = str(error)
                log.warning("%slibvirt is not reachable: %s; retrying in %gs",
                            f"host {link.label}: " if self.fleet.hosts else "", error, state.delay)
                state.next_connect = now + state.delay
                state.delay = min(state.delay * 2, CONNECT_BACKOFF[1])
                self._fail_host_vms(link)
        if not state.connected and state.opener is None:
            if now >= state.next_connect:
                state.open_error, state.opened_at = None, now
                state.opener = threading.Thread(target=self._connect, args=(link, state),
                                                name=f"connect-{link.label}", daemon=True)
                state.opener.start()
                return now + min(1.0, self.fleet.connect_timeout)
            return state.next_connect
        return float("inf")

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
        events = event_loop_alive() or not self.connected
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

    def _connect(self, link: HostLink, state: _Connection) -> None:
        """In a thread of its own: connect or reconnect one host, and wake the loop."""
        try:
            hypervisor = link.hypervisor
            if isinstance(hypervisor, WatchedHypervisor) and hypervisor.current() is None:
                hypervisor.connect()
            else:
                hypervisor.reconnect()  # nothing to do if a worker reconnected already
        except ConnectionLost as error:
            state.open_error = error
        self._wake()

    def _on_open(self, host: str) -> None:
        # Under the hypervisor's connection lock, in whichever thread reconnected.
        state = self._connections.get(host)
        if state is None:
            return
        first = not self._ready and self._first_pass is None
        state.connected = True
        self.fleet.links[host].error = None
        self._resync_reason = "start" if first else "reconnected"
        self.metrics.connected(True, metric_host(host))
        log.info("connected to %s; watching domain lifecycle events",
                 self.fleet.links[host].hypervisor.uri)
        self._wake()

    def _on_close(self, host: str, reason: str) -> None:
        # In libvirt's event thread (or a worker's).
        state = self._connections.get(host)
        if state is not None and state.connected:
            state.connected = False
            state.lost = reason
            link = self.fleet.links.get(host)
            if link is not None:
                link.error = f"the connection was lost ({reason})"
            self.metrics.connected(False, metric_host(host))
            self._wake()

    def _on_event(self, host: str, name: str, event: str) -> None:
        # In libvirt's event thread: only say which name to look at.
        log.debug("libvirt event on %s: %s %s", host or "default", name, event)
        self._enqueue([name], f"libvirt event '{event}'")

    def _fail_unreachable(self, name: str, link: HostLink) -> None:
        self._set_state(name, FAILED)
        self._say(name, logging.WARNING, f"host {link.label} is unreachable: {link.error}")

    def _fail_host_vms(self, link: HostLink) -> None:
        """The VMs placed on an unreachable host: failed (unknown), never absent."""
        load = self.manifests.current()
        names = [name for name, spec in load.specs.items()
                 if self.fleet.host_of(spec) == link.name]
        for name in names:
            self._fail_unreachable(name, link)
        with self._lock:
            if self._first_pass is not None:
                self._first_pass.difference_update(names)

    # --- triggers → names --------------------------------------------------------------------

    def _enqueue(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self._why[name] = why
            self.queue.add(name)

    def _on_manifest_change(self, touched: set[str]) -> None:
        load, names, before = self.manifests.reload(touched)
        if load.hosts != before.hosts:
            self._resync_reason = self._resync_reason or "hosts changed"
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
        self._take_hosts(load)
        self.watcher.rearm()
        self._note_invalid(load)
        named = frozenset(load.specs) | frozenset(load.invalid_names)
        orphans: set[str] = set()
        listed = False
        for link, listing in self._list_hosts(named):
            if listing is None:
                log.warning("resync (%s): no answer from %s within %gs", reason, link.label,
                            self.fleet.connect_timeout)
                link.hypervisor.give_up()
                self._on_close(link.name, "no answer")
                continue
            if isinstance(listing, ConnectionLost):
                log.warning("resync (%s) cannot list the domains of %s: %s", reason,
                            link.label, listing)
                self._on_close(link.name, "error")
                continue
            if isinstance(listing, HypervisorError):
                log.warning("resync (%s): orphans on %s unknown: %s", reason, link.label,
                            listing)
                listed = True
                continue
            snapshot, managed = listing
            listed = True
            orphans |= managed
            self.fleet.inventory.record(link.name, (set(snapshot.domains) & named) | managed)
        if not listed:
            return False
        placed = {name: self.fleet.host_of(spec) for name, spec in load.specs.items()
                  if self.fleet.host_of(spec) in self._scope}
        unreachable = [link for link in self._links()
                       if not self._connections[link.name].connected]
        # A VM of an unreachable host is failed below, not queued: the resync after its
        # host connects queues it.
        names = {name for name, host in placed.items()
                 if self._connections[host].connected} | orphans
        with self._lock:
            self._orphans = orphans
            for name in set(self._states) - set(placed) - orphans - load.invalid_names:
                del self._states[name]
            if not self._ready:
                self._first_pass = set(names)
        self._enqueue(sorted(names), f"resync ({reason})")
        for link in unreachable:
            if link.error:
                self._fail_host_vms(link)
        level = logging.DEBUG if reason == "periodic" else logging.INFO
        log.log(level, "resync (%s): %d VMs, %d orphans queued (%.0f ms)", reason,
                len(load.specs), len(orphans), (time.monotonic() - started) * 1000)
        return True

    def _list_hosts(self, named: frozenset[str]) -> list[tuple[HostLink, Any]]:
        """Each connected host's domains and orphans, read in parallel: (snapshot, managed
        names), the HypervisorError, or None when the host stopped answering. A call to a
        host cut off mid-call can wait far longer than keepalive promises (libvirt 9.0,
        seen in tests/multihost), and the loop must go on."""
        results: dict[str, Any] = {}

        def list_host(link: HostLink) -> None:
            try:
                snapshot = link.hypervisor.snapshot()
                results[link.name] = (snapshot,
                                      link.hypervisor.managed_domains(snapshot, skip=named))
            except HypervisorError as error:
                results[link.name] = error

        started: list[tuple[HostLink, threading.Thread]] = []
        for link in self._links():
            state = self._connections[link.name]
            if not state.connected:
                continue
            if state.lister is not None and state.lister.is_alive():
                started.append((link, state.lister))  # the last listing has no answer yet
                continue
            state.lister = threading.Thread(target=list_host, args=(link,), daemon=True,
                                            name=f"list-{link.label}")
            state.lister.start()
            started.append((link, state.lister))
        # A host is given up when none of its calls started for a whole connect timeout:
        # a long listing of a slow host is progress, not silence.
        calls = {link.name: link.hypervisor.calls for link, _ in started}
        waiting = started
        while waiting:
            deadline = time.monotonic() + self.fleet.connect_timeout
            for _, thread in waiting:
                thread.join(max(0.0, deadline - time.monotonic()))
            moving = []
            for link, thread in waiting:
                if thread.is_alive() and link.hypervisor.calls != calls[link.name]:
                    calls[link.name] = link.hypervisor.calls
                    moving.append((link, thread))
            waiting = moving
        return [(link, results.get(link.name)) for link, _ in started]

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
        load = self.manifests.current()
        spec = load.specs.get(name)
        if spec is not None:
            host = self.fleet.host_of(spec)
            if host not in self._scope:
                log.debug("%s: placed on host %s, not handled here", name, host)
                self._forget(name)
                return True
            link = self.fleet.links[host]
            if not self._connections[host].connected:
                if link.error:
                    self._fail_unreachable(name, link)
                log.debug("%s: %s not connected; the resync after connecting covers it",
                          name, link.label)
                return bool(link.error)
            started = time.monotonic()
            self._step.host = host
            outcome = self.fleet.reconcile(spec)
            self._finish_steps()
            self._record(outcome, time.monotonic() - started, why)
        elif name in load.invalid_names:
            self._set_state(name, FAILED)
            self._say(name, logging.WARNING, "its manifest is invalid; leaving the domain as it is")
        else:
            if not self.connected:
                return False
            self._orphan(name, load, why)
        return True

    def _record(self, outcome: Outcome, seconds: float, why: str) -> None:
        name, result = outcome.name, outcome.result
        host = outcome.host or DEFAULT_HOST
        self.metrics.reconciled(result.value, seconds, metric_host(host))
        self._set_state(name, _STATE_OF.get(result, FAILED))
        steps = ", ".join(step.action.value for step in outcome.steps)
        if result is Result.FAILED:
            link = self.fleet.links.get(host)
            if link is not None and not link.hypervisor.alive():
                self._on_close(host, "error")  # the resync after reconnecting retries it
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
        """`name` has no manifest: prune it on each connected host where it is managed."""
        hosts = []
        for link in self._links():
            if not self._connections[link.name].connected:
                continue
            try:
                observed = link.hypervisor.observe(name)
            except HypervisorError as error:
                if not link.hypervisor.alive():
                    self._on_close(link.name, "error")
                self._say(name, logging.WARNING, f"cannot tell whether it is an orphan on "
                                                 f"{link.label}: {error}")
                return
            if observed.exists and observed.managed:
                hosts.append(link.name)
        if not hosts:
            log.debug("%s: neither in the manifests nor a managed domain; ignored", name)
            self._forget(name)
            return
        for host in hosts:
            self._orphan_on(host, name, load, why)

    def _orphan_on(self, host: str, name: str, load: LoadResult, why: str) -> None:
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
                               strict_permissions=self.manifests.strict_permissions,
                               extra_hosts=self.extra_hosts)
        if name in fresh.specs or name in fresh.invalid_names or not fresh.prune_safe:
            return  # the directory changed again: the watcher queues it with the new state
        orphans = 0
        for link in self._links():
            if not self._connections[link.name].connected:
                continue
            try:
                orphans += len(link.hypervisor.managed_domains()
                               - set(fresh.specs) - fresh.invalid_names)
            except HypervisorError as error:
                self._say(name, logging.WARNING, f"orphan not pruned: {error}")
                return
        if orphans > self.args.max_prune:
            self._set_state(name, FAILED)
            self._say(name, logging.ERROR, f"orphan not pruned: {orphans} orphans exceed "
                                           f"--max-prune {self.args.max_prune}")
            return
        started = time.monotonic()
        self._step.host = host
        outcome = self.fleet.prune(host, name)
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
                self.metrics.step(pending.action.value, "failed", self._step_host(pending))
            self._step.pending = step
        else:
            self.metrics.step(step.action.value, "done", self._step_host(step))
            self._step.pending = None

    def _step_host(self, step: Step) -> str:
        """The metrics label of where a step ran: a move's steps say; others run on the
        host of the VM the worker is on."""
        return metric_host(step.host if step.host is not None
                           else getattr(self._step, "host", DEFAULT_HOST))

    def _finish_steps(self) -> None:
        pending: Step | None = getattr(self._step, "pending", None)
        if pending is not None:
            self.metrics.step(pending.action.value, "failed", self._step_host(pending))
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
        down = self._unreachable()
        if down and not self.fleet.hosts:
            text += f"; libvirt unreachable ({self.uri_text})"
        elif down:
            text += f"; unreachable: {', '.join(down)}"
        return text

    def _unreachable(self) -> list[str]:
        return [link.label for link in self._links()
                if link.name in self._connections and not self._connections[link.name].connected]

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
        for name in self._scope:
            metrics.connected(False, metric_host(name))
        self.metrics = metrics
        log.info("metrics on http://%s:%d/metrics and /healthz",
                 f"[{host}]" if ":" in host else host, port)

    def health(self) -> tuple[bool, str]:
        """Healthy while the loop runs and some host is connected; with several hosts, one
        host down is the host's trouble, reported in the reason, not the service's."""
        if not self.connected:
            if not self.fleet.hosts:
                return False, f"libvirt unreachable ({self.uri_text})"
            return False, f"no host reachable: {', '.join(self._unreachable())}"
        stale = time.monotonic() - self._heartbeat
        if stale > 3 * TICK:
            return False, f"service loop stuck for {stale:.0f}s"
        if not self._alive():
            return False, "a worker or the libvirt event thread died"
        down = self._unreachable()
        return True, f"ok; unreachable: {', '.join(down)}" if down else "ok"

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
        for link in list(self.fleet.links.values()):
            state = self._connections.get(link.name)
            if state is None or state.opener is None or not state.opener.is_alive():
                link.hypervisor.close()  # an open still in flight holds the connection lock
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


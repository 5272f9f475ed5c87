"""The service's workers: take a name from the queue, reconcile it, act on the outcome.

Each worker runs `Reconciler.reconcile(name)` (the same function and lock as
`--once`) and then does what the outcome's cause says: forget the name (done,
terminal), back off and retry (retry), or leave it to the resync after the host
reconnects (host unreachable). A bug in one reconcile is logged, backed off, and
never kills the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..hosts import DEFAULT_HOST, Hosts
from ..images_reconcile import KEY_PREFIX as IMAGE_KEY
from ..metrics import Recorder
from ..model import Cause, Outcome, Result, Step
from ..reconciler import Reconciler
from ..resourcekinds import kind_of_key
from ..watch import ManifestSet
from ..workqueue import WorkQueue
from .states import FAILED, ORPHAN, STATE_OF, VMStates

log = logging.getLogger("controller.service")


def metric_host(name: str) -> str:
    return name or "default"


class Workers:
    """The pool of worker threads and what they do with each name."""

    def __init__(self, *, queue: WorkQueue, reconciler: Reconciler, hosts: Hosts,
                 manifests: ManifestSet, states: VMStates, scope: Callable[[], set[str]],
                 metrics: Callable[[], Recorder], processed: Callable[[str], None],
                 lost: Callable[[str], None],
                 on_outcome: Callable[[Outcome], None] | None = None):
        self.queue = queue
        self.reconciler = reconciler
        self.hosts = hosts
        self.manifests = manifests
        self.states = states
        self._scope = scope
        self._metrics = metrics
        self._processed = processed  # a name was looked at (the first pass, READY)
        self._lost = lost  # a worker found a host's connection lost
        self._on_outcome = on_outcome  # each reconcile's outcome (the guest watch)
        self.why: dict[str, str] = {}  # what queued each name last
        self.threads: list[threading.Thread] = []
        self._step = threading.local()

    def start(self, count: int) -> None:
        for index in range(count):
            thread = threading.Thread(target=self._work, name=f"worker-{index + 1}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self.threads)

    def _work(self) -> None:
        while True:
            name = self.queue.get()
            if name is None:
                return
            try:
                processed = self._process(name)
            except Exception:  # a bug must not kill the worker: report it and back off
                log.exception("%s: unexpected error", name)
                self.states.put(name, FAILED)
                self.queue.add_rate_limited(name)
                processed = True
            finally:
                self.queue.done(name, taking_next=True)
            if processed:
                self._processed(name)

    def _process(self, name: str) -> bool:
        """Look at one name once. False when it could not be looked at (no connection)."""
        why = self.why.pop(name, "")
        if name.startswith(IMAGE_KEY):
            return self._image(name, why)
        if kind_of_key(name) is not None:
            return self._resource(name, why)
        load = self.manifests.current()
        spec = load.specs.get(name)
        if spec is not None:
            host = self.hosts.get(self.hosts.host_of(spec))
            if host is None or host.name not in self._scope():
                log.debug("%s: placed on host %s, not handled here", name,
                          self.hosts.host_of(spec))
                self.forget(name)
                return True
            if not host.up:
                if host.error:
                    self.fail_unreachable(name, host.label, host.error)
                log.debug("%s: %s not connected; the resync after connecting covers it",
                          name, host.label)
                return bool(host.error)
            self._step.host = host.name
        elif not any(self.hosts[h].up for h in self._scope() if self.hosts.get(h)):
            return False
        started = time.monotonic()
        outcome = self.reconciler.reconcile(name)
        self._finish_steps()
        self.record(outcome, time.monotonic() - started, why)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return True

    def record(self, outcome: Outcome, seconds: float, why: str) -> None:
        name, result = outcome.name, outcome.result
        host = outcome.host or DEFAULT_HOST
        steps = ", ".join(step.action.value for step in outcome.steps)
        say = self.states.say
        if outcome.spec is None and result is Result.UNCHANGED and not outcome.orphan:
            log.debug("%s: neither in the manifests nor a managed domain; ignored", name)
            if name in self.manifests.current().invalid_names:
                self.states.put(name, FAILED)
                say(name, logging.WARNING, "its manifest is invalid, and no managed domain "
                                           "has its name")
            else:
                self.forget(name)
            return
        self._metrics().reconciled(result.value, seconds, metric_host(host))
        if outcome.orphan:
            self._record_orphan(outcome, seconds, why)
            return
        self.states.put(name, STATE_OF.get(result, FAILED))
        if result is Result.FAILED:
            if outcome.cause is Cause.HOST_UNREACHABLE:
                self._lost(host)  # the resync after reconnecting retries it
                say(name, logging.WARNING, f"failed while libvirt was away: {outcome.error}")
                return
            if outcome.cause is Cause.TERMINAL:  # e.g. left as it is: its manifest is invalid
                self.queue.forget(name)
                say(name, logging.WARNING, f"{outcome.error}")
                return
            delay = self.queue.add_rate_limited(name)
            say(name, logging.ERROR, f"failed: {outcome.error}; retrying in {delay:g}s",
                once=False)
            return
        self.queue.forget(name)
        if result is Result.CONFLICT:
            say(name, logging.ERROR, f"conflict: {outcome.error}")
        elif result is Result.SUSPENDED:
            drift = "; ".join(str(change) for change in outcome.changes) or steps
            say(name, logging.WARNING, f"drift found, nothing changed (suspend): {drift}")
        elif result is Result.RESTART_PENDING:
            say(name, logging.INFO, f"restart pending: {outcome.note}")
        elif outcome.steps:
            say(name, logging.INFO, f"{result.value} ({steps}) after {why}", once=False)
        else:
            say(name, logging.DEBUG, f"{result.value} after {why}", once=False)

    def _record_orphan(self, outcome: Outcome, seconds: float, why: str) -> None:
        name = outcome.name
        say = self.states.say
        if outcome.result is Result.PRUNED:
            steps = ", ".join(step.action.value for step in outcome.steps)
            say(name, logging.INFO, f"pruned ({steps}) after {why}", once=False)
            self.forget(name)
            return
        if outcome.cause is Cause.RETRY and outcome.retry_after is not None:
            self.states.put(name, ORPHAN)
            self.queue.add_after(name, outcome.retry_after)
            return
        if outcome.result is Result.FAILED:
            self.states.put(name, FAILED)
            if outcome.cause is Cause.RETRY:
                delay = self.queue.add_rate_limited(name)
                say(name, logging.ERROR, f"failed: {outcome.error}; retrying in {delay:g}s",
                    once=False)
            else:
                say(name, logging.ERROR, f"{outcome.error}")
            return
        self.states.put(name, ORPHAN)
        level = logging.INFO if (outcome.note or "").startswith("orphan:") else logging.WARNING
        say(name, level, outcome.note or "orphan")

    def _image(self, key: str, why: str) -> bool:
        """An Image: import it where it is needed; then look at the VMs made from it."""
        name = key[len(IMAGE_KEY):]
        outcomes = self.reconciler.reconcile_image(name)
        retry = False
        for outcome in outcomes:
            where = f" on host {outcome.host}" if outcome.host else ""
            if outcome.result is Result.FAILED:
                retry = retry or outcome.cause is not Cause.HOST_UNREACHABLE
                self.states.say(key, logging.ERROR, f"failed{where}: {outcome.error}",
                                once=False)
            elif outcome.steps:
                steps = ", ".join(step.action.value for step in outcome.steps)
                self.states.say(key, logging.INFO, f"{outcome.result.value}{where} ({steps}) "
                                                   f"after {why}", once=False)
        if retry:
            self.queue.add_rate_limited(key)
            return True
        self.queue.forget(key)
        if any(outcome.steps for outcome in outcomes):
            load = self.manifests.current()
            users = [spec.name for spec in load.specs.values()
                     if any(disk.image == name for disk in spec.disks)]
            for user in sorted(users):
                self.why[user] = f"image {name} imported"
                self.queue.add(user)
        return True

    def _resource(self, key: str, why: str) -> bool:
        """A network or storage pool: converge it on its host (and any orphan copy); then
        look again at the VMs that need it, once it changed."""
        found = kind_of_key(key)
        assert found is not None
        kind, name = found
        started = time.monotonic()
        outcomes = self.reconciler.reconcile_resource(key)
        seconds = time.monotonic() - started
        retry_after: float | None = None
        retry = False
        for outcome in outcomes:
            where = f" on host {outcome.host}" if outcome.host else ""
            self._metrics().reconciled(outcome.result.value, seconds,
                                       metric_host(outcome.host or DEFAULT_HOST))
            if outcome.result in (Result.FAILED, Result.CONFLICT):
                retry = retry or outcome.cause is Cause.RETRY
                self.states.say(key, logging.ERROR if outcome.cause is Cause.RETRY
                                else logging.WARNING,
                                f"{outcome.result.value}{where}: {outcome.error}")
            elif outcome.cause is Cause.RETRY and outcome.retry_after is not None:
                retry_after = outcome.retry_after
            elif outcome.result is Result.RESTART_PENDING:
                self.states.say(key, logging.INFO, f"restart pending{where}: {outcome.note}")
            elif outcome.steps:
                steps = ", ".join(step.action.value for step in outcome.steps)
                self.states.say(key, logging.INFO, f"{outcome.result.value}{where} "
                                                   f"({steps}) after {why}", once=False)
            elif outcome.orphan and outcome.note:
                self.states.say(key, logging.INFO, outcome.note)
        if retry:
            self.queue.add_rate_limited(key)
        elif retry_after is not None:
            self.queue.add_after(key, retry_after)
        else:
            self.queue.forget(key)
        if any(outcome.steps and outcome.result is not Result.FAILED for outcome in outcomes):
            for user in kind.users(self.manifests.current(), name):
                self.why[user] = f"{kind.label} {name} changed"
                self.queue.add(user)
        return True

    def fail_unreachable(self, name: str, label: str, error: str) -> None:
        self.states.put(name, FAILED)
        self.states.say(name, logging.WARNING, f"host {label} is unreachable: {error}")

    def forget(self, name: str) -> None:
        self.states.forget(name)
        self.queue.forget(name)

    # --- step metrics ------------------------------------------------------------------

    def on_step(self, name: str, step: Step, phase: str) -> None:
        # Called by the executor in the worker's thread; one VM per thread at a time.
        pending: Step | None = getattr(self._step, "pending", None)
        if phase == "start":
            if pending is not None:  # the previous step ended in an error handled above
                self._metrics().step(pending.action.value, "failed", self._step_host(pending))
            self._step.pending = step
        else:
            self._metrics().step(step.action.value, "done", self._step_host(step))
            self._step.pending = None

    def _step_host(self, step: Step) -> str:
        """The metrics label of where a step ran: a move's steps say; others run on the
        host of the VM the worker is on."""
        return metric_host(step.host if step.host is not None
                           else getattr(self._step, "host", DEFAULT_HOST))

    def _finish_steps(self) -> None:
        pending: Step | None = getattr(self._step, "pending", None)
        if pending is not None:
            self._metrics().step(pending.action.value, "failed", self._step_host(pending))
            self._step.pending = None
        self._step.host = DEFAULT_HOST

"""Runs one VM's plan: its steps strictly in order, each retried on transient errors.

Called by the reconciler while it holds the VM's lock. A step that fails for good
stops the plan there (later steps depend on earlier ones); what was done is
reported with the error. Connection loss, "already exists" and a domain that
vanished are left to the reconciler, which observes afresh and plans again rather
than guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .errors import HypervisorError, PermanentError, TransientError
from .model import Action, Step
from .resource_steps import RESOURCE_ACTIONS, run_resource_step
from .storage_steps import StepContext, copy_to, migrate_with_volumes, run_storage_step
from .virt import Hypervisor

NO_CONTEXT = StepContext()
STORAGE_ACTIONS = frozenset({Action.IMPORT_IMAGE, Action.CREATE_VOLUME, Action.GROW_VOLUME,
                             Action.CREATE_SEED, Action.DELETE_VOLUME})

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How a step is retried on transient errors: attempts, waits and the total bound."""

    attempts: int = 5
    first_wait: float = 0.2
    max_wait: float = 5.0
    max_total: float = 60.0


class StepFailed(Exception):
    """A step failed for good; `done` holds the steps completed before it."""

    def __init__(self, step: Step, error: HypervisorError, done: list[Step]):
        super().__init__(f"{step.action.value} failed: {error}")
        self.step = step
        self.error = error
        self.done = done


StepObserver = Callable[[str, Step, str], None]  # (vm name, step, "start" | "done")


def execute(
    hypervisor: Hypervisor,
    name: str,
    steps: tuple[Step, ...],
    *,
    retry: RetryPolicy = RetryPolicy(),
    observer: StepObserver | None = None,
    hosts: Mapping[str, Hypervisor] | None = None,
    context: StepContext = NO_CONTEXT,
) -> list[Step]:
    """Run `steps` on domain `name` in order; return them once all are done.

    A step that names a host (a move's steps) runs on that one of `hosts`; the
    others run on `hypervisor`.
    """
    # Imported here: tenacity costs ~20 ms of start-up, and a no-op pass runs no step.
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    done: list[Step] = []
    for step in steps:
        log.info("%s: %s (%s)", name, step.action.value, step.reason)
        if observer:
            observer(name, step, "start")
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_exponential(multiplier=retry.first_wait, max=retry.max_wait),
                stop=stop_after_attempt(retry.attempts) | stop_after_delay(retry.max_total),
                reraise=True,
                before_sleep=partial(_log_retry, name, step),
            ):
                with attempt:
                    target = (hypervisor if step.host is None or hosts is None
                              else hosts[step.host])
                    if step.action in STORAGE_ACTIONS:
                        run_storage_step(target, name, step, context)
                    elif step.action in RESOURCE_ACTIONS:
                        run_resource_step(target, name, step)
                    else:
                        _run(target, name, step, hosts)
        except (TransientError, PermanentError) as error:
            raise StepFailed(step, error, done) from error
        # ConnectionLost, AlreadyExists, DomainNotFound propagate: the reconciler observes again.
        if observer:
            observer(name, step, "done")
        done.append(step)
    return done


def _log_retry(name: str, step: Step, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("%s: %s will be retried: %s", name, step.action.value, error)


def _run(hypervisor: Hypervisor, name: str, step: Step,
         hosts: Mapping[str, Hypervisor] | None) -> None:
    steps = hypervisor.steps
    action = step.action
    if action is Action.MIGRATE:
        assert step.xml is not None and step.to_host is not None and hosts is not None
        if step.volumes:
            migrate_with_volumes(hypervisor, hosts[step.to_host], name, step)
        else:
            steps.migrate(name, hosts[step.to_host].connection, persist_xml=step.xml)
    elif action is Action.COPY_VOLUME:
        assert step.to_host is not None and hosts is not None
        copy_to(hypervisor, hosts[step.to_host], step)
    elif action is Action.SET_MEMORY:
        assert step.memory_kib is not None
        steps.set_memory_live(name, step.memory_kib)
    elif action is Action.ATTACH:
        assert step.xml is not None
        steps.attach_device(name, step.xml)
    elif action is Action.DETACH:
        assert step.xml is not None
        steps.detach_device(name, step.xml)
    elif action is Action.SHUTDOWN:
        steps.shutdown(name, step.timeout or 0)
    elif action is Action.DESTROY:
        steps.destroy(name)
    elif action is Action.UNDEFINE:
        steps.undefine(name)
    elif action is Action.DEFINE:
        assert step.xml is not None
        steps.define(step.xml)
    elif action is Action.AUTOSTART:
        steps.set_autostart(name, bool(step.autostart))
    elif action is Action.START:
        steps.start(name)
    else:  # pragma: no cover - every Action is handled above
        raise AssertionError(action)

"""Several `reconcile --once` runs and the service at once, over the same VMs, with
conflicting manifest edits in between: nothing but lock waits, every VM converged to the
last manifest in the end, and a shared step log that shows no two plans interleaved on
one VM. First, the check of that log itself, on logs made up to break it."""

from __future__ import annotations

import json
import os
import random
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.service.support import ServiceProcess
from tests.support.command import clean_env, command
from tests.support.domains import MIB, read_domain
from tests.support.manifests import Manifests, vm_manifest, write_atomically
from tests.support.sandbox import Host
from tests.support.waiting import wait_until

from .conftest import FIGURES
from .support import (
    TROUBLE_LINE,
    Event,
    Plans,
    interleavings,
    once_plans,
    read_step_log,
    service_plans,
)

VMS = int(os.environ.get("RECONCILE_CONCURRENT_VMS", "20"))
RUNS = int(os.environ.get("RECONCILE_CONCURRENT_RUNS", "3"))
ROUNDS = int(os.environ.get("RECONCILE_CONCURRENT_ROUNDS", "2"))
SEED = int(os.environ.get("RECONCILE_CONCURRENT_SEED", "20240605"))


# --- the interleaving check --------------------------------------------------------------

def _events(*rows: tuple[int, str, str, str]) -> list[Event]:
    return [Event(line, pid, vm, action, phase)
            for line, (pid, vm, action, phase) in enumerate(rows, start=1)]


def _steps(pid: int, vm: str, *actions: str) -> list[tuple[int, str, str, str]]:
    return [(pid, vm, action, phase) for action in actions for phase in ("start", "done")]


def test_check_accepts_plans_that_follow_each_other() -> None:
    events = _events(*_steps(1, "a", "destroy", "define"), *_steps(2, "b", "start"),
                     *_steps(2, "a", "start"), *_steps(1, "a", "destroy"))
    plans: Plans = {(1, "a"): [["destroy", "define"], ["destroy"]], (2, "a"): [["start"]],
                    (2, "b"): [["start"]]}
    assert interleavings(events, plans) == []


def test_check_finds_a_plan_inside_another() -> None:
    # pid 2's whole plan lies between two steps of pid 1's one plan.
    events = _events(*_steps(1, "a", "destroy"), *_steps(2, "a", "define"),
                     *_steps(1, "a", "define", "start"))
    plans: Plans = {(1, "a"): [["destroy", "define", "start"]], (2, "a"): [["define"]]}
    assert interleavings(events, plans) == [
        "a: plan 1 of pid 1 (lines 1-8) interleaved with pid 2"]


def test_check_finds_overlapping_steps() -> None:
    events = _events((1, "a", "destroy", "start"), (2, "a", "destroy", "start"),
                     (1, "a", "destroy", "done"), (2, "a", "destroy", "done"))
    plans: Plans = {(1, "a"): [["destroy"]], (2, "a"): [["destroy"]]}
    assert interleavings(events, plans) == [
        "a: plan 1 of pid 1 (lines 1-3) interleaved with pid 2",
        "a: plan 1 of pid 2 (lines 2-4) interleaved with pid 1"]


def test_check_splits_the_plans_of_one_process() -> None:
    # The same events are fine when pid 1 ran two plans, and wrong when it ran one.
    events = _events(*_steps(1, "a", "destroy"), *_steps(2, "a", "start"),
                     *_steps(1, "a", "define"))
    two: Plans = {(1, "a"): [["destroy"], ["define"]], (2, "a"): [["start"]]}
    one: Plans = {(1, "a"): [["destroy", "define"]], (2, "a"): [["start"]]}
    assert interleavings(events, two) == []
    assert interleavings(events, one) == [
        "a: plan 1 of pid 1 (lines 1-6) interleaved with pid 2"]


def test_check_finds_events_no_plan_accounts_for() -> None:
    events = _events(*_steps(1, "a", "destroy"), (1, "a", "define", "start"),
                     *_steps(3, "b", "start"))
    plans: Plans = {(1, "a"): [["destroy", "define"]], (2, "a"): [["start"]]}
    assert interleavings(events, plans) == [
        "pid 2 ran steps on a that the step log lacks",
        "pid 1 on a: 1 step event(s) of its plans are missing from the step log",
        "line 4: pid 3 b start start: no plan of pid 3 accounts for it",
        "line 5: pid 3 b start done: no plan of pid 3 accounts for it"]


def test_plans_are_read_from_reports_and_service_logs() -> None:
    report = {"vms": [{"name": "a", "steps": [{"action": "destroy", "reason": "x"},
                                              {"action": "start", "reason": "y"}]},
                      {"name": "b", "steps": []}]}
    assert once_plans(7, report) == {(7, "a"): [["destroy", "start"]]}
    log = ["12:00:00 reconcile INFO a: destroy (memory 64 MiB → 80 MiB needs a restart)",
           "12:00:01 reconcile INFO a: converged (destroy, define, start) after manifest change",
           "12:00:02 reconcile INFO b: converged (define) after libvirt event 'undefined'",
           "12:00:03 reconcile INFO a: converged (start) after resync (SIGHUP)"]
    assert service_plans(9, log) == {(9, "a"): [["destroy", "define", "start"], ["start"]],
                                     (9, "b"): [["define"]]}


# --- the real thing ----------------------------------------------------------------------

Desired = dict[str, tuple[str, int]]  # name → (state, memory MiB)


def _write(manifests: Path, desired: Desired) -> None:
    for name, (state, memory) in desired.items():
        write_atomically(manifests / f"{name}.yaml",
                         vm_manifest(name, state=state, memory=f"{memory}MiB"))


def _random_edit(rng: random.Random, names: list[str]) -> Desired:
    return {name: (rng.choices(("running", "stopped", "absent"), weights=(5, 3, 2))[0],
                   rng.choice((64, 80, 96))) for name in names}


def _has_read_manifests(proc: subprocess.Popen[str], lock_dir: Path) -> bool:
    """Whether the run has a VM's lock file open (or has ended)."""
    if proc.poll() is not None:
        return True
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
    except FileNotFoundError:
        return True
    for fd in fds:
        try:
            if Path(os.readlink(f"/proc/{proc.pid}/fd/{fd}")).parent == lock_dir:
                return True
        except OSError:
            continue
    return False


class OnceRun:
    """One `reconcile --once -o json -v` child process."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=clean_env())
        self.stdout = self.stderr = ""

    def finish(self) -> dict[str, Any]:
        self.stdout, self.stderr = self.proc.communicate(timeout=600)
        where = (f"pid {self.proc.pid} exit {self.proc.returncode}\n--- stdout\n{self.stdout}"
                 f"\n--- stderr\n{self.stderr}")
        assert self.proc.returncode == 0, where
        assert "Traceback" not in self.stderr and "already exists" not in self.stderr, where
        # Nothing worse than INFO: "waited for another run's lock" is the only wait.
        assert not [line for line in self.stderr.splitlines() if TROUBLE_LINE.search(line)], where
        report: dict[str, Any] = json.loads(self.stdout)
        assert {entry["result"] for entry in report["vms"]} <= {"converged", "unchanged"}, where
        return report


@pytest.mark.e2e
def test_once_runs_and_the_service_never_interleave_on_a_vm(
    box: Host, prefix: str, manifests: Manifests, lock_dir: Path, tmp_path: Path,
    children: list[subprocess.Popen[str]],
) -> None:
    rng = random.Random(SEED)
    names = [f"{prefix}c{index:02d}" for index in range(VMS)]
    step_log = tmp_path / "steps.jsonl"
    argv = command(("--once", "-o", "json", "-v", "-c", box.uri, "--step-log", str(step_log)),
                   manifests=manifests.path, lock_dir=lock_dir)
    plans: Plans = {}
    runs: list[OnceRun] = []

    def once_pass() -> None:
        run = OnceRun(argv)
        runs.append(run)
        children.append(run.proc)
        plans.update(once_plans(run.proc.pid, run.finish()))

    desired: Desired = {name: ("running", 64) for name in names}
    _write(manifests.path, desired)
    once_pass()
    service = ServiceProcess(manifests=manifests.path, uri=box.uri, lock_dir=lock_dir,
                             args=("--resync", "3600", "--step-log", str(step_log)))
    try:
        service.wait_ready(timeout=120)
        for _round in range(ROUNDS):
            desired = _random_edit(rng, names)
            _write(manifests.path, desired)
            started = [OnceRun(argv) for _ in range(RUNS)]
            runs += started
            children.extend(run.proc for run in started)
            # The second edit lands once every run has read the first (it takes VM locks
            # only after reading the manifests): from then on, the runs and the service
            # want different things of half of the VMs.
            for run in started:
                wait_until(partial(_has_read_manifests, run.proc, lock_dir), timeout=120,
                           what=f"run {run.proc.pid} to read the manifests")
            second = _random_edit(rng, rng.sample(names, len(names) // 2))
            _write(manifests.path, second)
            desired.update(second)
            for run in started:
                plans.update(once_plans(run.proc.pid, run.finish()))
    finally:
        code = service.stop()
    service_log = service.log
    assert code == 0, service_log
    assert "Traceback" not in service_log and "already exists" not in service_log, service_log
    assert not service.matching(TROUBLE_LINE.pattern), service_log
    plans.update(service_plans(service.proc.pid, service.lines))

    once_pass()  # the final pass
    for name, (state, memory) in desired.items():
        domain = read_domain(box.conn, name)
        if state == "absent":
            assert domain is None, f"{name} should be absent"
            continue
        assert domain is not None and domain.persistent and domain.saved.managed, name
        assert domain.saved.memory_kib == memory * MIB, (name, state, memory, domain.saved)
        if state == "running":
            assert domain.running and domain.live.memory_kib == memory * MIB, (name, domain)
        else:
            assert domain.shut_off, (name, state, domain.state)

    events = read_step_log(step_log)
    assert {event.pid for event in events} <= {run.proc.pid for run in runs} | {
        service.proc.pid}
    assert interleavings(events, plans) == []
    waits = sum(run.stderr.count("waited for another run's lock") for run in runs)
    waits += len(service.matching(r"waited for another run's lock"))
    by_pid = {pid: sum(len(p) for (owner, _), p in plans.items() if owner == pid)
              for pid in {owner for owner, _ in plans}}
    service_count = by_pid.pop(service.proc.pid, 0)
    FIGURES[f"{len(runs)} reconcile --once runs ({RUNS} at a time) and the service, "
            f"{VMS} VMs"] = [
        f"seed {SEED}, {ROUNDS} rounds of 2 conflicting edits",
        (f"{len(events)} step events in {sum(len(p) for p in plans.values())} plans: "
        f"service {service_count}, --once runs {sorted(by_pid.values(), reverse=True)}"),
        (f"lock waits {waits}; interleaved plans 0; errors 0; every VM as its last manifest "
        "says after a final pass")]

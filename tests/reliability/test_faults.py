"""Faults on real libvirt with real guests: `kill -9` of `reconcile --once` at random points
of a plan, libvirtd killed and restarted in the middle of a run and of the service's work,
and a step that keeps failing.

After each fault the next run must converge every VM, no managed VM may be missing, an
unmanaged domain beside them must be untouched, and every disk image must keep its content.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.service.support import ServiceProcess
from tests.support.command import OnceRunner, Pass, clean_env, command, describe, parse_report
from tests.support.disks import qcow2
from tests.support.domains import MIB, define_unmanaged, domain_names, must_read, read_domain
from tests.support.manifests import Manifests, VMBuilder, vm_manifest, write_atomically
from tests.support.sandbox import Host
from tests.support.waiting import wait_until

from .conftest import FIGURES
from .support import (
    TROUBLE_LINE,
    StepLines,
    file_hashes,
    kill_libvirtd,
    open_steps,
    read_step_log,
)

pytestmark = pytest.mark.e2e

#: Kills of the default suite; the published figures come from a longer run.
KILLS = int(os.environ.get("RECONCILE_FAULT_KILLS", "6"))
#: Seeds the kill points (which step line, how long after it); printed with the figures.
SEED = int(os.environ.get("RECONCILE_FAULT_SEED", "20240604"))


# --- kill -9 of reconcile --once -------------------------------------------------------

class Fleet:
    """Ten managed VMs whose manifests change every round so that each round's plan
    touches all of them, an unmanaged domain beside them, and their disk images.

    r0-r3  running; memory 64 ↔ 80 MiB: destroy, define, start    (r0, r1 have a disk)
    s0-s2  stopped; memory 64 ↔ 80 MiB: define                      (s0 has a disk)
    a0-a2  running ↔ absent: define, start / destroy, undefine      (a0 has a disk)
    """

    RUNNING, STOPPED, ALTERNATING = ("r0", "r1", "r2", "r3"), ("s0", "s1", "s2"), ("a0", "a1", "a2")
    WITH_DISK = ("r0", "r1", "s0", "a0")
    #: Steps of one round's plan: 4 × 3 + 3 × 1 + 3 × 2.
    STEPS = 21

    def __init__(self, prefix: str, manifests: Manifests, vm: VMBuilder, images: Path):
        self.prefix = prefix
        self.manifests = manifests
        self.vm = vm
        self.images = images
        self.disks = {short: qcow2(images / f"{short}.qcow2") for short in self.WITH_DISK}
        qcow2(images / "spare.qcow2")  # on no VM: must simply stay
        self.memory = 64
        self.present = True

    @property
    def shorts(self) -> tuple[str, ...]:
        return self.RUNNING + self.STOPPED + self.ALTERNATING

    def write(self, round_number: int) -> None:
        """Round 0 is the start; odd rounds raise memory and remove the a-VMs."""
        self.memory = 80 if round_number % 2 else 64
        self.present = round_number % 2 == 0
        for short in self.shorts:
            spec: dict[str, Any] = {"memory": f"{self.memory}MiB"}
            if short in self.STOPPED:
                spec["state"] = "stopped"
            if short in self.ALTERNATING and not self.present:
                spec["state"] = "absent"
            if short in self.disks:
                spec["disks"] = [{"source": str(self.disks[short]), "format": "qcow2"}]
            self.manifests.write(f"{short}.yaml", self.vm(short, **spec))

    def expected_names(self) -> set[str]:
        shorts = self.RUNNING + self.STOPPED + (self.ALTERNATING if self.present else ())
        return {self.prefix + short for short in shorts}

    def check(self, conn: libvirt.virConnect) -> None:
        """Every VM exactly as this round's manifests say."""
        for short in self.shorts:
            name = self.prefix + short
            domain = read_domain(conn, name)
            if short in self.ALTERNATING and not self.present:
                assert domain is None, f"{name} should be absent"
                continue
            assert domain is not None, f"{name} is missing"
            saved = domain.saved
            assert domain.persistent and saved.managed, domain
            assert saved.memory_kib == self.memory * MIB, (name, saved)
            wanted_disks = (str(self.disks[short]),) if short in self.disks else ()
            assert saved.disks == wanted_disks, (name, saved)
            if short in self.STOPPED:
                assert domain.shut_off, f"{name} should be shut off"
            else:
                assert domain.running, f"{name} should be running"
                assert domain.live.memory_kib == self.memory * MIB, (name, domain.live)


def _converged_pass(after: Pass, names: set[str]) -> None:
    output = after.proc.stdout + after.proc.stderr
    assert "already exists" not in output, describe(after.proc)
    assert set(after.vms) == names, describe(after.proc)
    for entry in after.vms.values():
        assert entry["result"] in ("converged", "unchanged"), describe(after.proc)


def test_kill_9_at_random_points_then_one_run_converges(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, lock_dir: Path, image_dir: Path, virt_type: str, tmp_path: Path,
    children: list[subprocess.Popen[str]],
) -> None:
    rng = random.Random(SEED)
    fleet = Fleet(prefix, manifests, vm, image_dir)
    # a running domain defined the way an operator would, with no reconcile marker
    unmanaged = define_unmanaged(conn, prefix + "unmanaged", virt_type, start=True,
                                 disk=qcow2(image_dir / "unmanaged.qcow2"))
    step_log = tmp_path / "steps.jsonl"
    fleet.write(0)
    _converged_pass(once("--step-log", str(step_log), check_exit=0),
                    {prefix + short for short in fleet.shorts})
    fleet.check(conn)
    # Taken with the guests running: QEMU opening an image must not count as a change.
    hashes = file_hashes(image_dir)
    assert len(hashes) == len(fleet.disks) + 2

    kills: list[str] = []
    ended_first = rounds = 0
    interrupted: Counter[str] = Counter()
    while len(kills) < KILLS:
        rounds += 1
        assert rounds <= 2 * KILLS + 2, f"only {len(kills)} kills in {rounds - 1} rounds"
        fleet.write(rounds)
        nth, delay = rng.randint(1, Fleet.STEPS), rng.uniform(0.05, 0.2)
        argv = command(("--once", "-v", "--step-log", str(step_log)),
                       manifests=manifests.path, lock_dir=lock_dir)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=clean_env())
        children.append(proc)
        lines = StepLines(proc, prefix)
        if lines.reached(nth):
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.kill()  # SIGKILL, by the PID of the process we started
        code = lines.finish()
        assert "Traceback" not in lines.text, lines.text
        if code == 0:  # the run ended within the delay: nothing was killed
            ended_first += 1
        else:
            assert code == -9, f"exit {code}\n{lines.text}"
            cut = open_steps(read_step_log(step_log), proc.pid)
            interrupted.update(step.split()[1] for step in cut)
            kills.append(f"round {rounds}: step line {nth} + {delay * 1000:.0f} ms, "
                         f"in flight: {', '.join(cut) or 'no step'}")

        after = once("-v", "--step-log", str(step_log), check_exit=0)
        _converged_pass(after, {prefix + short for short in fleet.shorts})
        fleet.check(conn)
        present = {name for name in domain_names(conn) if name.startswith(prefix)}
        assert present == fleet.expected_names() | {unmanaged.name}
        assert must_read(conn, unmanaged.name) == unmanaged  # same XML, state, instance
        assert file_hashes(image_dir) == hashes

    FIGURES["kill -9 of reconcile --once (10 VMs, 4 with disks, 1 unmanaged beside)"] = [
        (f"seed {SEED}: kills {len(kills)}, recovered {len(kills)}, lost: 0 "
         "(VMs missing, unmanaged domains touched, disk images changed or gone); "
         f"{ended_first} run(s) ended before their kill point"),
        "steps in flight at the kills: " + ", ".join(
            f"{action} {count}" for action, count in sorted(interrupted.items())),
        *kills,
    ]


# --- libvirtd killed and restarted -----------------------------------------------------

def _four(prefix: str, manifests: Manifests, vm: VMBuilder, memory: int) -> list[str]:
    shorts = [f"d{index}" for index in range(4)]
    for short in shorts:
        manifests.write(f"{short}.yaml", vm(short, memory=f"{memory}MiB"))
    return [prefix + short for short in shorts]


def _running_with(where: libvirt.virConnect | Host, name: str, memory_mib: int) -> bool:
    """Running, persistent and managed, with `memory_mib` both saved and live."""
    domain = read_domain(where.conn if isinstance(where, Host) else where, name)
    return (domain is not None and domain.running and domain.persistent
            and domain.saved.managed and domain.saved.memory_kib == memory_mib * MIB
            and domain.live.memory_kib == memory_mib * MIB)


@pytest.mark.parametrize("outage", ["until-the-run-ends", "restarted-at-once"])
def test_libvirtd_killed_during_a_once_run(
    box: Host, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
    lock_dir: Path, outage: str, children: list[subprocess.Popen[str]],
) -> None:
    names = _four(prefix, manifests, vm, 64)
    once("-c", box.uri, check_exit=0)
    _four(prefix, manifests, vm, 80)  # each VM: destroy, define, start
    argv = command(("--once", "-o", "json", "-v", "--workers", "2", "-c", box.uri),
                   manifests=manifests.path, lock_dir=lock_dir)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    children.append(proc)
    lines = StepLines(proc, prefix)
    nth = random.Random(f"{SEED}-{outage}").randint(1, 6)  # of 12 steps, 2 VMs at a time
    try:
        assert lines.reached(nth), lines.text
        kill_libvirtd(box.sandbox)
        if outage == "restarted-at-once":
            box.sandbox.start_daemon()
        code = lines.finish()
    finally:
        box.sandbox.ensure_running()
    assert proc.stdout is not None
    result = subprocess.CompletedProcess(argv, code, proc.stdout.read(), lines.text)
    assert "Traceback" not in result.stderr, describe(result)
    report = parse_report(result)
    failed = {entry["name"]: entry["error"] for entry in report["vms"]
              if entry["result"] == "failed"}
    # Reconnecting is bounded: at most 3 tries (0.5, 1, 2 s apart) each time a VM finds the
    # connection lost, and at most 6 observations of a VM in one run.
    losses = [line for line in result.stderr.splitlines()
              if re.search(rf" {re.escape(prefix)}d\d: lost the libvirt connection ", line)]
    retries = [line for line in result.stderr.splitlines() if " reconnect failed: " in line]
    assert len(losses) <= 6 * len(names) and len(retries) <= 3 * len(losses), describe(result)
    if outage == "until-the-run-ends":
        assert code == 1 and failed, describe(result)
    assert code == (1 if failed else 0), describe(result)
    for error in failed.values():
        assert error and "\n" not in error and "libvirt error" in error, describe(result)
    for entry in report["vms"]:
        assert entry["name"] in failed or entry["result"] == "converged", describe(result)

    after = once("-c", box.uri, "-v", check_exit=0)
    assert "already exists" not in after.proc.stderr, describe(after.proc)
    for name in names:
        assert after.result(name) in ("converged", "unchanged"), describe(after.proc)
        assert _running_with(box, name, 80), must_read(box.conn, name)
    again = once("-c", box.uri, check_exit=0)
    assert {entry["result"] for entry in again.report["vms"]} == {"unchanged"}
    FIGURES.setdefault("libvirtd killed (SIGKILL) during reconcile --once, 4 VMs", []).append(
        f"{outage}, at step line {nth}: exit {code}, {len(failed)} VM(s) failed with a "
        f"one-line error, {len(names) - len(failed)} converged; the next run converged all 4; "
        f"connection lost {len(losses)} times, {len(retries)} failed reconnects"
        + (f"; e.g. {min(failed.values())}" if failed else ""))


def test_libvirtd_killed_during_a_service_plan(
    box: Host, prefix: str, tmp_path: Path, lock_dir: Path, once: OnceRunner,
    manifests: Manifests,
) -> None:
    names = [f"{prefix}s{index}" for index in range(4)]
    for name in names:
        manifests.write(f"{name}.yaml", vm_manifest(name))
    service = ServiceProcess(manifests=manifests.path, uri=box.uri, lock_dir=lock_dir,
                             args=("--resync", "3600"))
    try:
        service.wait_ready()
        for name in names:
            wait_until(partial(_running_with, box, name, 64), timeout=120,
                       what=f"{name} running")
        for name in names:
            write_atomically(manifests.path / f"{name}.yaml", vm_manifest(name, memory="80MiB"))
        service.wait_log(rf"{prefix}s\d: destroy \(", timeout=60)
        kill_libvirtd(box.sandbox)
        box.sandbox.start_daemon()
        box.close()  # our own connection died with the daemon
        service.wait_log(r"lost the libvirt connection .*; reconnecting")
        for name in names:
            wait_until(partial(_running_with, box, name, 80), timeout=120,
                       what=f"{name} running with 80 MiB")
        assert service.proc.poll() is None
        service.wait_log(r"resync \(reconnected\)")
    finally:
        code = service.stop()
        box.sandbox.ensure_running()
    assert code == 0 and "Traceback" not in service.log, service.log
    after = once("-c", box.uri, check_exit=0)
    assert {entry["result"] for entry in after.report["vms"]} == {"unchanged"}, after.report


# --- a step that keeps failing ---------------------------------------------------------

def test_a_step_that_keeps_failing_fails_that_vm_only(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, image_dir: Path, tmp_path: Path,
) -> None:
    missing = image_dir / "never-created.qcow2"
    bad = prefix + "bad"
    good = [prefix + short for short in ("ok1", "ok2", "ok3")]
    manifests.write("bad.yaml", vm("bad", disks=[{"source": str(missing)}]))
    for name in good:
        manifests.write(f"{name}.yaml", vm(name.removeprefix(prefix)))
    attempts = []
    for run_number in (1, 2):
        step_log = tmp_path / f"steps-{run_number}.jsonl"
        result = once("-v", "--step-log", str(step_log), check_exit=1)
        entry = result.vms[bad]
        assert entry["result"] == "failed", describe(result.proc)
        # libvirt's own words, on one line.
        assert re.fullmatch(
            rf"cannot start domain '{bad}': Cannot access storage file '{missing}' "
            r"\(as uid:\d+, gid:\d+\): No such file or directory \(libvirt error 38, "
            r"domain 18\)", entry["error"]), entry
        # The first run defined it, the second found it defined: only the start is left.
        assert result.actions(bad) == (["define"] if run_number == 1 else [])
        for name in good:
            wanted = "converged" if run_number == 1 else "unchanged"
            assert result.result(name) == wanted, describe(result.proc)
            assert _running_with(conn, name, 64)
        events = [event for event in read_step_log(step_log)
                  if event.vm == bad and event.action == "start"]
        starts = [event for event in events if event.phase == "start"]
        assert not [event for event in events if event.phase == "done"]
        retries = [line for line in result.proc.stderr.splitlines()
                   if f"{bad}: start will be retried" in line]
        # A permanent error: tried once, never retried (transient ones: at most 5 tries).
        attempts.append(len(starts) + len(retries))
        assert attempts[-1] == 1, describe(result.proc)
        domain = must_read(conn, bad)
        assert domain.shut_off and domain.persistent and domain.saved.managed
        assert not [line for line in result.proc.stderr.splitlines()
                    if TROUBLE_LINE.search(line) and bad not in line], result.proc.stderr
    FIGURES["a start that libvirt always rejects (missing image), 3 other VMs"] = [
        f"attempts per run: {attempts} (exit 1 each time; the 3 others converged)"]


def test_the_service_retries_a_failing_vm_with_growing_delays(
    box: Host, prefix: str, manifests: Manifests, lock_dir: Path,
) -> None:
    bad, good = prefix + "bad", prefix + "good"
    missing = f"/var/lib/libvirt/images/{prefix}none/never-created.qcow2"
    manifests.write("bad.yaml", vm_manifest(bad, extra=f"  disks:\n    - source: {missing}\n"))
    manifests.write("good.yaml", vm_manifest(good))
    service = ServiceProcess(manifests=manifests.path, uri=box.uri, lock_dir=lock_dir,
                             args=("--resync", "3600"))
    try:
        lines = service.wait_log(rf"{bad}: failed: .*; retrying in \S+s", count=4, timeout=60)
        wait_until(partial(_running_with, box, good, 64), timeout=60, what=f"{good} running")
    finally:
        code = service.stop()
    assert code == 0 and "Traceback" not in service.log, service.log
    delays = [float(line.rsplit("retrying in ", 1)[1].rstrip("s")) for line in lines]
    assert delays == [1.0, 2.0, 4.0, 8.0], lines
    assert all("Cannot access storage file" in line for line in lines), lines
    FIGURES["the service and a VM whose start always fails"] = [
        (f"retried after {', '.join(f'{d:g}' for d in delays)} s (doubling, capped at "
         "300 s); the other VM converged")]

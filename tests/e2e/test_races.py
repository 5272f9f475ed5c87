"""Crashes and concurrent runs on the real libvirtd: a `kill -9` in the middle of a run,
and the seed scenario (two runs at once wanting different things of one VM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import libvirt
import pytest

from controller.locks import VMLocks
from tests.support.command import OnceRunner, clean_env, command, parse_report
from tests.support.domains import MIB, must_read, read_domain
from tests.support.manifests import Manifests, VMBuilder
from tests.support.processes import LineReader
from tests.support.waiting import wait_until


class KillOnLine:
    """Reads a process's stderr and kills it (SIGKILL) as soon as a line contains
    `trigger`: the kill lands while the step that line announces is running."""

    def __init__(self, proc: subprocess.Popen[str], trigger: str):
        self.proc = proc
        self.trigger = trigger
        self.fired = threading.Event()
        assert proc.stderr is not None
        self._stderr = LineReader(proc.stderr, on_line=self._kill_on_trigger)

    def _kill_on_trigger(self, line: str) -> None:
        if not self.fired.is_set() and self.trigger in line:
            self.proc.send_signal(signal.SIGKILL)
            self.fired.set()

    @property
    def text(self) -> str:
        return self._stderr.text

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self._stderr.join(timeout=10)
        return code


def _converged(conn: libvirt.virConnect, name: str, memory_mib: int) -> None:
    domain = must_read(conn, name)
    assert domain.running and domain.persistent and domain.saved.managed, domain
    assert domain.saved.memory_kib == memory_mib * MIB
    assert domain.live.memory_kib == memory_mib * MIB


@pytest.mark.parametrize(("trigger", "workers"), [
    (": destroy (", "4"),   # the VMs are being destroyed (a hard destroy takes ~1.5 s)
    ("a: define (", "1"),    # a was just undefined: gone, or already defined anew
    ("a: start (", "1"),     # a is defined anew, about to start or starting
    ("b: destroy (", "1"),   # a is done, b is being destroyed, c not begun
], ids=["destroying", "at-a-define", "at-a-start", "b-destroying"])
def test_kill_9_in_the_middle_of_a_run_then_a_run_converges(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, lock_dir: Path, trigger: str, workers: str,
) -> None:
    names = [prefix + short for short in ("a", "b", "c")]

    def write(memory_mib: int, a_uuid: str) -> None:
        # a pins its UUID, so a new one makes the plan destroy, undefine, define, start.
        memory = f"{memory_mib}MiB"
        manifests.write("vms.yaml", vm("a", uuid=a_uuid, memory=memory),
                        vm("b", memory=memory), vm("c", memory=memory))

    write(64, str(uuid.uuid4()))
    once(check_exit=0)

    a_uuid = str(uuid.uuid4())
    write(80, a_uuid)
    argv = command(("--once", "-v", "--workers", workers), manifests=manifests.path,
                   lock_dir=lock_dir)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=clean_env())
    killer = KillOnLine(proc, trigger if trigger.startswith(":") else prefix + trigger)
    code = killer.wait()
    stderr = killer.text
    assert killer.fired.is_set(), f"never saw {trigger!r}; exit {code}\n{stderr}"
    assert code == -signal.SIGKILL, stderr
    assert "Traceback" not in stderr

    after = once("-v", check_exit=0)  # -v: even a handled "already exists" would show

    output = after.proc.stdout + after.proc.stderr
    assert "already exists" not in output
    assert sorted(after.vms) == names
    for name in names:
        assert after.result(name) in ("converged", "unchanged"), after.vms[name]
        _converged(conn, name, 80)
    assert must_read(conn, names[0]).uuid == a_uuid
    rerun = once(check_exit=0)
    assert {entry["result"] for entry in rerun.report["vms"]} == {"unchanged"}


def test_seed_two_runs_at_once_raise_memory_and_remove_the_same_vm(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, lock_dir: Path, tmp_path: Path,
) -> None:
    """The seed scenario: a running managed VM; two `reconcile --once` at the same moment
    over two manifest directories and one lock directory, one raising the VM's memory,
    one saying it must be absent. Repeated, since the order is up to the scheduler."""
    name = prefix + "seed"
    absent = Manifests(tmp_path / "absent")
    absent.write("seed.yaml", vm("seed", state="absent"))
    memory = 64
    manifests.write("seed.yaml", vm("seed", memory=f"{memory}MiB"))
    once(check_exit=0)
    seen: list[str] = []

    for _round in range(5):
        assert must_read(conn, name).running
        memory += 16
        manifests.write("seed.yaml", vm("seed", memory=f"{memory}MiB"))
        argvs = [command(("--once", "-o", "json", "-v", "-m", str(directory)),
                         manifests=manifests.path, lock_dir=lock_dir)
                 for directory in (manifests.path, absent.path)]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=clean_env()) for argv in argvs]
        finished = [(proc, *proc.communicate(timeout=120)) for proc in procs]

        for proc, out, err in finished:
            where = f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
            assert "Traceback" not in err and "already exists" not in err, where
            assert proc.returncode in (0, 1), where
            (entry,) = json.loads(out)["vms"]
            if proc.returncode == 0:
                assert entry["result"] in ("converged", "unchanged"), where
            else:
                assert entry["result"] == "failed", where
                assert entry["error"] and "\n" not in entry["error"], where
        # One of the two desired states, and nothing half-applied: gone, or running
        # with the new memory both saved and live.
        domain = read_domain(conn, name)
        if domain is None:
            seen.append("absent")
        else:
            _converged(conn, name, memory)
            seen.append("raised")

        third = once("-v", check_exit=0)
        assert "already exists" not in third.proc.stdout + third.proc.stderr
        assert third.result(name) in ("converged", "unchanged")
        _converged(conn, name, memory)
    print(f"seed rounds ended as: {seen}")


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (it has reached the lock and waits on it)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_a_run_waits_for_a_held_lock_then_observes_afresh(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, lock_dir: Path,
) -> None:
    """Another holder of a VM's lock (the service, another --once): an impatient run
    fails that VM with a clear message; a patient one waits, then plans from what the
    domain is by then, not from what it was when it started."""
    name = prefix + "a"
    manifests.write("a.yaml", vm("a"))
    once(check_exit=0)
    manifests.write("a.yaml", vm("a", state="stopped"))
    locks = VMLocks(str(lock_dir))

    with locks.hold(name):
        impatient = once("--lock-timeout", "0.3", check_exit=1)
        assert (impatient.result(name), impatient.actions(name)) == ("failed", [])
        assert "--lock-timeout" in impatient.vms[name]["error"]
        assert must_read(conn, name).running

        argv = command(("--once", "-o", "json", "-v"), manifests=manifests.path,
                       lock_dir=lock_dir)
        patient = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=clean_env())
        wait_until(lambda: _holds_open(patient.pid, locks.path_for(name))
                   or patient.poll() is not None, timeout=60, what="the run to reach the lock")
        assert patient.poll() is None
        conn.lookupByName(name).destroy()  # behind its back, while it waits

    out, err = patient.communicate(timeout=120)
    proc = subprocess.CompletedProcess(argv, patient.returncode, out, err)
    assert patient.returncode == 0 and "Traceback" not in err, err
    assert "waited for another run's lock" in err
    (entry,) = parse_report(proc)["vms"]
    assert (entry["result"], entry["steps"]) == ("unchanged", [])
    assert must_read(conn, name).shut_off

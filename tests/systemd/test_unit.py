"""packaging/reconcile.service under a real systemd (PID 1 of a container, conftest.py):
`systemctl start` returns after the first pass (READY=1), `reload` resyncs, `stop` lets
the steps in flight finish, a hung main loop is killed by the watchdog and restarted,
the hardening leaves libvirt reachable and the rest read-only, and the journal has one
line per event. The VMs are tiny real guests on a private libvirtd (tests/service)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from tests.service.support import virsh
from tests.support.manifests import vm_manifest
from tests.support.sandbox import Sandbox
from tests.support.waiting import wait_until

from .conftest import DROP_IN, FIGURES, MANIFESTS, Unit
from .container import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.systemd]


def _running(unit: Unit, *names: str) -> bool:
    for name in names:
        domain = unit.host.read(name)
        if domain is None or not domain.running:
            return False
    return True


def _start(unit: Unit) -> float:
    """`systemctl start reconcile`; how long it took."""
    started = time.monotonic()
    unit.systemctl("start", "reconcile.service")
    return time.monotonic() - started


def test_start_returns_after_the_first_pass(unit: Unit, prefix: str) -> None:
    names = [f"{prefix}s{index}" for index in range(3)]
    for name in names:
        unit.write_manifest(name, vm_manifest(name))
    took = _start(unit)
    # READY=1 comes once the first pass is done, so at the return every VM is converged.
    for name in names:
        domain = unit.host.read(name)
        assert domain is not None and domain.running and domain.persistent, (name, domain)
    state = unit.show("ActiveState", "SubState", "Type", "NotifyAccess", "StatusText")
    assert state["ActiveState"] == "active" and state["SubState"] == "running", state
    assert (state["Type"], state["NotifyAccess"]) == ("notify", "main"), state
    assert state["StatusText"] == "3 in sync, 0 pending, 0 failed", state
    lines = unit.messages()
    first = next(index for index, line in enumerate(lines) if "first pass done" in line)
    converged = [index for index, line in enumerate(lines) if ": converged (" in line]
    assert len(converged) == 3 and max(converged) < first, lines
    said = unit.journal("_PID=1", "UNIT=reconcile.service")
    ready_at = int(next(entry["__REALTIME_TIMESTAMP"] for entry in unit.journal(
        "SYSLOG_IDENTIFIER=reconcile") if "first pass done" in str(entry["MESSAGE"])))
    started_at = int(next(entry["__REALTIME_TIMESTAMP"] for entry in said
                          if str(entry["MESSAGE"]).startswith("Started reconcile.service")))
    assert ready_at <= started_at, (ready_at, started_at)
    FIGURES["systemctl start, 3 new running VMs"] = [f"returned after {took:.2f} s, "
                                                    "every VM running at its return"]


def test_start_waits_for_libvirt_before_ready(unit: Unit, prefix: str,
                                             sandbox: Sandbox) -> None:
    name = f"{prefix}w"
    unit.write_manifest(name, vm_manifest(name))
    sandbox.stop_daemon()
    try:
        unit.systemctl("start", "--no-block", "reconcile.service")
        unit.wait_message("libvirt is not reachable")
        assert unit.prop("ActiveState") == "activating"
        assert unit.host.sandbox.daemon is None
        pid = unit.prop("MainPID")
        # A reload asked for while starting is merged into the start job by systemd (seen
        # here: no reload job queued, no SIGHUP sent), so ExecReload's SIGHUP never comes
        # before READY=1, nor during the start-up before the service's handler is set.
        unit.systemctl("reload", "--no-block", "reconcile.service")
        jobs = unit.systemctl("list-jobs", "--no-legend", "--no-pager").stdout
        assert "reconcile.service reload" not in jobs, jobs
    finally:
        sandbox.ensure_running()
    wait_until(lambda: unit.prop("ActiveState") == "active", timeout=120, interval=0.2,
               what="the unit to become active once libvirt answers")
    assert _running(unit, name), "active before the first pass converged the VM"
    assert unit.prop("MainPID") == pid
    lines = unit.messages()
    ready = next(index for index, line in enumerate(lines) if "first pass done" in line)
    assert not [line for line in lines[:ready] if "SIGHUP" in line], lines


def test_reload_resyncs(unit: Unit, prefix: str) -> None:
    name = f"{prefix}r"
    unit.write_manifest(name, vm_manifest(name, memory="64MiB"))
    _start(unit)
    pid = unit.prop("MainPID")
    # libvirt 9.0 sends no event for this: only a resync (every hour here) would see it.
    virsh(unit.host.uri, "setmaxmem", name, "80M", "--config")
    domain = unit.host.read(name)
    assert domain is not None and domain.memory_mib == 80
    before = len(unit.messages())
    unit.systemctl("reload", "reconcile.service")
    wait_until(lambda: (d := unit.host.read(name)) is not None and d.memory_mib == 64
               and d.running, timeout=60, what=f"{name} back to 64 MiB and running")
    wait_until(lambda: any(f"{name}: converged (" in line
                           for line in unit.messages()[before:]), timeout=30,
               what="the converged line")
    line = next(line for line in unit.messages()[before:] if f"{name}: converged (" in line)
    assert line.endswith("after resync (SIGHUP)"), line
    assert unit.prop("MainPID") == pid and unit.prop("NRestarts") == "0"
    assert any("Reloading reconcile.service" in line for line in unit.systemd_messages())


def test_stop_lets_the_steps_in_flight_finish(unit: Unit, prefix: str) -> None:
    name = f"{prefix}t"
    grace = 8  # the tiny guest ignores ACPI: the shutdown step waits all of it, then destroys
    unit.write_manifest(name, vm_manifest(name, stop_timeout=grace))
    _start(unit)
    unit.write_manifest(name, vm_manifest(name, state="stopped", stop_timeout=grace))
    wait_until(lambda: any(step["vm"] == name and step["action"] == "shutdown"
                           for step in unit.steps()), timeout=30,
               what="the shutdown step to begin")
    asked = time.time()
    unit.systemctl("stop", "reconcile.service")
    took = time.time() - asked
    steps = [(step["action"], step["phase"]) for step in unit.steps() if step["vm"] == name]
    assert steps[-2:] == [("shutdown", "start"), ("shutdown", "done")], steps
    done = [step for step in unit.steps() if step["vm"] == name][-1]
    assert done["time"] > asked, ("the step was done before the stop began: nothing in "
                                  f"flight: {unit.steps()}, asked at {asked}")
    domain = unit.host.read(name)
    assert domain is not None and not domain.running
    state = unit.show("ActiveState", "Result", "ExecMainStatus")
    # "success": it exited 0 by itself; a SIGKILL after TimeoutStopSec= would be "timeout".
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, state
    lines = unit.messages()
    assert any(line.endswith(f"SIGTERM: taking no new work; finishing {name}")
               for line in lines), lines
    assert any(f"{name}: converged (shutdown) after manifest change" in line
               for line in lines), lines
    assert lines[-1].endswith("stopped"), lines
    assert not [line for line in unit.systemd_messages() if "Killing" in line
                or "timed out" in line], unit.systemd_messages()
    FIGURES["systemctl stop during a shutdown step"] = [
        f"returned after {took:.1f} s, once the step was done; exit 0"]


def _thread_states(pid: int) -> dict[int, str]:
    """Each thread of `pid`: its state letter from /proc (t: stopped by a tracer)."""
    states = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        states[int(task.name)] = stat.rsplit(")", 1)[1].split()[0]
    return states


@pytest.mark.parametrize("hang", ["main thread (ptrace)", "whole process (SIGSTOP)"])
def test_watchdog_kills_a_hung_main_loop_and_it_restarts(unit: Unit, prefix: str,
                                                        hang: str) -> None:
    name = f"{prefix}d"
    unit.box.write(DROP_IN, "[Service]\nWatchdogSec=3s\nRestartSec=1s\n")
    unit.systemctl("daemon-reload")
    unit.write_manifest(name, vm_manifest(name))
    _start(unit)
    pid = unit.main_pid()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"WATCHDOG_USEC=3000000" in environ
    holder: subprocess.Popen[str] | None = None
    hung = time.monotonic()
    try:
        if hang.startswith("main thread"):
            holder = subprocess.Popen([sys.executable, "-m", "tests.systemd.freeze", str(pid)],
                                      cwd=REPO, stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline() == "stopped\n"
            states = _thread_states(pid)
            assert states.pop(pid) == "t", states
            assert states and "t" not in states.values(), states  # the others run
        else:
            os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: unit.prop("NRestarts") == "1", timeout=60, interval=0.2,
                   what="systemd to restart the unit")
        killed_after = time.monotonic() - hung
    finally:
        if holder is not None:
            if holder.poll() is None:
                holder.terminate()
            holder.wait(timeout=30)
    wait_until(lambda: unit.prop("ActiveState") == "active", timeout=120, interval=0.2,
               what="the restarted service to be ready")
    assert unit.main_pid() != pid
    said = unit.systemd_messages()
    assert any("Watchdog timeout (limit 3s)!" in line for line in said), said
    assert any(re.search(r"Killing process \d+ \(reconcile\) with signal SIGABRT", line)
               for line in said), said
    assert any("Scheduled restart job" in line for line in said), said
    assert _running(unit, name)
    FIGURES[f"watchdog, {hang} hung"] = [
        f"WatchdogSec=3s: restarted {killed_after:.1f} s after the hang"]


PROBE = r"""
import errno, json, os, socket, stat, sys

def attempt(path):
    # Whether this process could write at `path`, without changing anything there.
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return errno.errorcode[exc.errno]
    try:
        if stat.S_ISDIR(mode):
            probe = os.path.join(path, ".reconcile-probe")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        elif stat.S_ISREG(mode):
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        else:
            return "special"
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "writable"

points = [line.split()[4] for line in open("/proc/self/mountinfo")]
points = [p.encode().decode("unicode_escape") for p in points]
result = {path: attempt(path) for path in sorted(set(points) | set(sys.argv[1:]))}
sock = socket.socket(socket.AF_UNIX)
sock.connect("/run/libvirt/libvirt-sock")  # what the service needs of /run/libvirt
sock.close()
modes = {path: os.stat(path).st_mode & 0o7777 for path in ("/root", "/home")}
print(json.dumps({"write": result, "modes": modes}))
"""


def test_hardening_leaves_libvirt_reachable_and_the_rest_read_only(unit: Unit,
                                                                  prefix: str) -> None:
    name = f"{prefix}h"
    unit.write_manifest(name, vm_manifest(name))
    _start(unit)
    assert _running(unit, name)  # through /run/libvirt/libvirt-sock, from the hardened unit
    pid = unit.main_pid()
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == status["CapBnd"].strip() == "0" * 16, status
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status

    # A probe in the service's own mount namespace tries to write at every mount point
    # it has and in the folders below (as root with every capability: only the mounts
    # stop it), and connects to libvirt's socket.
    folders = ["/", "/etc", "/etc/reconcile", MANIFESTS, "/usr", "/usr/local/bin",
               "/opt/reconcile", "/var", "/var/lib", "/var/log", "/run", "/run/libvirt",
               "/run/lock", "/srv", "/root", "/home", "/run/reconcile", "/var/lib/reconcile",
               "/tmp", "/var/tmp"]
    unit.box.run("touch", "/tmp/.outside-the-unit")
    probe = subprocess.run(["nsenter", "-t", str(pid), "-m", "-p", "--", "python3", "-c", PROBE,
                            *folders], capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stderr
    answer = json.loads(probe.stdout)
    result: dict[str, str] = answer["write"]
    writable = sorted(path for path, verdict in result.items() if verdict == "writable")
    # Its own two folders, a private /tmp and /var/tmp, and the kernel's API file systems.
    assert writable == ["/dev/hugepages", "/dev/mqueue", "/dev/shm", "/run/reconcile", "/tmp",
                        "/var/lib/reconcile", "/var/tmp"], result
    for folder in folders:
        if folder not in writable:
            assert result[folder] in ("EROFS", "EACCES"), (folder, result[folder])
    # ProtectHome=yes: mode 000 folders in their place (the probe, with every
    # capability, gets past that; the service has none).
    assert answer["modes"] == {"/root": 0, "/home": 0}, answer["modes"]
    listed = subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "ls", "-A", "/tmp", "/dev"],
                            capture_output=True, text=True, check=True).stdout
    assert ".outside-the-unit" not in listed  # PrivateTmp
    assert "kvm" not in listed.split() and "vda" not in listed.split(), listed  # PrivateDevices

    verify = unit.box.run("systemd-analyze", "verify", "reconcile.service", check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = unit.box.run("systemd-analyze", "security", "--no-pager", "reconcile.service",
                            check=False)
    score = security.stdout.strip().splitlines()[-1]
    FIGURES["hardening"] = [f"systemd-analyze security: {score.strip()}",
                            f"writable for the service: {', '.join(writable)}"]


def test_the_journal_has_one_line_per_event(unit: Unit, prefix: str) -> None:
    name = f"{prefix}j"
    unit.write_manifest(name, vm_manifest(name))
    _start(unit)
    virsh(unit.host.uri, "destroy", name)
    wait_until(lambda: _running(unit, name), timeout=60, what=f"{name} running again")
    unit.wait_message(f"{name}: converged (start) after libvirt event")
    unit.box.write(f"{MANIFESTS}/bad.yaml", "apiVersion: reconcile/v1\nkind: VirtualMachine\n"
                   "metadata: {name: " + prefix + "bad}\nspec: {memory: 64MiB, vcpus: many}\n")
    unit.wait_message("invalid manifest bad.yaml")
    unit.systemctl("stop", "reconcile.service")

    entries = unit.journal("SYSLOG_IDENTIFIER=reconcile")
    lines = [str(entry["MESSAGE"]) for entry in entries]
    assert all(isinstance(entry["MESSAGE"], str) for entry in entries), entries
    for line in lines:
        assert "\n" not in line and line == line.strip(), repr(line)
        assert re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S", line), line
        assert not re.match(r"\d\d:\d\d:\d\d", line), line  # journald has the time
    assert "Traceback" not in "\n".join(lines)
    # Each step once as it begins, each reconcile that ran steps once with its cause.
    about = [line for line in lines if f"{name}:" in line]
    # The guest watch says each change of readiness once: ready, not ready, ready, ...
    # (how many depends on whether it looked while the VM was down).
    readiness = [line for line in about
                 if re.fullmatch(rf"INFO {name}: (ready|not ready: .+)", line)]
    said = [line.split(": ", 1)[1].startswith("ready") for line in readiness]
    assert said[:1] == [True] and all(a != b for a, b in pairwise(said)), readiness
    about = [line for line in about if line not in readiness]
    expected = [rf"INFO {name}: define \(.+\)", rf"INFO {name}: start \(.+\)",
                rf"INFO {name}: converged \(define, start\) after resync \(start\)",
                rf"INFO {name}: start \(.+\)",
                rf"INFO {name}: converged \(start\) after libvirt event '\w+'"]
    assert len(about) == len(expected), about
    assert all(re.fullmatch(pattern, line) for pattern, line in zip(expected, about,
                                                                    strict=True)), about
    invalid = [line for line in lines if "bad.yaml" in line]
    assert len(invalid) == 1 and invalid[0].startswith("ERROR invalid manifest bad.yaml"), lines
    # Each line's level is the journal's PRIORITY too: `journalctl -p err` finds errors.
    priorities = {"DEBUG": "7", "INFO": "6", "WARNING": "4", "ERROR": "3", "CRITICAL": "2"}
    for entry in entries:
        level = str(entry["MESSAGE"]).split(" ", 1)[0]
        assert entry["PRIORITY"] == priorities[level], entry

"""Helpers of the reliability suite: the shared step log and the check that no two plans
interleaved on one VM, killing a run at a chosen point, disk hashes, a libvirtd kill,
and the listening sockets of a process."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import LineReader
from tests.support.sandbox import Sandbox

ACTIONS = ("set-memory", "shutdown", "destroy", "undefine", "define", "autostart", "start")
#: A step as `reconcile -v` logs it when it begins: "... reconcile INFO web-1: define (...)".
STEP_LINE = re.compile(r" INFO (?P<vm>\S+): (?P<action>" + "|".join(ACTIONS) + r") \(")
#: What the service logs after one VM's reconcile that ran steps (one lock hold).
SERVICE_PLAN_LINE = re.compile(r" INFO (?P<vm>\S+): (?P<result>[a-z-]+) "
                               r"\((?P<steps>[a-z-]+(?:, [a-z-]+)*)\) after ")
#: Log lines above INFO: "... reconcile WARNING ..." or ERROR / CRITICAL.
TROUBLE_LINE = re.compile(r" reconcile (WARNING|ERROR|CRITICAL) ")


# --- the step log ------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One line of a --step-log file."""

    line: int  # 1-based line number: the order in which the processes wrote them
    pid: int
    vm: str
    action: str
    phase: str  # "start" | "done"

    def __str__(self) -> str:
        return f"line {self.line}: pid {self.pid} {self.vm} {self.action} {self.phase}"


def read_step_log(path: Path) -> list[Event]:
    """Every event of the step log; every line must be one whole JSON object."""
    if not path.exists():
        return []
    events = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = json.loads(text)
        assert set(entry) == {"time", "pid", "vm", "action", "phase", "reason"}, text
        assert entry["phase"] in ("start", "done") and entry["action"] in ACTIONS, text
        events.append(Event(number, int(entry["pid"]), str(entry["vm"]), str(entry["action"]),
                            str(entry["phase"])))
    return events


#: (pid, vm) → the plans that process ran on that VM, each the list of its steps' actions,
#: in the order it ran them. One plan is one hold of the VM's lock.
Plans = dict[tuple[int, str], list[list[str]]]


def once_plans(pid: int, report: dict[str, Any]) -> Plans:
    """The plans of one `reconcile --once -o json` run: it reconciles each VM exactly once,
    under one hold of the VM's lock, and its report lists the steps it completed."""
    plans: Plans = {}
    for entry in report["vms"]:
        actions = [step["action"] for step in entry["steps"]]
        if actions:
            plans[(pid, entry["name"])] = [actions]
    return plans


def service_plans(pid: int, log_lines: Iterable[str]) -> Plans:
    """The plans of the service, from its log: after each VM's reconcile that ran steps it
    logs "NAME: converged (a, b) after WHY", once the lock is released and before the same
    name can be taken by a worker again, so the lines of one VM come in plan order."""
    plans: Plans = defaultdict(list)
    for line in log_lines:
        match = SERVICE_PLAN_LINE.search(line)
        if match:
            plans[(pid, match["vm"])].append(match["steps"].split(", "))
    return dict(plans)


def interleavings(events: Sequence[Event], plans: Plans) -> list[str]:
    """What is wrong with the step log, given which plans each process ran.

    Each (pid, vm)'s events must be exactly its plans' steps, each as "start" then "done",
    in order: then every event belongs to one known plan. A plan interleaved with another
    when, among its VM's events in the order they were written, an event of another plan
    lies between its first and its last event. Returns one line per problem.
    """
    problems: list[str] = []
    by_vm: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_vm[event.vm].append(event)
    seen = {(event.pid, event.vm) for event in events}
    for (pid, vm), runs in sorted(plans.items()):
        if (pid, vm) not in seen and any(runs):
            problems.append(f"pid {pid} ran steps on {vm} that the step log lacks")
    for vm, sequence in sorted(by_vm.items()):
        owner: list[tuple[int, int]] = []  # per event of the VM: (pid, plan index)
        expected: dict[int, list[tuple[int, str, str]]] = {}
        for event in sequence:
            if event.pid not in expected:
                expected[event.pid] = [(index, phase, action) for index, actions in
                                       enumerate(plans.get((event.pid, vm), []))
                                       for action in actions for phase in ("start", "done")]
            queue = expected[event.pid]
            if not queue:
                problems.append(f"{event}: no plan of pid {event.pid} accounts for it")
                owner.append((event.pid, -1))
                continue
            index, phase, action = queue.pop(0)
            if (phase, action) != (event.phase, event.action):
                problems.append(f"{event}: expected {action} {phase} of plan {index + 1}")
            owner.append((event.pid, index))
        for pid, queue in expected.items():
            if queue:
                problems.append(f"pid {pid} on {vm}: {len(queue)} step event(s) of its plans "
                                "are missing from the step log")
        positions: dict[tuple[int, int], list[int]] = defaultdict(list)
        for position, key in enumerate(owner):
            positions[key].append(position)
        for (pid, index), where in positions.items():
            inside = {owner[p] for p in range(where[0], where[-1] + 1)} - {(pid, index)}
            if inside:
                intruders = ", ".join(f"pid {other}" for other, _ in sorted(inside))
                problems.append(f"{vm}: plan {index + 1} of pid {pid} (lines "
                                f"{sequence[where[0]].line}-{sequence[where[-1]].line}) "
                                f"interleaved with {intruders}")
    return problems


def open_steps(events: Sequence[Event], pid: int) -> list[str]:
    """The steps `pid` started and never finished (where a kill landed): 'vm action'."""
    running: dict[str, str] = {}
    for event in events:
        if event.pid != pid:
            continue
        if event.phase == "start":
            running[event.vm] = event.action
        else:
            running.pop(event.vm, None)
    return [f"{vm} {action}" for vm, action in sorted(running.items())]


# --- processes ---------------------------------------------------------------------------

class StepLines:
    """Reads a `reconcile -v` process's stderr in a thread, keeps every line, and counts
    the step lines of the VMs whose names start with `prefix`; `reached(k)` waits until
    the k-th has been logged (or the process has ended)."""

    def __init__(self, proc: subprocess.Popen[str], prefix: str):
        self.proc = proc
        self.prefix = prefix
        self.steps = 0
        assert proc.stderr is not None
        self._stderr = LineReader(proc.stderr, on_line=self._count)

    def _count(self, line: str) -> None:
        match = STEP_LINE.search(line)
        if match and match["vm"].startswith(self.prefix):
            self.steps += 1

    def reached(self, count: int, timeout: float = 120.0) -> bool:
        """True once `count` step lines were logged; False if the process ended first."""
        return self._stderr.wait_for(lambda _lines: self.steps >= count, timeout,
                                     what=f"{count} step lines")

    def finish(self, timeout: float = 180.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._stderr.join(timeout=10)
        return code

    @property
    def text(self) -> str:
        return self._stderr.text


def kill_libvirtd(sandbox: Sandbox) -> None:
    """SIGKILL the private libvirtd (its guests keep running) and reap it."""
    assert sandbox.daemon is not None and sandbox.daemon.poll() is None
    sandbox.daemon.send_signal(signal.SIGKILL)
    sandbox.daemon.wait(timeout=30)
    sandbox.daemon = None


# --- disks -------------------------------------------------------------------------------

def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by path relative to it."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            hashes[str(path.relative_to(folder))] = digest.hexdigest()
    return hashes


# --- sockets -----------------------------------------------------------------------------

def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(int(match[1]))
    return inodes


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp* print the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{int(port, 16)}"


def listening_sockets(pid: int) -> list[str]:
    """Every socket of process `pid` that others could reach: TCP sockets in LISTEN,
    bound UDP and raw sockets, and listening unix sockets ('tcp 127.0.0.1:9177')."""
    inodes = _socket_inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for row in table.read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[9]) not in inodes:
                continue
            listening = fields[3] == "0A" if proto.startswith("tcp") else True
            if listening:
                found.append(f"{proto} {_address(fields[1])}")
    for row in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = row.split()
        accepts = int(fields[3], 16) & 0x10000  # __SO_ACCEPTCON: a listening socket
        if int(fields[6]) in inodes and accepts:
            found.append(f"unix {fields[7] if len(fields) > 7 else '(unnamed)'}")
    return sorted(found)

"""How fast the service reacts, and what it costs while idle (issue 3).

    python benchmarks/service_latency.py [-c URI | --private-libvirtd] [--vms 4] [--rounds 5]
                                         [--idle 30]

Run it with the interpreter of the installation to measure (e.g. .venv/bin/python): the
`reconcile` command is the one next to it. Needs root and a libvirtd (default
qemu:///system; `scripts/libvirtd-up.sh` starts one; --private-libvirtd starts a private
one in its own mount namespace, as tests/service do, so that other users of the host's
daemon, their domains and events, do not disturb the numbers). It starts the service over a
temporary manifest folder holding --vms tiny running guests (64 MiB, 1 vCPU, no disk,
stopTimeout 0), waits for READY=1 on a NOTIFY_SOCKET of its own, then measures:

  edit → first step      a manifest's memory edited (64 ↔ 96 MiB) until the service logs
                         its first libvirt step for that VM (stderr lines are timestamped
                         as they arrive)
  edit → converged       ... until libvirt shows the new memory on the running guest
  destroy → running      `virDomainDestroy` from outside until the guest runs again (the
                         lifecycle-event path: the resync is an hour away)
  idle CPU, RSS          over --idle seconds with nothing to do: CPU time from
                         /proc/PID/stat, RSS and peak RSS from /proc/PID/status

Prints a Markdown table. Every domain it creates is named bench-<8 hex>-N and removed at
the end; it never runs with --prune, so no other domain is touched.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

RECONCILE = Path(sys.executable).parent / "reconcile"
VIRT_TYPE = "kvm" if Path("/dev/kvm").exists() else "qemu"


def manifest(name: str, memory_mib: int) -> str:
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  memory: {memory_mib}MiB\n  vcpus: 1\n  type: {VIRT_TYPE}\n"
            f"  stopTimeout: 0\n")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.005) -> float:
    """Poll until true; return the time.monotonic() it was first seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Service:
    """The service as a subprocess; stderr lines are kept with their arrival times."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first_after(self, pattern: str, since: float) -> float | None:
        regex = re.compile(pattern)
        with self._lock:
            for at, line in self.lines:
                if at >= since and regex.search(line):
                    return at
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def memory_mib(conn: libvirt.virConnect, name: str) -> int | None:
    """The saved definition's memory of a running guest, or None when it is not running."""
    try:
        dom = conn.lookupByName(name)
        if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            return None
        element = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("memory")
    except libvirt.libvirtError:
        return None
    assert element is not None and element.text is not None
    factor = {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}[element.get("unit", "KiB")]
    return int(element.text) * factor // 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ms = [value * 1000 for value in values]
    return (f"median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f} "
            f"(n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--connect", default="qemu:///system", metavar="URI")
    parser.add_argument("--private-libvirtd", action="store_true",
                        help="measure on a private libvirtd of its own instead")
    parser.add_argument("--vms", type=int, default=4, help="running guests (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="edits and destroys (default 5)")
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds (default 30)")
    args = parser.parse_args()

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    sandbox = None
    if args.private_libvirtd:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.service.support import Sandbox

        sandbox = Sandbox()
        sandbox.start()
        args.connect = sandbox.uri
    try:
        return measure(args)
    finally:
        if sandbox is not None:
            sandbox.close()


def measure(args: argparse.Namespace) -> int:
    conn = libvirt.open(args.connect)
    prefix = f"bench-{secrets.token_hex(4)}-"
    names = [f"{prefix}{index}" for index in range(args.vms)]
    workdir = Path(tempfile.mkdtemp(prefix="reconcile-latency-"))
    folder = workdir / "manifests"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(manifest(name, 64))

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_address = f"reconcile-bench-{secrets.token_hex(4)}"
    notify.bind("\0" + notify_address)
    notify.settimeout(120)
    env = {key: value for key, value in os.environ.items()
           if key not in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
    env.update(NOTIFY_SOCKET="@" + notify_address, PYTHONUNBUFFERED="1")
    service = Service([str(RECONCILE), "-m", str(folder), "-c", args.connect, "--lock-dir",
                       str(workdir / "locks"), "--resync", "3600", "-v"], env)
    edit_step: list[float] = []
    edit_converged: list[float] = []
    destroy_running: list[float] = []
    destroy_step: list[float] = []
    try:
        started = time.monotonic()
        while b"READY=1" not in notify.recv(4096):
            pass
        ready = time.monotonic() - started
        notify.close()  # from now on the service's notifications go nowhere, as without systemd
        for name in names:
            wait_until(lambda n=name: memory_mib(conn, n) == 64, 60, f"{name} running")

        for round_ in range(args.rounds):
            name = names[round_ % len(names)]
            target = 96 if memory_mib(conn, name) == 64 else 64
            since = time.monotonic()
            (folder / f"{name}.yaml").write_text(manifest(name, target))
            done = wait_until(lambda n=name, t=target: memory_mib(conn, n) == t, 60,
                              f"{name} with {target} MiB")
            step = service.first_after(rf"{re.escape(name)}: [a-z-]+ \(", since)
            if step is not None:
                edit_step.append(step - since)
            edit_converged.append(done - since)

        for round_ in range(args.rounds):
            name = names[round_ % len(names)]
            dom = conn.lookupByName(name)
            old_id = dom.ID()
            dom.destroy()
            since = time.monotonic()
            done = wait_until(lambda d=dom, i=old_id: d.isActive() and d.ID() != i, 60,
                              f"{name} running again")
            destroy_running.append(done - since)
            step = service.first_after(rf"{re.escape(name)}: start \(", since - 0.5)
            if step is not None:
                destroy_step.append(max(0.0, step - since))

        # Let the last round's events settle, then measure doing nothing.
        time.sleep(2)
        pid = service.proc.pid
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        rss, peak = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        threads = status_kib(pid, "Threads")
    finally:
        code = service.stop()
        for name in names:
            try:
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError:
                pass
        conn.close()
        notify.close()

    if code != 0:
        sys.stderr.write("the service's log ends with:\n" + "\n".join(
            line for _, line in service.lines[-30:]) + "\n")
    print(f"service on {args.connect}, {args.vms} tiny {VIRT_TYPE} guests, "
          f"{os.cpu_count()} CPUs; service exit code {code}\n")
    print("| measure | result |")
    print("| --- | --- |")
    print(f"| start → READY=1 (first pass, {args.vms} guests started) | {ready * 1000:.0f} ms |")
    print(f"| manifest edit → first libvirt step logged | {summary(edit_step)} |")
    print(f"| manifest edit → running with the new memory | {summary(edit_converged)} |")
    print(f"| external destroy → start step logged | {summary(destroy_step)} |")
    print(f"| external destroy → running again | {summary(destroy_running)} |")
    print(f"| idle CPU over {args.idle:g} s | {cpu * 100:.2f} % of one CPU |")
    print(f"| idle RSS (peak) | {rss / 1024:.1f} MiB ({peak / 1024:.1f} MiB), "
          f"{threads} threads |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

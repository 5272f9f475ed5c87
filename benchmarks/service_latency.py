"""How fast the service reacts, and what it costs while idle (issue 3).

    python benchmarks/service_latency.py [-c URI | --private-libvirtd] [--vms 4] [--stopped 96]
                                         [--rounds 20] [--idle 60] [--rss-at 1000]
                                         [--resyncs 1] [--json FILE] [--profile FILE]

Run it with the interpreter of the installation to measure (e.g. .venv/bin/python): the
`reconcile` command is the one next to it. Needs root and a libvirtd (default
qemu:///system; `scripts/libvirtd-up.sh` starts one; --private-libvirtd starts a private
one in its own mount namespace, as tests/service do, so that other users of the host's
daemon, their domains and events, do not disturb the numbers). It starts the service over a
temporary manifest folder holding --vms tiny running guests (64 MiB, 1 vCPU, no disk,
stopTimeout 0) and --stopped more managed domains that stay defined and stopped, waits
for READY=1 on a NOTIFY_SOCKET of its own, then measures:

  edit → first step      a manifest's memory edited (64 ↔ 96 MiB) until the service logs
                         its first libvirt step for that VM (stderr lines are timestamped
                         as they arrive)
  edit → converged       ... until libvirt shows the new memory on the running guest
  destroy → running      `virDomainDestroy` from outside until the guest runs again (the
                         lifecycle-event path: the resync is an hour away), counted from
                         the call (it includes libvirt's own destroy, 1-3 s here), from
                         its return (the service often restarts the guest before it), and
                         from libvirt's "stopped" lifecycle event on our own connection
                         (the guest is gone: what the service reacts to)
  idle CPU, RSS          over --idle seconds with nothing to do: CPU time from
                         /proc/PID/stat, RSS and peak RSS from /proc/PID/status
  RSS at N VMs           with --rss-at N: more stopped manifests are written until N VMs
                         are managed, the service defines them, and once it is idle
                         a full resync (SIGHUP) reconciles all N (--resyncs times, each
                         next to the floor's CPU), then RSS and peak RSS are read again

Each latency is given as median (p50) and p95 (nearest rank) over --rounds trials. Prints
a Markdown table, and with --json FILE writes the numbers (bench.py's `service` section).
Every domain it creates is named bench-<8 hex>-... and removed at the end, also on errors;
it never runs with --prune, so no other domain is touched.
"""

from __future__ import annotations

import argparse
import json
import math
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
from typing import Any

import libvirt

RECONCILE = Path(sys.executable).parent / "reconcile"
VIRT_TYPE = "kvm" if Path("/dev/kvm").exists() else "qemu"


def manifest(name: str, memory_mib: int, state: str = "running") -> str:
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  state: {state}\n  memory: {memory_mib}MiB\n  vcpus: 1\n"
            f"  type: {VIRT_TYPE}\n  stopTimeout: 0\n")


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


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def stats(values: list[float]) -> dict[str, float | int | list[float]]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": statistics.median(values), "p95": percentile(values, 0.95),
            "min": min(values), "max": max(values), "values": values}


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ms = [value * 1000 for value in values]
    return (f"p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f}, "
            f"min {min(ms):.0f}, max {max(ms):.0f} (n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--connect", default="qemu:///system", metavar="URI")
    parser.add_argument("--private-libvirtd", action="store_true",
                        help="measure on a private libvirtd of its own instead")
    parser.add_argument("--vms", type=int, default=4, help="running guests (default 4)")
    parser.add_argument("--stopped", type=int, default=96,
                        help="more managed domains, defined and stopped (default 96: with "
                             "--vms 4, 100 managed VMs while idle)")
    parser.add_argument("--rounds", type=int, default=20,
                        help="edits and destroys (default 20)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds (default 60)")
    parser.add_argument("--rss-at", type=int, default=0, metavar="N",
                        help="at the end, grow to N managed VMs (stopped) and read RSS "
                             "(default: skip)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the numbers to FILE as JSON")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="the service's --workers (default: its own default)")
    parser.add_argument("--resyncs", type=int, default=1, metavar="K",
                        help="with --rss-at: K full resyncs, each next to three runs of "
                             "the floor (default 1; the medians are reported)")
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE",
                        help="run the service under cProfile from the SIGHUP of --rss-at on "
                             "(harness/profile_service.py) and write its stats to FILE; "
                             "its CPU figures are then the profiled ones")
    args = parser.parse_args()

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    sandbox = None
    if args.private_libvirtd:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.sandbox import Sandbox

        sandbox = Sandbox()
        sandbox.start()
        args.connect = sandbox.uri
    try:
        return measure(args)
    finally:
        if sandbox is not None:
            sandbox.close()


class StoppedEvents:
    """When libvirt reported each domain stopped (lifecycle event), on our own connection:
    the moment a destroyed guest is really gone, before the destroy call returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times: dict[str, list[float]] = {}
        libvirt.virEventRegisterDefaultImpl()  # before any connection is opened
        threading.Thread(target=self._loop, daemon=True).start()

    @staticmethod
    def _loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    def watch(self, conn: libvirt.virConnect) -> None:
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                    self._event, None)

    def _event(self, _conn: object, dom: libvirt.virDomain, event: int, _detail: int,
               _opaque: object) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            at = time.monotonic()
            with self._lock:
                self.times.setdefault(dom.name(), []).append(at)

    def first_after(self, name: str, since: float) -> float | None:
        with self._lock:
            return next((at for at in self.times.get(name, []) if at >= since), None)


def measure(args: argparse.Namespace) -> int:
    events = StoppedEvents()
    conn = libvirt.open(args.connect)
    events.watch(conn)
    prefix = f"bench-{secrets.token_hex(4)}-"
    names = [f"{prefix}{index}" for index in range(args.vms)]
    stopped = [f"{prefix}s{index:04d}" for index in range(args.stopped)]
    workdir = Path(tempfile.mkdtemp(prefix="reconcile-latency-"))
    folder = workdir / "manifests"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(manifest(name, 64))
    for name in stopped:
        (folder / f"{name}.yaml").write_text(manifest(name, 64, "stopped"))

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_address = f"reconcile-bench-{secrets.token_hex(4)}"
    notify.bind("\0" + notify_address)
    notify.settimeout(300)
    env = {key: value for key, value in os.environ.items()
           if key not in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
    env.update(NOTIFY_SOCKET="@" + notify_address, PYTHONUNBUFFERED="1")
    command = [str(RECONCILE)]
    if args.profile is not None:
        command = [sys.executable, str(Path(__file__).resolve().parent / "harness" /
                                       "profile_service.py"), str(args.profile.resolve())]
    service = Service([*command, "-m", str(folder), "-c", args.connect, "--lock-dir",
                       str(workdir / "locks"), "--state-dir", str(workdir / "state"),
                       "--resync", "3600", "-v",
                       *(["--workers", str(args.workers)] if args.workers else [])], env)
    edit_step: list[float] = []
    edit_converged: list[float] = []
    destroy_running: list[float] = []
    destroy_step: list[float] = []
    destroy_returned: list[float] = []
    destroy_stopped: list[float] = []
    results: dict[str, Any] = {}
    try:
        started = time.monotonic()
        while b"READY=1" not in notify.recv(4096):
            pass
        ready = time.monotonic() - started
        notify.close()  # from now on the service's notifications go nowhere, as without systemd
        for name in names:
            wait_until(lambda n=name: memory_mib(conn, n) == 64, 60, f"{name} running")
        wait_until(lambda: len(_ours(conn, prefix)) == len(names) + len(stopped), 120,
                   "every managed domain defined")

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
            for attempt in range(3):
                wait_until(lambda n=name: memory_mib(conn, n) is not None, 60,
                           f"{name} running")
                old_id = dom.ID()
                issued = time.monotonic()
                try:
                    dom.destroy()  # returns once QEMU is gone; the service may restart it already
                    break
                except libvirt.libvirtError as error:
                    # Stopped between the check and the call (a loaded host): measure again.
                    if "not running" not in str(error) or attempt == 2:
                        raise
            returned = time.monotonic()
            done = wait_until(lambda d=dom, i=old_id: d.isActive() and d.ID() != i, 60,
                              f"{name} running again")
            destroy_running.append(done - issued)
            destroy_returned.append(done - returned)
            gone = events.first_after(name, issued)
            if gone is not None:
                destroy_stopped.append(done - gone)
            step = service.first_after(rf"{re.escape(name)}: start \(", issued)
            if step is not None:
                destroy_step.append(step - issued)

        # Let the last round's events settle, then measure doing nothing.
        time.sleep(2)
        pid = service.proc.pid
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle_wall = time.monotonic() - wall_before
        cpu = (cpu_seconds(pid) - cpu_before) / idle_wall
        rss, peak = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        threads = status_kib(pid, "Threads")
        results.update(
            uri=args.connect, running=len(names), stopped=len(stopped), cpus=os.cpu_count(),
            virt_type=VIRT_TYPE, rounds=args.rounds, ready_s=ready,
            edit_to_step=stats(edit_step), edit_to_converged=stats(edit_converged),
            destroy_to_step=stats(destroy_step), destroy_to_running=stats(destroy_running),
            destroy_returned_to_running=stats(destroy_returned),
            destroy_stopped_to_running=stats(destroy_stopped),
            idle_seconds=idle_wall, idle_managed=len(names) + len(stopped),
            idle_cpu_share=cpu, idle_rss_kib=rss, idle_peak_rss_kib=peak, threads=threads)

        if args.rss_at > len(names) + len(stopped):
            results.update(_grow(args, conn, service, folder, prefix,
                                 len(names) + len(stopped)))
    finally:
        code = service.stop()
        for name in _ours(conn, prefix):
            try:
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError:
                pass
        left = _ours(conn, prefix)
        conn.close()
        notify.close()
    if left:
        sys.stderr.write(f"domains left behind: {left[:5]}\n")
        return 1

    results["service_exit"] = code
    if code != 0:
        sys.stderr.write("the service's log ends with:\n" + "\n".join(
            line for _, line in service.lines[-30:]) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    managed = len(names) + len(stopped)
    print(f"service on {args.connect}, {len(names)} tiny {VIRT_TYPE} guests running and "
          f"{len(stopped)} managed domains stopped, {os.cpu_count()} CPUs; "
          f"service exit code {code}\n")
    print("| measure | result |")
    print("| --- | --- |")
    print(f"| start → READY=1 (first pass: {len(names)} guests started, {len(stopped)} "
          f"defined) | {ready * 1000:.0f} ms |")
    print(f"| manifest edit → first libvirt step logged | {summary(edit_step)} |")
    print(f"| manifest edit → running with the new memory | {summary(edit_converged)} |")
    print(f"| external destroy issued → start step logged | {summary(destroy_step)} |")
    print(f"| external destroy issued → running again | {summary(destroy_running)} |")
    print(f"| external destroy returned → running again | {summary(destroy_returned)} |")
    print(f"| domain stopped (event) → running again | {summary(destroy_stopped)} |")
    print(f"| idle CPU over {idle_wall:.0f} s, {managed} managed VMs | "
          f"{cpu * 100:.2f} % of one CPU |")
    print(f"| idle RSS (peak), {managed} managed VMs | {rss / 1024:.1f} MiB "
          f"({peak / 1024:.1f} MiB), {threads} threads |")
    if "grown_to" in results:
        print(f"| RSS (peak) after a full resync of {results['grown_to']} managed VMs | "
              f"{results['grown_rss_kib'] / 1024:.1f} MiB "
              f"({results['grown_peak_rss_kib'] / 1024:.1f} MiB); resync to idle about "
              f"{results['grown_resync_s']:.1f} s |")
        print(f"| idle CPU over {results['grown_idle_seconds']:.0f} s after it, "
              f"{results['grown_to']} managed VMs | "
              f"{results['grown_idle_cpu_share'] * 100:.3f} % of one CPU |")
        rounds = results["grown_resyncs"]
        print(f"| CPU of that full resync / of floors/noop.py (whole process), median of "
              f"{len(rounds['ratios'])} | {results['grown_resync_cpu_s']:.2f} s / "
              f"{results['grown_floor_cpu_s']:.2f} s "
              f"({results['grown_resync_cpu_s'] / results['grown_floor_cpu_s']:.2f}x; rounds "
              f"{', '.join(f'{r:.2f}x' for r in rounds['ratios'])}; load "
              f"{min(rounds['load_1min']):.1f}-{max(rounds['load_1min']):.1f}) |")
        print(f"| the floor's calls with libvirt's event loop running (floors/noop_events.py)"
              f" | {statistics.median(rounds['floor_with_event_loop_cpu_s']):.2f} s |")
    return 0 if code == 0 else 1


def _floor_cpu(uri: str, script: str = "noop.py") -> float:
    """CPU time (user + system) of one run of floors/noop.py on `uri`: the floor a full
    resync is compared with (issue 18: at most 2x); or of another floor script."""
    floor = Path(__file__).resolve().parent / "floors" / script
    proc = subprocess.Popen([sys.executable, str(floor), uri], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"floors/{script} {uri} exited {proc.returncode}")
    return float(usage.ru_utime + usage.ru_stime)


def _ours(conn: libvirt.virConnect, prefix: str) -> list[str]:
    names = []
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
        except libvirt.libvirtError:
            continue
        if name.startswith(prefix):
            names.append(name)
    return names


def _wait_idle(pid: int, since: float) -> float:
    """Wait until the service used no CPU for a second; its CPU time at that second's start."""
    while True:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.02:
            return before
        if time.monotonic() - since > 300:
            raise SystemExit("the service did not go idle")


def _grow(args: argparse.Namespace, conn: libvirt.virConnect, service: Service, folder: Path,
          prefix: str, have: int) -> dict[str, Any]:
    """More stopped manifests until `args.rss_at` VMs are managed; once all are defined and
    the service is idle, --resyncs full resyncs (SIGHUP) of them all, each alternating
    with three runs of the floor; then the service's RSS, peak RSS and idle CPU."""
    for index in range(have, args.rss_at):
        name = f"{prefix}g{index:05d}"
        (folder / f"{name}.yaml").write_text(manifest(name, 64, "stopped"))
    wait_until(lambda: len(_ours(conn, prefix)) >= args.rss_at, 300,
               f"{args.rss_at} managed domains defined", interval=0.2)
    pid = service.proc.pid
    # each define's own event is reconciled too: the resync starts once those are done
    _wait_idle(pid, time.monotonic())
    resync_cpu: list[float] = []
    resync_wall: list[float] = []
    floor_cpu: list[float] = []
    events_cpu: list[float] = []  # the floor's calls with libvirt's event loop running
    loads: list[float] = []
    pattern = rf"resync \(SIGHUP\): {args.rss_at} VMs"
    for _ in range(max(1, args.resyncs)):
        since, cpu_at_hup = time.monotonic(), cpu_seconds(pid)
        service.proc.send_signal(signal.SIGHUP)
        wait_until(lambda s=since: service.first_after(pattern, s) is not None, 120,
                   "the resync to queue every VM", interval=0.05)
        # The resync only queues; wait until the service is idle again (no CPU for 1 s).
        resync_cpu.append(_wait_idle(pid, since) - cpu_at_hup)  # to the idle second's start
        resync_wall.append(time.monotonic() - since - 1.0)
        floor_cpu.append(statistics.median(_floor_cpu(args.connect) for _ in range(3)))
        events_cpu.append(_floor_cpu(args.connect, "noop_events.py"))
        loads.append(os.getloadavg()[0])
    # idle again, now with all of them managed (issue 18: under 0.1 % at 1,000 VMs)
    idle_from, idle_cpu_from = time.monotonic(), cpu_seconds(pid)
    time.sleep(args.idle)
    idle_share = (cpu_seconds(pid) - idle_cpu_from) / (time.monotonic() - idle_from)
    ratios = [cpu / floor for cpu, floor in zip(resync_cpu, floor_cpu, strict=True)]
    return {"grown_idle_cpu_share": idle_share, "grown_idle_seconds": args.idle,
            "grown_to": args.rss_at, "grown_resync_s": statistics.median(resync_wall),
            "grown_resync_cpu_s": statistics.median(resync_cpu),
            "grown_floor_cpu_s": statistics.median(floor_cpu),
            "grown_resyncs": {"resync_cpu_s": resync_cpu, "resync_wall_s": resync_wall,
                              "floor_cpu_s": floor_cpu, "ratios": ratios,
                              "floor_with_event_loop_cpu_s": events_cpu,
                              "load_1min": loads},
            "grown_rss_kib": status_kib(pid, "VmRSS"),
            "grown_peak_rss_kib": status_kib(pid, "VmHWM")}


if __name__ == "__main__":
    sys.exit(main())

"""One soak: the service over many tiny guests on a private libvirtd, under a seeded
chaos schedule (schedule.py), with the invariants (checks.py) checked as it goes and
once more over everything at the end. `python -m tests.soak` (`make soak`) runs it.

    setup     private libvirtd; foreign domains (unmanaged, one with a manifest of its
              name: a conflict); the VMs' manifests; the service; wait until converged
    chaos     the schedule's faults at their times; a monitor reads every domain twice a
              second (foreign ones unchanged, VM identities, time to converge after each
              fault on a VM); every 20 s the step log so far is checked
    the end   manifests still invalid or removed are made valid (the last fault); every
              VM must then converge within `bound` seconds; a last --once must find
              nothing to do; SIGTERM must stop the service with exit 0; then every check
              over the whole step log, and the figures
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import libvirt

from tests.reliability.support import Event, kill_libvirtd
from tests.support.domains import remove_domains
from tests.support.sandbox import Sandbox

from . import checks
from .fleet import Libvirt, Seen, matches
from .manifests import ManifestFolder
from .processes import Incarnation, OnceRun, Services
from .report import Figures
from .schedule import VM_KINDS, Fault, Want, initial_wants, make_schedule
from .timeline import Timeline

MONITOR_EVERY = 0.5
CHECK_EVERY = 20.0
MAX_ONCE_RUNS = 3


@dataclass(frozen=True)
class Options:
    minutes: float
    vms: int
    seed: int
    mean_gap: float = 5.0
    resync: float = 30.0
    bound: float = 300.0  # seconds to converge after the last fault
    report: Path | None = None
    keep: Path | None = None  # a folder to keep the step log and every process's log in
    #: A self-test of the checks: --once runs get a lock folder of their own, so their
    #: plans can interleave with the service's, and the checks must say so.
    unshared_locks: bool = False


@dataclass(frozen=True)
class Done:
    """A fault as it happened."""

    at: float  # time.time()
    kind: str
    vm: str | None
    acted: bool


def read_steps(path: Path) -> list[checks.TimedEvent]:
    if not path.exists():
        return []
    events = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = json.loads(text)
        events.append(checks.TimedEvent(Event(number, int(entry["pid"]), str(entry["vm"]),
                                              str(entry["action"]), str(entry["phase"])),
                                        float(entry["time"])))
    return events


class Soak:
    def __init__(self, options: Options):
        self.options = options
        self.prefix = f"soak-{secrets.token_hex(2)}-"
        self.names = [f"{self.prefix}v{index:02d}" for index in range(options.vms)]
        self.foreign = [f"{self.prefix}f{index}" for index in range(3)]
        self.conflict = f"{self.prefix}c0"  # unmanaged, and a manifest names it
        self.lock = threading.Lock()
        self.timeline = Timeline()
        self.base = Path(tempfile.mkdtemp(prefix="rcl-soak-", dir="/var/tmp"))
        self.folder = ManifestFolder(self.base / "manifests", self.timeline, self.lock)
        self.step_log = self.base / "steps.jsonl"
        self.sandbox = Sandbox()
        self.chaos = Libvirt(self.sandbox.uri)
        self._once_checked: set[int] = set()
        self.figures = Figures()
        self.done: list[Done] = []
        self.once_runs: list[OnceRun] = []
        self.pending: dict[str, tuple[str, float]] = {}  # VM → (fault kind, when)
        self.vanished: list[tuple[str, float, float]] = []  # (VM, last seen, first missed)
        self.uuid_changes: list[tuple[str, float, float]] = []
        self._reported: set[str] = set()
        self._stop = threading.Event()
        #: Since when every VM has matched its manifest at each poll (None: not now).
        self.converged_since: float | None = None
        self.services: Services | None = None

    # --- violations ------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        with self.lock:
            if text in self._reported:
                return
            self._reported.add(text)
            self.figures.violations.append(text)
        print(f"soak: VIOLATION {text}", flush=True)

    # --- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.folder.path.mkdir()
        self.sandbox.start()
        chaos = self.chaos
        for index, name in enumerate([*self.foreign, self.conflict]):
            chaos.define_foreign(name, start=index == 0)
        self.foreign_before = self._foreign_now(chaos.read_all(self.prefix))
        self.wants = initial_wants(seed=self.options.seed, names=self.names)
        for name, want in self.wants.items():
            self.folder.write(name, want)
        self.folder.write(self.conflict, Want("running", 64))
        self.services = Services(manifests=self.folder.path, uri=self.sandbox.uri,
                                 lock_dir=self.base / "locks", step_log=self.step_log,
                                 resync=self.options.resync)
        started = time.monotonic()
        first = self.services.start()
        first.process.wait_ready(timeout=900)
        self._wait_converged(900, "the first convergence")
        running = sum(want.state == "running" for want in self.wants.values())
        self.figures.setup = (f"{len(self.names)} VMs ({running} running) converged from "
                              f"nothing in {time.monotonic() - started:.1f} s")
        print(f"soak: {self.figures.setup}", flush=True)

    def _foreign_now(self, seen: dict[str, Seen]) -> dict[str, object]:
        return {name: seen.get(name) for name in [*self.foreign, self.conflict]}

    def _all_converged(self, seen: dict[str, Seen]) -> bool:
        now = time.time()
        return all(matches(seen.get(name), self.folder.desire(name, now)) for name in self.names)

    def _wait_converged(self, timeout: float, what: str) -> float:
        """Seconds until every VM is as its manifest says; raises after `timeout`."""
        started = time.monotonic()
        reader = Libvirt(self.sandbox.uri)
        try:
            while time.monotonic() - started < timeout:
                try:
                    if self._all_converged(reader.read_all(self.prefix)):
                        return time.monotonic() - started
                except libvirt.libvirtError:
                    reader.close()
                self._stop.wait(MONITOR_EVERY)
        finally:
            reader.close()
        raise AssertionError(f"{what}: not converged within {timeout:g} s")

    # --- the monitor -------------------------------------------------------------------------

    def monitor(self) -> None:
        reader = Libvirt(self.sandbox.uri)
        last: dict[str, Seen] = {}
        last_at = time.time()
        while not self._stop.is_set():
            try:
                seen = reader.read_all(self.prefix)
            except libvirt.libvirtError:
                reader.close()  # the daemon is restarting: nothing to read now
                self.converged_since = None
                self._stop.wait(MONITOR_EVERY)
                continue
            now = time.time()
            if not self._all_converged(seen):
                self.converged_since = None
            elif self.converged_since is None:
                self.converged_since = now
            for problem in checks.foreign_changes(self.foreign_before, self._foreign_now(seen)):
                self.violation(problem)
            uuids = Counter(domain.uuid for domain in seen.values())
            for uuid, count in uuids.items():
                if count > 1:
                    self.violation(f"{count} domains share the UUID {uuid}")
            for name in self.names:
                before, after = last.get(name), seen.get(name)
                if before is not None and after is None:
                    self.vanished.append((name, last_at, now))
                elif before is not None and after is not None and before.uuid != after.uuid:
                    self.uuid_changes.append((name, last_at, now))
                with self.lock:
                    pending = self.pending.get(name)
                    if pending and matches(after, self.timeline.at(name, now)):
                        del self.pending[name]
                        self.figures.converged[pending[0]].append(now - pending[1])
            last, last_at = seen, now
            self._stop.wait(MONITOR_EVERY)
        reader.close()

    # --- chaos ---------------------------------------------------------------------------------

    def _on_vm(self, name: str, kind: str, at: float) -> None:
        with self.lock:
            old = self.pending.get(name)
            if old is not None:
                self.figures.censored[old[0]] += 1
            self.pending[name] = (kind, at)

    def inject(self, fault: Fault) -> bool:
        """Do `fault`; False when it found nothing to act on."""
        assert self.services is not None
        name = fault.vm
        if fault.kind == "edit":
            assert name is not None and fault.want is not None
            self._on_vm(name, "edit (restore)" if fault.restore else "edit",
                        self.folder.write(name, fault.want))
            return True
        if fault.kind == "invalid":
            assert name is not None
            self._on_vm(name, fault.kind, self.folder.write_invalid(name, fault.variant))
            return True
        if fault.kind == "remove":
            assert name is not None
            self._on_vm(name, fault.kind, self.folder.remove(name))
            return True
        if fault.kind in ("destroy", "undefine", "redefine"):
            assert name is not None
            acted = getattr(self.chaos, fault.kind)(name)
            if acted:
                self._on_vm(name, fault.kind, time.time())
            return bool(acted)
        if fault.kind == "once":
            if sum(not run.done for run in self.once_runs) >= MAX_ONCE_RUNS:
                return False
            locks = self.base / ("once-locks" if self.options.unshared_locks else "locks")
            self.once_runs.append(OnceRun.start(manifests=self.folder.path,
                                                uri=self.sandbox.uri, lock_dir=locks,
                                                step_log=self.step_log))
            return True
        if fault.kind == "kill-service":
            self.services.kill()
            self._stop.wait(fault.down)
            self.services.start()
            return True
        if fault.kind in ("restart-libvirtd", "kill-libvirtd"):
            current = self.services.current
            connected = len(current.process.matching(r"connected to "))
            self._stop_libvirtd(kill=fault.kind == "kill-libvirtd")
            self._stop.wait(fault.down)
            self._start_libvirtd()
            threading.Thread(target=self._reconnected, args=(current, connected, time.time()),
                             daemon=True).start()
            return True
        if fault.kind == "reload":
            # Only once READY, as systemd does (it merges a reload into a start job, see
            # tests/systemd): a SIGHUP in the first ~0.3 s of a process, before the
            # service's handler is set, ends it (Python's default action).
            if self.services.current.ready_after is None:
                return False
            self.services.reload()
            return True
        raise AssertionError(f"unknown fault {fault.kind}")

    def _stop_libvirtd(self, *, kill: bool) -> None:
        """SIGKILL, or SIGTERM and a SIGKILL if libvirtd is not gone within 60 s (its
        shutdown with 40 guests on a loaded machine took longer than 30 s once)."""
        daemon = self.sandbox.daemon
        assert daemon is not None and daemon.poll() is None
        if kill:
            kill_libvirtd(self.sandbox)
            return
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.figures.notes["libvirtd took over 60 s to stop on SIGTERM: SIGKILLed"] += 1
            daemon.kill()
            daemon.wait(timeout=60)
        self.sandbox.daemon = None

    def _start_libvirtd(self) -> None:
        try:
            self.sandbox.start_daemon()  # waits 30 s for it to answer
        except AssertionError:
            self.figures.notes["libvirtd took over 30 s to answer after a start"] += 1
            self.sandbox.wait_answering(timeout=300)

    def _reconnected(self, current: Incarnation, count: int, up: float) -> None:
        try:
            current.process.wait_log(r"connected to ", timeout=300, count=count + 1)
        except AssertionError:
            self.figures.reconnects_missed += 1  # that incarnation was killed first
            return
        self.figures.reconnects.append(time.time() - up)

    def chaos_phase(self) -> float:
        """Run the schedule; returns the time of the last fault."""
        assert self.services is not None
        seconds = self.options.minutes * 60
        schedule = make_schedule(seed=self.options.seed, seconds=seconds, names=self.names,
                                 mean_gap=self.options.mean_gap, wants=self.wants)
        began = time.time()
        next_check = time.monotonic() + CHECK_EVERY
        next_progress = time.monotonic() + 60
        for fault in schedule:
            while True:
                delay = began + fault.at - time.time()
                if delay <= 0:
                    break
                self._stop.wait(min(delay, 1.0))
                self._keep_up()
                if time.monotonic() >= next_check:
                    self.check_steps(final=False)
                    next_check = time.monotonic() + CHECK_EVERY
                if time.monotonic() >= next_progress:
                    self._progress(began)
                    next_progress = time.monotonic() + 60
            acted = self.inject(fault)
            kind = "edit (restore)" if fault.restore else fault.kind
            self.done.append(Done(time.time(), kind, fault.vm, acted))
            (self.figures.injected if acted else self.figures.skipped)[kind] += 1
        return max([began] + [done.at for done in self.done])

    def _keep_up(self) -> None:
        """The service must never end by itself; runs that ended are checked."""
        assert self.services is not None
        crashed = self.services.exited_by_itself()
        if crashed is not None:
            self.violation(f"the service (pid {crashed.pid}) {crashed.how}")
            self.services.start()
        for run in self.once_runs:
            if run.done and run.pid not in self._once_checked:
                self._once_checked.add(run.pid)
                for problem in run.problems():
                    self.violation(problem)

    def _progress(self, began: float) -> None:
        print(f"soak: {time.time() - began:.0f} s: {sum(self.figures.injected.values())} "
              f"faults, {sum(len(v) for v in self.figures.converged.values())} convergences, "
              f"{len(self.figures.violations)} violations", flush=True)

    # --- the end -----------------------------------------------------------------------------

    def finish(self, last_fault: float) -> None:
        assert self.services is not None
        rng = random.Random(f"{self.options.seed}-final")
        for name in self.names:
            if not isinstance(self.folder.desire(name), Want):
                want = Want(rng.choice(("running", "stopped")), 64)
                at = self.folder.write(name, want)
                self._on_vm(name, "edit (restore)", at)
                last_fault = max(last_fault, at)
        self._keep_up()
        if self.sandbox.daemon is None or self.sandbox.daemon.poll() is not None:
            self.sandbox.daemon = None
            self._start_libvirtd()
        deadline = last_fault + self.options.bound
        while time.time() < deadline:
            since = self.converged_since
            if since is not None and all(run.done for run in self.once_runs):
                self.figures.final = max(0.0, since - last_fault)
                break
            self._stop.wait(MONITOR_EVERY)
        for run in self.once_runs:
            run.wait(timeout=900)
        if self.figures.final is None:
            self.violation(f"not every VM converged within {self.options.bound:g} s of the "
                           "last fault")
        else:
            print(f"soak: every VM converged {self.figures.final:.1f} s after the last fault",
                  flush=True)
        last = OnceRun.start(manifests=self.folder.path, uri=self.sandbox.uri,
                             lock_dir=self.base / "locks", step_log=self.step_log)
        self.once_runs.append(last)
        last.wait(timeout=600)
        for problem in last.problems():
            self.violation(problem)
        results = {vm["name"]: vm["result"] for vm in last.report.get("vms", [])}
        changed = {name: result for name, result in results.items()
                   if result != ("conflict" if name == self.conflict else "unchanged")}
        if changed:
            self.violation(f"a last --once over the converged host changed things: {changed}")
        restarted = self.services.all[1:]
        self.figures.readies = [incarnation.ready_after for incarnation in restarted
                                if incarnation.ready_after is not None]
        self.figures.readies_missed = len(restarted) - len(self.figures.readies)
        code = self.services.stop()
        if code != 0:
            self.violation(f"SIGTERM: the service exited {code}")
        self.check_steps(final=True)

    def check_steps(self, *, final: bool) -> None:
        assert self.services is not None
        timed = read_steps(self.step_log)
        events = [item.event for item in timed]
        once_started = {run.pid: run.started for run in self.once_runs}
        found = (checks.overlapping_steps(events)
                 + checks.once_holds_interleaved(events, once_started)
                 + checks.steps_on(events, [*self.foreign, self.conflict]))
        with self.lock:
            found += checks.unjustified_steps(timed, self.timeline, once_started)
        for pid, line in self.services.lines():
            if "Traceback" in line:
                found.append(f"the service (pid {pid}) printed a traceback: {line}")
        if final:
            found += self._unexplained(timed)
            self.figures.step_events = len(events)
            self.figures.processes = (len(self.services.all), len(self.once_runs))
        for problem in found:
            self.violation(problem)

    def _unexplained(self, timed: list[checks.TimedEvent]) -> list[str]:
        """Domains that vanished, or changed UUID, with no step or fault to explain it."""
        removals = defaultdict(list)
        for item in timed:
            if item.event.phase == "start" and item.event.action in ("undefine", "destroy"):
                removals[item.event.vm].append(item.time)
        for done in self.done:
            if done.acted and done.kind in ("undefine", "destroy") and done.vm:
                removals[done.vm].append(done.at)
        problems = []
        for what, records in (("vanished", self.vanished), ("changed its UUID",
                                                            self.uuid_changes)):
            for name, seen, missed in records:
                if not any(seen - 300 <= at <= missed + 1 for at in removals[name]):
                    problems.append(f"{name} {what} between {seen:.1f} and {missed:.1f} "
                                    "with no undefine or destroy to explain it")
        return problems

    # --- all of it ---------------------------------------------------------------------------

    def run(self) -> int:
        monitor = threading.Thread(target=self.monitor, daemon=True)
        try:
            self.setup()
            monitor.start()
            last_fault = self.chaos_phase()
            self.finish(last_fault)
        except BaseException:
            print("soak: the harness failed; the figures so far:", flush=True)
            print(self.figures.render(self.options, seed=self.options.seed), flush=True)
            raise
        finally:
            self._stop.set()
            if monitor.is_alive():
                monitor.join(timeout=10)
            self.cleanup()
        text = self.figures.render(self.options, seed=self.options.seed)
        print(text, flush=True)
        if self.options.report is not None:
            self.options.report.write_text(text + "\n")
        return 1 if self.figures.violations else 0

    def keep_logs(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self.step_log.exists():
            shutil.copy(self.step_log, folder / "steps.jsonl")
        if self.services is not None:
            for incarnation in self.services.all:
                (folder / f"service-{incarnation.pid}.log").write_text(
                    "\n".join(incarnation.process.lines) + "\n")
        for run in self.once_runs:
            (folder / f"once-{run.pid}.log").write_text(run.stderr)
        with self.lock:
            faults = [f"{done.at:.3f} {done.kind} {done.vm or '-'} "
                      f"{'acted' if done.acted else 'skipped'}" for done in self.done]
        (folder / "faults.txt").write_text("\n".join(faults) + "\n")

    def cleanup(self) -> None:
        if self.options.keep is not None:
            self.keep_logs(self.options.keep)
        for run in self.once_runs:
            if not run.done:
                run.proc.kill()
                run.wait(timeout=30)
        if self.services is not None and self.services.all:
            current = self.services.current
            if current.process.proc.poll() is None:
                current.process.stop()
        try:
            if self.sandbox.daemon is None or self.sandbox.daemon.poll() is not None:
                self.sandbox.daemon = None
                self._start_libvirtd()  # its guests are removed through it
            self.chaos.close()
            remove_domains(self.chaos.conn, self.prefix)  # checks that none is left
            self.chaos.close()
            self._stop_libvirtd(kill=False)
        finally:
            self.sandbox.close()  # virtlogd, the folders (and any domain still there)
        shutil.rmtree(self.base, ignore_errors=True)


__all__ = ["VM_KINDS", "Options", "Soak"]

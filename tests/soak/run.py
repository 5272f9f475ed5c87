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

Storage (storage.py, storage_checks.py): every fifth VM has a root volume made from the
soak's Image, a raw data volume and a cloud-init seed in the soak's pool; a storage
monitor reads the pools every second (no volume lost or shrunk, no partial volume
attached, image volumes right, data volumes keep their marker). Its faults (kill -9 at
a storage step, libvirtd stopped during an upload, a full pool) are in `inject`.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from tests.reliability.support import Event, kill_libvirtd
from tests.support.domains import remove_domains
from tests.support.manifests import vm_manifest
from tests.support.sandbox import Sandbox

from . import checks, storage_checks
from .fleet import Libvirt, Seen, matches
from .manifests import ManifestFolder, StorageNames, root_only_spec
from .processes import Incarnation, OnceRun, Services
from .report import Figures
from .schedule import KILL_STEPS, VM_KINDS, Fault, Want, initial_wants, make_schedule
from .storage import BIG_MIB, StepTail, Storage, image_document, image_volume, volume_disks
from .timeline import Timeline

IMAGE = "image"  # the timeline's desire of an Image manifest
DATA = re.compile(r"-d[0-9]+$")

MONITOR_EVERY = 0.5
_NO_SEEN = Seen(name="", uuid="", running=False, shut_off=False, persistent=False,
                managed=False, memory_mib=0, autostart=False, xml_sha256="")
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
        self.step_log = self.base / "steps.jsonl"
        self.state_dir = self.base / "state"
        self.sandbox = Sandbox()
        self.storage = Storage(prefix=self.prefix, base=self.base,
                               root=self.sandbox.base / "root/var/lib/libvirt/images")
        self.folder = ManifestFolder(self.base / "manifests", self.timeline, self.lock,
                                     StorageNames(self.storage.pool, self.storage.image))
        self.full_vm = f"{self.prefix}s-full"  # the full pool's VM
        self.extra_vms: list[str] = []  # VMs beyond `names` (the full pool's, once written)
        self.image_version = 0
        self.image_want = ""  # the volume name of the current image version
        self.ledger = storage_checks.Ledger()
        #: the soak's pool's complete volumes → capacity, as the storage monitor last read
        self.capacities: dict[str, int] = {}
        self.old_seeds: dict[str, str] = {}  # VM → its seed before its user data changed
        self.storage_reads = 0
        self.last_seen: dict[str, Seen] = {}
        self.wants = initial_wants(seed=options.seed, names=self.names)
        self.full_pool: threading.Thread | None = None
        self.storage_thread = threading.Thread(target=self.storage_monitor, daemon=True)
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
        self.storage.mount_tiny()
        self.sandbox.start()
        chaos = self.chaos
        self.storage.define_pools(chaos.conn)
        self.storage_thread.start()  # the first convergence needs its readings
        self.timeline.record(self.storage.big, time.time(), IMAGE)
        self._new_image(0)
        for index, name in enumerate([*self.foreign, self.conflict]):
            chaos.define_foreign(name, start=index == 0)
        self.foreign_before = self._foreign_now(chaos.read_all(self.prefix))
        for name, want in self.wants.items():
            self.folder.write(name, want)
        self.folder.write(self.conflict, Want("running", 64))
        self.services = Services(manifests=self.folder.path, uri=self.sandbox.uri,
                                 lock_dir=self.base / "locks", step_log=self.step_log,
                                 resync=self.options.resync, state_dir=self.state_dir)
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

    def _new_image(self, version: int) -> float:
        """Image version `version` made, and the soak's Image manifest pointed at it."""
        path, made = self.storage.make_image(version)
        with self.lock:
            self.image_version, self.image_want = version, image_volume(self.storage.image,
                                                                        made.sha256)
        return self.folder.write_document(self.storage.image, image_document(
            self.storage.image, path=path, sha256=made.sha256, pool=self.storage.pool), IMAGE)

    def _matches(self, name: str, seen: Seen | None, now: float) -> bool:
        with self.lock:
            capacities, old_seed = self.capacities, self.old_seeds.get(name)
        return matches(seen, self.folder.desire(name, now), capacities=capacities,
                       old_seed=old_seed)

    def _image_converged(self) -> bool:
        with self.lock:
            return self.image_want in self.capacities

    def _all_converged(self, seen: dict[str, Seen]) -> bool:
        now = time.time()
        return self._image_converged() and all(
            self._matches(name, seen.get(name), now) for name in self.names + self.extra_vms)

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
            self.last_seen = seen
            with self.lock:
                pending = self.pending.get(self.storage.image)
                if pending and self.image_want in self.capacities:
                    del self.pending[self.storage.image]
                    self.figures.converged[pending[0]].append(now - pending[1])
            for name in self.names + self.extra_vms:
                before, after = last.get(name), seen.get(name)
                if before is not None and after is None:
                    self.vanished.append((name, last_at, now))
                elif before is not None and after is not None and before.uuid != after.uuid:
                    self.uuid_changes.append((name, last_at, now))
                pending = self.pending.get(name)
                if pending and self._matches(name, after, now):
                    with self.lock:
                        if self.pending.get(name) == pending:
                            del self.pending[name]
                            self.figures.converged[pending[0]].append(now - pending[1])
            last, last_at = seen, now
            self._stop.wait(MONITOR_EVERY)
        reader.close()

    # --- the storage monitor ---------------------------------------------------------------

    def storage_monitor(self) -> None:
        reader = Libvirt(self.sandbox.uri)
        while not self._stop.is_set():
            try:
                self.read_storage(reader)
            except libvirt.libvirtError:
                reader.close()  # the daemon is restarting: nothing to read now
            except Exception as error:  # noqa: BLE001 - a harness bug: said, and go on
                self.figures.notes[f"storage monitor: {type(error).__name__}: {error}"] += 1
            self._stop.wait(1.0)
        reader.close()

    def _storage_vms(self) -> list[str]:
        return [name for name in self.names if self.wants[name].storage] + self.extra_vms

    def read_storage(self, reader: Libvirt, *, final: bool = False) -> None:
        """One reading of the pools and of the storage VMs' disks, and its checks."""
        names = self._storage_vms()
        disks = volume_disks(reader.conn, names)  # first: a disk read before the listing
        capacities, paths = self.storage.listing(reader.conn)  # must be in the listing
        problems = self.ledger.observe(capacities, pools=(self.storage.pool, self.storage.tiny))
        suspect = storage_checks.attached_incomplete(disks, capacities)
        if suspect:  # a definition changed between the two reads (a new seed)? read again
            again = volume_disks(reader.conn, names)
            still = {name: keys for name, keys in again.items() if disks.get(name) == keys}
            problems += storage_checks.attached_incomplete(still, capacities)
        complete = storage_checks.complete(capacities)
        before = set(self.storage.hashed)
        if final:
            self.storage.hashed.clear()  # every image volume read back once more
        self.storage.hash_new_images(capacities, paths)
        fresh = {name: found for name, found in self.storage.hashed.items()
                 if final or name not in before}
        problems += storage_checks.image_problems(fresh, self.storage.expected)
        if final or self.storage_reads % 5 == 0:
            data = {name for pool, name in complete if pool == self.storage.pool
                    and DATA.search(name)}
            problems += self.storage.mark_and_check(capacities, paths, data)
        with self.lock:
            self.capacities = {name: capacity for (pool, name), capacity in complete.items()
                               if pool == self.storage.pool}
            self.storage_reads += 1
        for problem in problems:
            self.violation(problem)

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
            return self._start_once() is not None
        if fault.kind in KILL_STEPS:
            return self._kill_at_step(fault)
        if fault.kind == "upload-libvirtd":
            return self._libvirtd_during_upload(fault)
        if fault.kind == "full-pool":
            self.full_pool = threading.Thread(target=self._full_pool, args=(fault.down,),
                                              daemon=True)
            self.full_pool.start()
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

    def _start_once(self) -> OnceRun | None:
        if sum(not run.done for run in self.once_runs) >= MAX_ONCE_RUNS:
            return None
        locks = self.base / ("once-locks" if self.options.unshared_locks else "locks")
        run = OnceRun.start(manifests=self.folder.path, uri=self.sandbox.uri, lock_dir=locks,
                            step_log=self.step_log, state_dir=self.state_dir)
        self.once_runs.append(run)
        return run

    def _storage_edit(self, fault: Fault) -> str:
        """The edit that causes the fault's storage step; the name the step is on."""
        if fault.kind in ("kill-import", "upload-libvirtd"):
            self._on_vm(self.storage.image, fault.kind, self._new_image(fault.image))
            return self.storage.image
        assert fault.vm is not None and fault.want is not None
        if fault.kind == "kill-seed":
            seeds = [volume for volume in self.last_seen.get(fault.vm, _NO_SEEN).volumes
                     if ".cidata-" in volume]
            with self.lock:
                if seeds:
                    self.old_seeds[fault.vm] = seeds[0]
                else:
                    self.old_seeds.pop(fault.vm, None)
        self._on_vm(fault.vm, fault.kind, self.folder.write(fault.vm, fault.want))
        return fault.vm

    def _kill_at_step(self, fault: Fault) -> bool:
        """The edit, then a kill -9 of the service or of a --once started for it, at the
        step's start line (or `delay` after the edit); the service is started again."""
        assert self.services is not None
        tail = StepTail(self.step_log)
        name = self._storage_edit(fault)
        victim = self._start_once() if fault.target == "once" else None
        how = f"{fault.kind} of {'a --once' if victim else 'the service'}"
        if fault.delay > 0:
            self._stop.wait(fault.delay)
            moment = "after a delay"
        else:
            pid = tail.find(action=KILL_STEPS[fault.kind], name=name, timeout=30)
            moment = ("step line not seen in 30 s" if pid is None else "at the step line"
                      if pid == (victim.pid if victim else self.services.current.pid)
                      else "at the step line of another process")
        if victim is not None:
            killed = victim.kill()
        else:
            self.services.kill()
            killed = True
        self.figures.storage[f"{how}, {moment}" + ("" if killed else " (it had ended)")] += 1
        self._count_partial(name)
        if victim is None:
            self._stop.wait(fault.down)
            self.services.start()
        return True

    def _libvirtd_during_upload(self, fault: Fault) -> bool:
        """A new image version, and libvirtd stopped (SIGKILL or SIGTERM) as its upload
        begins; started again `down` later."""
        assert self.services is not None
        tail = StepTail(self.step_log)
        current = self.services.current
        connected = len(current.process.matching(r"connected to "))
        name = self._storage_edit(fault)
        pid = tail.find(action=KILL_STEPS["kill-import"], name=name, timeout=30)
        self._stop_libvirtd(kill=fault.sigkill)
        signal_name = "SIGKILL" if fault.sigkill else "SIGTERM"
        self.figures.storage[f"libvirtd {signal_name} during an upload, "
                             + ("at the step line" if pid else "step line not seen in 30 s")] += 1
        self._stop.wait(fault.down)
        self._start_libvirtd()
        self._count_partial(name)
        threading.Thread(target=self._reconnected, args=(current, connected, time.time()),
                         daemon=True).start()
        return True

    def _count_partial(self, name: str) -> None:
        """Whether the fault left a partial volume behind (the next pass must finish it)."""
        try:
            listed = self.chaos.conn.storagePoolLookupByName(self.storage.pool).listVolumes()
        except libvirt.libvirtError:
            self.chaos.close()
            return
        if any(volume.startswith(name) and volume.endswith(storage_checks.PARTIAL)
               for volume in listed):
            self.figures.storage["left a partial volume"] += 1

    def _full_pool(self, down: float) -> None:
        """A VM whose image does not fit in the tiny pool: a clear failure and nothing
        in the pool nor defined while it lasts; then the pool is enlarged (the fault
        cleared) and the VM must converge."""
        assert self.services is not None
        path, made = self.storage.make_image(-1, BIG_MIB)
        began = time.time()
        lines_before = {incarnation.pid: len(incarnation.process.lines)
                        for incarnation in self.services.all}
        self.folder.write_document(self.storage.big, image_document(
            self.storage.big, path=path, sha256=made.sha256, pool=self.storage.tiny), IMAGE)
        want = Want("stopped", 64)
        disks = root_only_spec(self.full_vm, pool=self.storage.tiny, image=self.storage.big)
        self.folder.write_text(self.full_vm, vm_manifest(
            self.full_vm, memory="64MiB", state="stopped", stop_timeout=0, extra=disks), want)
        self.extra_vms.append(self.full_vm)
        failed = False
        while time.time() < began + down and not self._stop.is_set():
            failed = failed or any(
                "bytes available" in line for incarnation in self.services.all
                for line in list(incarnation.process.lines)[
                    lines_before.get(incarnation.pid, 0):])
            try:
                listed = self.chaos.conn.storagePoolLookupByName(self.storage.tiny).listVolumes()
                defined = self.full_vm in self.chaos.read_all(self.full_vm)
            except libvirt.libvirtError:
                self.chaos.close()
                listed, defined = [], False
            if listed or defined:
                self.violation(f"the full pool holds {listed}, {self.full_vm} defined: "
                               f"{defined}, while its image cannot fit")
            self._stop.wait(1.0)
        if not failed:
            self.violation(f"the full pool: no line of the service said 'bytes available' "
                           f"within {down:.0f} s")
        self.figures.storage["full pool: a clear failure seen"] += failed
        self.storage.enlarge_tiny()
        self._on_vm(self.full_vm, "full-pool (cleared)", time.time())

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
        if self.full_pool is not None:
            self.full_pool.join()
        for name in self.names:
            if not isinstance(self.folder.desire(name), Want):
                want = replace(self._last_want(name), state=rng.choice(("running", "stopped")),
                               memory=64)
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
                             lock_dir=self.base / "locks", step_log=self.step_log,
                             state_dir=self.state_dir)
        self.once_runs.append(last)
        last.wait(timeout=600)
        for problem in last.problems():
            self.violation(problem)
        results = {vm["name"]: vm["result"] for vm in last.report.get("vms", [])}
        results.update({image["name"]: image["result"]
                        for image in last.report.get("images", [])})
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
        reader = Libvirt(self.sandbox.uri)
        try:
            self.read_storage(reader, final=True)
        finally:
            reader.close()
        self.figures.storage_reads = self.storage_reads

    def _last_want(self, name: str) -> Want:
        """The last valid manifest of `name` (a restore keeps its storage)."""
        with self.lock:
            wants = [desire for desire in self.timeline.during(name, 0.0, time.time())
                     if isinstance(desire, Want)]
        return wants[-1] if wants else self.wants[name]

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
            for thread in (monitor, self.storage_thread):
                if thread.is_alive():
                    thread.join(timeout=10)
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
            problems = self.storage.remove_pools(self.chaos.conn)
            self.chaos.close()
            self._stop_libvirtd(kill=False)
            assert not problems, f"removing the soak's pools: {problems}"
        finally:
            self.sandbox.close()  # virtlogd, the folders (and any domain still there)
            self.storage.unmount_tiny()
        shutil.rmtree(self.base, ignore_errors=True)


__all__ = ["VM_KINDS", "Options", "Soak"]

"""The service's resync lends its listing to the reconcile of each VM after it
(controller/virt/lent.py), in place of a lookup: one call for a stopped VM instead of
five. Level-triggering holds: the definition is still read afresh (a change libvirt
sends no event for is undone), and a listing older than an event, or than another
reconcile of the VM, is never used for that VM again."""

from __future__ import annotations

import os
from pathlib import Path

import libvirt
import pytest

from controller.hosts import Host
from controller.locks import VMLocks
from controller.manifests import LoadResult, load_directory
from controller.model import Result
from controller.service.states import VMStates
from controller.service.triggers import Triggers
from controller.virt import Hypervisor, LentListing
from controller.watch import ManifestSet
from controller.workqueue import WorkQueue

from ..support.rig import Rig
from .conftest import vm


def _backdate(locks: VMLocks, name: str) -> None:
    """The lock's last stamp a second ago: as after a resync long past (the check allows
    for the kernel's coarse file clock, 50 ms)."""
    path = locks.path_for(name)
    old = path.stat().st_mtime_ns - 1_000_000_000
    os.utime(path, ns=(old, old))


class Service:
    """The rig's host, resynced as the service's triggers do."""

    def __init__(self, rig: Rig, manifest_dir: Path):
        self.rig = rig
        self.host: Host = rig.hosts[""]
        self.host.up = True  # what the service's connection supervisor says
        self.queue = WorkQueue()
        self.triggers = Triggers(queue=self.queue, manifests=ManifestSet(str(manifest_dir)),
                                 hosts=rig.hosts, states=VMStates(), why={},
                                 scope=lambda: {""}, prune=False,
                                 want_resync=lambda _why: None, wake=lambda: None)

    def resync(self, load: LoadResult) -> None:
        self.rig.hosts.forget_listings()  # the rig's passes set theirs; the service has none
        for name in load.specs:
            assert self.rig.locks is not None
            _backdate(self.rig.locks, name)
        names = self.triggers.resync("test", load, [self.host], on_silent=lambda _h: None,
                                     on_lost=lambda _h: None)
        assert names == set(load.specs)
        assert self.host.lent is not None and self.host.lent.listing is not None

    def reconcile(self, load: LoadResult, name: str) -> tuple[Result, int]:
        """One worker's reconcile of `name`: its result and the libvirt calls it made."""
        before = self.host.hypervisor.calls
        outcome = self.rig.reconciler(load).reconcile(name)
        return outcome.result, self.host.hypervisor.calls - before


@pytest.fixture
def service(rig: Rig, manifest_dir: Path) -> Service:
    return Service(rig, manifest_dir)


def _load(manifest_dir: Path, *names: str) -> LoadResult:
    for name in names:
        (manifest_dir / f"{name}.yaml").write_text(vm(name, state="stopped"))
    return load_directory(str(manifest_dir))


def test_the_listing_stands_in_for_the_lookup_once(
        service: Service, manifest_dir: Path) -> None:
    load = _load(manifest_dir, "a")
    service.rig.run_pass(load)
    service.resync(load)
    assert service.reconcile(load, "a") == (Result.UNCHANGED, 1)  # XMLDesc only
    result, calls = service.reconcile(load, "a")  # no resync since: looked up
    assert result is Result.UNCHANGED and calls >= 4
    service.resync(load)
    assert service.reconcile(load, "a") == (Result.UNCHANGED, 1)


def test_a_definition_changed_after_the_listing_without_an_event_is_undone(
        service: Service, manifest_dir: Path, hypervisor: Hypervisor) -> None:
    load = _load(manifest_dir, "a")
    service.rig.run_pass(load)
    service.resync(load)
    dom = hypervisor.connection.conn.lookupByName("a")
    dom.setMemoryFlags(128 * 1024, libvirt.VIR_DOMAIN_MEM_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    result, calls = service.reconcile(load, "a")
    assert result is Result.CONVERGED and calls >= 2
    assert hypervisor.connection.conn.lookupByName("a").maxMemory() == 64 * 1024


def test_an_event_after_the_listing_makes_its_vm_looked_up(
        service: Service, manifest_dir: Path, hypervisor: Hypervisor) -> None:
    """Autostart comes from the listing. Turned on after it: with the event that a
    change brings, the VM is looked up and turned back; the control VM, changed the same
    way without an event, shows what the listing alone says (its moment), and the next
    reconcile, without a listing, undoes it."""
    load = _load(manifest_dir, "a", "control")
    service.rig.run_pass(load)
    service.resync(load)
    conn = hypervisor.connection.conn
    for name in ("a", "control"):
        conn.lookupByName(name).setAutostart(1)
    service.triggers.on_event("", "a", "defined")  # as libvirt's event thread calls it
    assert service.queue.queued() == {"a", "control"}

    result, calls = service.reconcile(load, "a")
    assert result is Result.CONVERGED and calls >= 4
    assert not conn.lookupByName("a").autostart()

    assert service.reconcile(load, "control") == (Result.UNCHANGED, 1)
    assert service.reconcile(load, "control")[0] is Result.CONVERGED
    assert not conn.lookupByName("control").autostart()


def test_a_reconcile_since_the_listing_makes_the_next_one_look_up(
        service: Service, manifest_dir: Path) -> None:
    """Another run (a `--once` next to the service) changed the VM under its lock after
    the listing (it stamped the lock): the listing is not lent."""
    load = _load(manifest_dir, "a")
    service.rig.run_pass(load)
    service.resync(load)
    assert service.rig.locks is not None
    with service.rig.locks.hold("a") as held:
        held.stamp()
    result, calls = service.reconcile(load, "a")
    assert result is Result.UNCHANGED and calls >= 4


def test_a_run_that_only_looked_since_the_listing_leaves_it_lent(
        service: Service, manifest_dir: Path) -> None:
    """Another run held the lock after the listing but changed nothing (no stamp): the
    listing still stands in for the lookup."""
    load = _load(manifest_dir, "a")
    service.rig.run_pass(load)
    service.resync(load)
    assert service.rig.locks is not None
    with service.rig.locks.hold("a"):
        pass
    result, calls = service.reconcile(load, "a")
    assert result is Result.UNCHANGED and calls == 1


def test_a_reconcile_stamps_the_lock_only_when_it_changes_the_vm(
        rig: Rig, manifest_dir: Path) -> None:
    """Converging the VM stamps its lock (before the first step and at the release);
    a pass that finds nothing to do leaves the stamp as it was."""
    load = _load(manifest_dir, "a")
    assert rig.locks is not None
    path = rig.locks.path_for("a")
    rig.run_pass(load)  # defines it: stamped
    _backdate(rig.locks, "a")
    backdated = path.stat().st_mtime_ns
    rig.run_pass(load)  # unchanged
    assert path.stat().st_mtime_ns == backdated
    (manifest_dir / "a.yaml").write_text(vm("a", state="stopped", memory=96))
    rig.run_pass(load_directory(str(manifest_dir)))  # a change: stamped
    assert path.stat().st_mtime_ns > backdated


def test_a_lent_listing_expires_and_dies_with_its_handles(hypervisor: Hypervisor) -> None:
    domains = hypervisor.domains
    now = [0.0]
    lent = LentListing(still_valid=domains.holds, clock=lambda: now[0], lend_for=10.0)
    lent.spoil("spoiled-before-the-listing")
    assert lent.take("test") is None  # nothing lent before the listing is in
    listing = domains.list_all()
    lent.lend(listing)
    assert lent.take("spoiled-before-the-listing") is None
    assert lent.take("test") is listing
    assert lent.take("test") is None  # once per name

    now[0] = 10.5
    assert lent.take("other") is None  # expired

    again = LentListing(still_valid=domains.holds)
    again.lend(listing)
    domains.list_all()
    assert again.take("a") is listing  # the newest two listings keep their handles
    domains.list_all()
    assert again.take("b") is None  # its handles are gone

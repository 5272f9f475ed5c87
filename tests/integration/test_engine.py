"""The reconciler and a pass against libvirt's in-process test driver: real libvirt-python,
no daemon."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import libvirt
import pytest

from controller import domainxml
from controller.manifests import load_directory
from controller.model import Action, Result, Step
from controller.virt import Hypervisor

from ..support.rig import Rig
from .conftest import Writer, vm


def actions(outcome: object) -> list[str]:
    return [step.action.value for step in outcome.steps]  # type: ignore[attr-defined]


def results(report: object) -> dict[str, str]:
    return {o.name: o.result.value for o in report.outcomes}  # type: ignore[attr-defined]


def test_create_then_nothing_to_do(rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    load = write("a.yaml", vm("a", autostart="true") + "---\n" + vm("b", state="stopped"))
    first = rig.run_pass(load)
    assert results(first) == {"a": "converged", "b": "converged"}
    assert [actions(o) for o in first.outcomes] == [["define", "autostart", "start"], ["define"]]

    a = hypervisor.connection.conn.lookupByName("a")
    assert a.isActive() and a.autostart()
    assert not hypervisor.connection.conn.lookupByName("b").isActive()

    second = rig.run_pass(load)
    assert results(second) == {"a": "unchanged", "b": "unchanged"}
    assert all(o.steps == [] for o in second.outcomes)


def test_memory_change_restarts_and_keeps_uuid(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a")))
    uuid = hypervisor.connection.conn.lookupByName("a").UUIDString()

    report = rig.run_pass(write("a.yaml", vm("a", memory=128)))
    (outcome,) = report.outcomes
    assert outcome.result is Result.CONVERGED
    assert actions(outcome) == ["destroy", "define", "start"]
    assert outcome.steps[0].reason == "memory 64 MiB → 128 MiB needs a restart"
    dom = hypervisor.connection.conn.lookupByName("a")
    assert dom.UUIDString() == uuid
    assert dom.maxMemory() == 128 * 1024
    assert dom.isActive()


def test_next_boot_policy_saves_and_reports_pending(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a", updatePolicy="next-boot")))
    dom_id = hypervisor.connection.conn.lookupByName("a").ID()

    load = write("a.yaml", vm("a", updatePolicy="next-boot", vcpus=2))
    (outcome,) = rig.run_pass(load).outcomes
    assert outcome.result is Result.RESTART_PENDING
    assert actions(outcome) == ["define"]
    assert outcome.note == "vcpus 1 → 2 takes effect at the next boot"
    dom = hypervisor.connection.conn.lookupByName("a")
    assert dom.ID() == dom_id
    saved = domainxml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert saved.vcpus == 2

    (again,) = rig.run_pass(load).outcomes
    assert again.result is Result.RESTART_PENDING
    assert again.steps == []


def test_current_memory_is_applied_live_without_restart(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a", memory=128)))
    dom_id = hypervisor.connection.conn.lookupByName("a").ID()
    load = write("a.yaml", vm("a", memory=128, currentMemory=96))
    (outcome,) = rig.run_pass(load).outcomes
    assert outcome.result is Result.CONVERGED
    assert actions(outcome) == ["set-memory", "define"]
    assert hypervisor.connection.conn.lookupByName("a").ID() == dom_id
    (again,) = rig.run_pass(load).outcomes
    assert again.result is Result.UNCHANGED


def test_stopped_then_absent(rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a")))
    (stop,) = rig.run_pass(write("a.yaml", vm("a", state="stopped")),
                              prune=False, max_prune=5).outcomes
    assert actions(stop) == ["destroy"]
    assert not hypervisor.connection.conn.lookupByName("a").isActive()
    (gone,) = rig.run_pass(write("a.yaml", vm("a", state="absent")),
                              prune=False, max_prune=5).outcomes
    assert actions(gone) == ["undefine"]
    assert "a" not in hypervisor.connection.conn.listDefinedDomains()


def test_unmanaged_domain_is_a_conflict_until_adopted(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    hypervisor.connection.conn.defineXML(
        "<domain type='kvm'><name>u</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os>"
        "<devices><interface type='network'><source network='default'/>"
        "<mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface></devices>"
        "</domain>").create()
    unmanaged = hypervisor.connection.conn.lookupByName("u")
    before = unmanaged.XMLDesc(0)
    (conflict,) = rig.run_pass(write("u.yaml", vm("u", memory="8GiB", vcpus=2)),
                                  prune=False, max_prune=5).outcomes
    assert conflict.result is Result.CONFLICT
    assert "not managed" in (conflict.error or "")
    assert unmanaged.XMLDesc(0) == before

    load = write("u.yaml", vm("u", adopt="true", interfaces="[{network: default}]"))
    (adopted,) = rig.run_pass(load).outcomes
    assert adopted.result is Result.CONVERGED
    assert actions(adopted) == ["define"]
    assert adopted.steps[0].reason == "adopt: mark the domain as managed"
    after = hypervisor.connection.conn.lookupByName("u")
    assert after.UUIDString() == unmanaged.UUIDString()
    assert after.ID() == unmanaged.ID()  # not restarted
    observed = hypervisor.domains.observe("u")
    assert observed.managed
    assert observed.saved.interfaces[0].mac == "52:54:00:aa:bb:cc"  # type: ignore[union-attr]

    hypervisor.connection.conn.lookupByName("test")  # the driver's own domain is still there


def test_orphans_are_reported_and_pruned_only_when_safe(
        rig: Rig, hypervisor: Hypervisor, write: Writer, manifest_dir: Path) -> None:
    rig.run_pass(write("a.yaml", vm("a") + "---\n" + vm("b")))
    load = write("a.yaml", vm("a"))

    kept = rig.run_pass(load)
    assert kept.orphans == ["b"]
    assert "b" in hypervisor.connection.conn.listDefinedDomains() + [
        d.name() for d in hypervisor.connection.conn.listAllDomains()]

    (manifest_dir / "bad.yaml").write_text("apiVersion: reconcile/v1\nkind: [\n")
    unsafe = rig.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert unsafe.prune_note and "nothing pruned" in unsafe.prune_note
    assert hypervisor.domains.observe("b").exists

    (manifest_dir / "bad.yaml").unlink()
    too_many = rig.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=0)
    assert results(too_many)["b"] == "failed"
    assert hypervisor.domains.observe("b").exists

    pruned = rig.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert results(pruned) == {"a": "unchanged", "b": "pruned"}
    assert not hypervisor.domains.observe("b").exists
    assert hypervisor.domains.observe("test").exists  # unmanaged: never an orphan


def test_empty_directory_prunes_nothing(
        rig: Rig, hypervisor: Hypervisor, write: Writer, manifest_dir: Path) -> None:
    rig.run_pass(write("a.yaml", vm("a")))
    (manifest_dir / "a.yaml").unlink()
    report = rig.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert report.orphans == ["a"]
    assert hypervisor.domains.observe("a").exists
    assert report.prune_note and "holds no manifests" in report.prune_note


def test_dry_run_changes_nothing(hypervisor: Hypervisor, rig: Rig, write: Writer) -> None:
    dry = Rig.single(hypervisor, None, dry_run=True)
    (outcome,) = dry.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5).outcomes
    assert outcome.result is Result.PLANNED
    assert actions(outcome) == ["define", "start"]
    assert not hypervisor.domains.observe("a").exists


def test_suspended_vm_reports_drift_only(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a")))
    load = write("a.yaml", vm("a", vcpus=2, suspend="true"))
    (outcome,) = rig.run_pass(load).outcomes
    assert outcome.result is Result.SUSPENDED
    assert actions(outcome) == ["destroy", "define", "start"]
    assert hypervisor.domains.observe("a").saved.vcpus == 1  # type: ignore[union-attr]


def test_already_exists_during_define_is_resolved_by_observing_again(
        hypervisor: Hypervisor, locks: object, write: Writer) -> None:
    """Someone defines the name between our observation and our define."""
    intruder_xml = ("<domain type='test'><name>a</name><memory unit='MiB'>32</memory>"
                    "<vcpu>1</vcpu><os><type>hvm</type></os>"
                    f"<metadata><m:managed xmlns:m='{domainxml.MANAGED_NS}'/></metadata>"
                    "</domain>")
    fired: list[bool] = []

    def intrude(name: str, step: Step, phase: str) -> None:
        if step.action is Action.DEFINE and phase == "start" and not fired:
            fired.append(True)
            hypervisor.connection.conn.defineXML(intruder_xml)

    rig = Rig.single(hypervisor, locks, observer=intrude)  # type: ignore[arg-type]
    pinned = vm("a").replace("  name: a\n",
                             "  name: a\n  uuid: 6c5d3a8e-0f1b-4c2d-9e7a-5b4c3d2e1f00\n")
    (outcome,) = rig.run_pass(write("a.yaml", pinned)).outcomes
    assert fired
    assert outcome.result is Result.CONVERGED, outcome.error
    dom = hypervisor.connection.conn.lookupByName("a")
    assert dom.UUIDString() == "6c5d3a8e-0f1b-4c2d-9e7a-5b4c3d2e1f00"
    assert dom.isActive()


def test_one_vm_is_never_reconciled_twice_at_once(
        hypervisor: Hypervisor, locks: object, write: Writer) -> None:
    """Two threads with conflicting manifests for one VM: their steps never interleave."""
    log: list[tuple[int, str, str]] = []
    guard = threading.Lock()

    def record(name: str, step: Step, phase: str) -> None:
        with guard:
            log.append((threading.get_ident(), step.action.value, phase))

    rig = Rig.single(hypervisor, locks, observer=record)  # type: ignore[arg-type]
    rig.run_pass(write("a.yaml", vm("a")))
    log.clear()
    bigger = write("a.yaml", vm("a", memory=256)).specs["a"]
    gone = write("a.yaml", vm("a", state="absent")).specs["a"]
    barrier = threading.Barrier(2)
    outcomes = []

    def run(spec: object) -> None:
        barrier.wait()
        outcomes.append(rig.reconcile(spec))  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(s,)) for s in (bigger, gone)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(o.result in (Result.CONVERGED, Result.UNCHANGED) for o in outcomes), outcomes
    # The log is two contiguous runs, one per thread.
    owners = [thread for thread, _, _ in log]
    switches = sum(1 for x, y in itertools.pairwise(owners) if x != y)
    assert switches <= 1, log


def test_unreadable_domain_is_failed_not_absent(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a")))
    hypervisor.connection.close()  # every call now fails: libvirt is "unreachable"
    hypervisor.connection.uri = "test:///nonexistent/host.xml"  # reconnecting fails too
    (outcome,) = rig.run_pass(write("a.yaml", vm("a")), prune=True, max_prune=5).outcomes
    assert outcome.result is Result.FAILED
    assert outcome.steps == []


@pytest.mark.parametrize("flags_domain", ["a"])
def test_undefine_keeps_nvram_flags_fallback(
        rig: Rig, hypervisor: Hypervisor, write: Writer, flags_domain: str) -> None:
    rig.run_pass(write("a.yaml", vm(flags_domain, state="stopped")))
    hypervisor.steps.undefine(flags_domain)
    hypervisor.steps.undefine(flags_domain)  # already done: no error
    hypervisor.steps.destroy(flags_domain)  # missing: no error
    assert not hypervisor.domains.observe(flags_domain).exists

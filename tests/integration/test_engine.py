"""The engine against libvirt's in-process test driver: real libvirt-python, no daemon."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import libvirt
import pytest

from controller import domainxml
from controller.engine import Engine
from controller.hypervisor import Hypervisor
from controller.manifests import load_directory
from controller.model import Action, Result, Step

from .conftest import Writer, vm


def actions(outcome: object) -> list[str]:
    return [step.action.value for step in outcome.steps]  # type: ignore[attr-defined]


def results(report: object) -> dict[str, str]:
    return {o.name: o.result.value for o in report.outcomes}  # type: ignore[attr-defined]


def test_create_then_nothing_to_do(engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    load = write("a.yaml", vm("a", autostart="true") + "---\n" + vm("b", state="stopped"))
    first = engine.run_pass(load, prune=False, max_prune=5)
    assert results(first) == {"a": "converged", "b": "converged"}
    assert [actions(o) for o in first.outcomes] == [["define", "autostart", "start"], ["define"]]

    a = hypervisor.conn.lookupByName("a")
    assert a.isActive() and a.autostart()
    assert not hypervisor.conn.lookupByName("b").isActive()

    second = engine.run_pass(load, prune=False, max_prune=5)
    assert results(second) == {"a": "unchanged", "b": "unchanged"}
    assert all(o.steps == [] for o in second.outcomes)


def test_memory_change_restarts_and_keeps_uuid(
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    uuid = hypervisor.conn.lookupByName("a").UUIDString()

    report = engine.run_pass(write("a.yaml", vm("a", memory=128)), prune=False, max_prune=5)
    (outcome,) = report.outcomes
    assert outcome.result is Result.CONVERGED
    assert actions(outcome) == ["destroy", "define", "start"]
    assert outcome.steps[0].reason == "memory 64 MiB → 128 MiB needs a restart"
    dom = hypervisor.conn.lookupByName("a")
    assert dom.UUIDString() == uuid
    assert dom.maxMemory() == 128 * 1024
    assert dom.isActive()


def test_next_boot_policy_saves_and_reports_pending(
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a", updatePolicy="next-boot")), prune=False, max_prune=5)
    dom_id = hypervisor.conn.lookupByName("a").ID()

    load = write("a.yaml", vm("a", updatePolicy="next-boot", vcpus=2))
    (outcome,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert outcome.result is Result.RESTART_PENDING
    assert actions(outcome) == ["define"]
    assert outcome.note == "vcpus 1 → 2 takes effect at the next boot"
    dom = hypervisor.conn.lookupByName("a")
    assert dom.ID() == dom_id
    saved = domainxml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert saved.vcpus == 2

    (again,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert again.result is Result.RESTART_PENDING
    assert again.steps == []


def test_current_memory_is_applied_live_without_restart(
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a", memory=128)), prune=False, max_prune=5)
    dom_id = hypervisor.conn.lookupByName("a").ID()
    load = write("a.yaml", vm("a", memory=128, currentMemory=96))
    (outcome,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert outcome.result is Result.CONVERGED
    assert actions(outcome) == ["set-memory", "define"]
    assert hypervisor.conn.lookupByName("a").ID() == dom_id
    (again,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert again.result is Result.UNCHANGED


def test_stopped_then_absent(engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    (stop,) = engine.run_pass(write("a.yaml", vm("a", state="stopped")),
                              prune=False, max_prune=5).outcomes
    assert actions(stop) == ["destroy"]
    assert not hypervisor.conn.lookupByName("a").isActive()
    (gone,) = engine.run_pass(write("a.yaml", vm("a", state="absent")),
                              prune=False, max_prune=5).outcomes
    assert actions(gone) == ["undefine"]
    assert "a" not in hypervisor.conn.listDefinedDomains()


def test_unmanaged_domain_is_a_conflict_until_adopted(
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    hypervisor.conn.defineXML(
        "<domain type='kvm'><name>u</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os>"
        "<devices><interface type='network'><source network='default'/>"
        "<mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface></devices>"
        "</domain>").create()
    unmanaged = hypervisor.conn.lookupByName("u")
    before = unmanaged.XMLDesc(0)
    (conflict,) = engine.run_pass(write("u.yaml", vm("u", memory="8GiB", vcpus=2)),
                                  prune=False, max_prune=5).outcomes
    assert conflict.result is Result.CONFLICT
    assert "not managed" in (conflict.error or "")
    assert unmanaged.XMLDesc(0) == before

    load = write("u.yaml", vm("u", adopt="true", interfaces="[{network: default}]"))
    (adopted,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert adopted.result is Result.CONVERGED
    assert actions(adopted) == ["define"]
    assert adopted.steps[0].reason == "adopt: mark the domain as managed"
    after = hypervisor.conn.lookupByName("u")
    assert after.UUIDString() == unmanaged.UUIDString()
    assert after.ID() == unmanaged.ID()  # not restarted
    observed = hypervisor.observe("u")
    assert observed.managed
    assert observed.saved.interfaces[0].mac == "52:54:00:aa:bb:cc"  # type: ignore[union-attr]

    hypervisor.conn.lookupByName("test")  # the driver's own domain is still there


def test_orphans_are_reported_and_pruned_only_when_safe(
        engine: Engine, hypervisor: Hypervisor, write: Writer, manifest_dir: Path) -> None:
    engine.run_pass(write("a.yaml", vm("a") + "---\n" + vm("b")), prune=False, max_prune=5)
    load = write("a.yaml", vm("a"))

    kept = engine.run_pass(load, prune=False, max_prune=5)
    assert kept.orphans == ["b"]
    assert "b" in hypervisor.conn.listDefinedDomains() + [
        d.name() for d in hypervisor.conn.listAllDomains()]

    (manifest_dir / "bad.yaml").write_text("apiVersion: reconcile/v1\nkind: [\n")
    unsafe = engine.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert unsafe.prune_note and "nothing pruned" in unsafe.prune_note
    assert hypervisor.observe("b").exists

    (manifest_dir / "bad.yaml").unlink()
    too_many = engine.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=0)
    assert results(too_many)["b"] == "failed"
    assert hypervisor.observe("b").exists

    pruned = engine.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert results(pruned) == {"a": "unchanged", "b": "pruned"}
    assert not hypervisor.observe("b").exists
    assert hypervisor.observe("test").exists  # unmanaged: never an orphan


def test_empty_directory_prunes_nothing(
        engine: Engine, hypervisor: Hypervisor, write: Writer, manifest_dir: Path) -> None:
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    (manifest_dir / "a.yaml").unlink()
    report = engine.run_pass(load_directory(str(manifest_dir)), prune=True, max_prune=5)
    assert report.orphans == ["a"]
    assert hypervisor.observe("a").exists
    assert report.prune_note and "holds no manifests" in report.prune_note


def test_dry_run_changes_nothing(hypervisor: Hypervisor, engine: Engine, write: Writer) -> None:
    dry = Engine(hypervisor, engine.locks, dry_run=True)
    (outcome,) = dry.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5).outcomes
    assert outcome.result is Result.PLANNED
    assert actions(outcome) == ["define", "start"]
    assert not hypervisor.observe("a").exists


def test_suspended_vm_reports_drift_only(
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    load = write("a.yaml", vm("a", vcpus=2, suspend="true"))
    (outcome,) = engine.run_pass(load, prune=False, max_prune=5).outcomes
    assert outcome.result is Result.SUSPENDED
    assert actions(outcome) == ["destroy", "define", "start"]
    assert hypervisor.observe("a").saved.vcpus == 1  # type: ignore[union-attr]


def test_already_exists_during_define_is_resolved_by_observing_again(
        hypervisor: Hypervisor, locks: object, write: Writer) -> None:
    """Someone defines the name between our observation and our define."""
    intruder_xml = ("<domain type='test'><name>a</name><memory unit='MiB'>32</memory>"
                    "<vcpu>1</vcpu><os><type>hvm</type></os>"
                    f"<metadata><m:managed xmlns:m='{domainxml.MANAGED_NS}'/></metadata>"
                    "</domain>")
    fired = []

    def intrude(name: str, step: Step, phase: str) -> None:
        if step.action is Action.DEFINE and phase == "start" and not fired:
            fired.append(True)
            hypervisor.conn.defineXML(intruder_xml)

    engine = Engine(hypervisor, locks, observer=intrude)  # type: ignore[arg-type]
    pinned = vm("a").replace("  name: a\n",
                             "  name: a\n  uuid: 6c5d3a8e-0f1b-4c2d-9e7a-5b4c3d2e1f00\n")
    (outcome,) = engine.run_pass(write("a.yaml", pinned), prune=False, max_prune=5).outcomes
    assert fired
    assert outcome.result is Result.CONVERGED, outcome.error
    dom = hypervisor.conn.lookupByName("a")
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

    engine = Engine(hypervisor, locks, observer=record)  # type: ignore[arg-type]
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    log.clear()
    bigger = write("a.yaml", vm("a", memory=256)).specs["a"]
    gone = write("a.yaml", vm("a", state="absent")).specs["a"]
    barrier = threading.Barrier(2)
    outcomes = []

    def run(spec: object) -> None:
        barrier.wait()
        outcomes.append(engine.reconcile(spec))  # type: ignore[arg-type]

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
        engine: Engine, hypervisor: Hypervisor, write: Writer) -> None:
    engine.run_pass(write("a.yaml", vm("a")), prune=False, max_prune=5)
    hypervisor.close()  # every call now fails: libvirt is "unreachable"
    engine.reconnect_wait = 0.001
    hypervisor.uri = "test:///nonexistent/host.xml"  # reconnecting fails too
    (outcome,) = engine.run_pass(write("a.yaml", vm("a")), prune=True, max_prune=5).outcomes
    assert outcome.result is Result.FAILED
    assert outcome.steps == []


@pytest.mark.parametrize("flags_domain", ["a"])
def test_undefine_keeps_nvram_flags_fallback(
        engine: Engine, hypervisor: Hypervisor, write: Writer, flags_domain: str) -> None:
    engine.run_pass(write("a.yaml", vm(flags_domain, state="stopped")), prune=False, max_prune=5)
    hypervisor.undefine(flags_domain)
    hypervisor.undefine(flags_domain)  # already done: no error
    hypervisor.destroy(flags_domain)  # missing: no error
    assert not hypervisor.observe(flags_domain).exists

"""Networks and storage pools on libvirt's test driver, through whole passes as --once runs
them: the order (pools, images, networks, VMs; removal in reverse), VMs failed (never
half-created) when what they need is missing or failed, ownership and adoption, live
DHCP changes, prune counted with domains, and the refusals that touch nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import render
from controller.manifests import LoadResult, load_directory
from controller.model import Outcome, Result
from controller.passes import PassReport
from controller.virt import Hypervisor

from ..support.rig import Rig

LAB: dict[str, Any] = {
    "bridge": "virbr-lab", "ipv4": {"address": "192.168.150.1/24",
                                    "dhcp": {"start": "192.168.150.100",
                                             "end": "192.168.150.200"}},
    "dhcpHosts": [{"mac": "52:54:00:00:15:01", "ip": "192.168.150.11", "name": "web-1"}],
    "autostart": True}


def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def vm(name: str, **spec: Any) -> dict[str, Any]:
    return doc("VirtualMachine", name, memory=64, vcpus=1, stopTimeout=0, **spec)


class Tree:
    """A manifest directory written from documents, loaded with a disk root of its own."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "manifests"
        self.folder.mkdir()
        self.disks = root / "disks"
        self.disks.mkdir()

    def write(self, *documents: dict[str, Any]) -> LoadResult:
        (self.folder / "all.yaml").write_text(yaml.safe_dump_all(documents))
        return load_directory(str(self.folder), disk_roots=(str(self.disks),))


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def by(report: PassReport, kind: str = "vm") -> dict[str, Outcome]:
    return {outcome.name: outcome for outcome in report.outcomes if outcome.kind == kind}


def steps(outcome: Outcome) -> list[str]:
    return [step.action.value for step in outcome.steps]


def test_pools_images_networks_then_vms_and_a_second_pass_changes_nothing(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    load = tree.write(
        doc("Network", "lab", **LAB),
        doc("StoragePool", "vmstore", path=str(tree.disks / "vmstore"), autostart=True),
        vm("web-1", interfaces=[{"network": "lab", "mac": "52:54:00:00:15:01"}],
           disks=[{"volume": "web-1-root", "pool": "vmstore", "size": "64MiB"}]))
    assert load.invalid == []
    report = rig.run_pass(load)
    assert [(o.kind, o.name, o.result) for o in report.outcomes] == [
        ("pool", "vmstore", Result.CONVERGED), ("network", "lab", Result.CONVERGED),
        ("vm", "web-1", Result.CONVERGED)]
    assert steps(by(report, "pool")["vmstore"]) == [
        "define-pool", "build-pool", "start-pool", "autostart-pool"]
    assert steps(by(report, "network")["lab"]) == [
        "define-network", "autostart-network", "start-network"]
    network = hypervisor.networks.state("lab")
    assert network.active and network.autostart and network.managed
    assert hypervisor.pools.state("vmstore").managed
    assert hypervisor.storage.volume("vmstore", "web-1-root") is not None
    again = rig.run_pass(load)
    assert {(o.kind, o.name): o.result for o in again.outcomes} == {
        ("pool", "vmstore"): Result.UNCHANGED, ("network", "lab"): Result.UNCHANGED,
        ("vm", "web-1"): Result.UNCHANGED}


def test_the_json_and_text_output_show_them_before_the_vms(
        rig: Rig, tree: Tree) -> None:
    load = tree.write(doc("Network", "lab", **LAB),
                      vm("web-1", interfaces=[{"network": "lab"}]))
    report = rig.run_pass(load)
    data = yaml.safe_load(render.to_json(report.outcomes, load.invalid, report.orphans,
                                         pools=bool(load.pools), networks=bool(load.networks)))
    assert [item["name"] for item in data["networks"]] == ["lab"]
    assert data["networks"][0]["result"] == "converged"
    assert "pools" not in data and [item["name"] for item in data["vms"]] == ["web-1"]
    text = render.to_text(report.outcomes, load.invalid, report.orphans)
    assert text.index("network lab") < text.index("web-1")


def test_a_vm_whose_network_does_not_exist_is_failed_and_never_defined(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    load = tree.write(vm("web-1", interfaces=[{"network": "nowhere"}]),
                      vm("web-2", disks=[{"volume": "v", "pool": "nopool", "size": "8MiB"}]))
    report = rig.run_pass(load)
    outcomes = by(report)
    assert outcomes["web-1"].result is Result.FAILED
    assert outcomes["web-1"].error == ("network nowhere does not exist and no Network "
                                       "manifest declares it")
    assert outcomes["web-2"].error == ("storage pool nopool does not exist and no StoragePool "
                                       "manifest declares it")
    assert outcomes["web-1"].steps == [] and outcomes["web-2"].steps == []
    assert not hypervisor.domains.observe("web-1").exists
    assert not hypervisor.domains.observe("web-2").exists


def test_an_existing_stopped_domain_on_a_missing_network_is_adopted_as_it_is(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    hypervisor.steps.define(
        "<domain type='test'><name>web-1</name><memory>65536</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os><devices><interface type='network'>"
        "<mac address='52:54:00:00:15:09'/><source network='nowhere'/><model type='virtio'/>"
        "</interface></devices></domain>")
    interface = {"network": "nowhere", "mac": "52:54:00:00:15:09"}
    stopped = rig.run_pass(tree.write(vm("web-1", type="qemu", state="stopped", adopt=True,
                                         interfaces=[interface])))
    assert by(stopped)["web-1"].result is not Result.FAILED, by(stopped)["web-1"]
    running = rig.run_pass(tree.write(vm("web-1", type="qemu", adopt=True,
                                         interfaces=[interface])))
    assert by(running)["web-1"].error == ("network nowhere does not exist and no Network "
                                          "manifest declares it")
    assert not hypervisor.domains.observe("web-1").power.active


def test_a_vm_whose_network_failed_is_failed_with_that_reason(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    load = tree.write(doc("Network", "lan", mode="bridge", bridge="t-nobr0"),
                      vm("web-1", interfaces=[{"network": "lan"}]))
    report = rig.run_pass(load)
    lan = by(report, "network")["lan"]
    assert lan.result is Result.FAILED and lan.steps == []
    assert lan.error == ("host bridge t-nobr0 does not exist: a bridge network attaches to an "
                         "existing host bridge (nothing was changed)")
    web = by(report)["web-1"]
    assert web.result is Result.FAILED
    assert web.error == f"network lan failed: {lan.error}"
    assert not hypervisor.networks.state("lan").exists
    assert not hypervisor.domains.observe("web-1").exists


def test_a_bridge_network_on_an_existing_host_bridge(rig: Rig, hypervisor: Hypervisor,
                                                     tree: Tree) -> None:
    # the test driver's host has an interface eth1
    load = tree.write(doc("Network", "lan", mode="bridge", bridge="eth1"))
    report = rig.run_pass(load)
    assert by(report, "network")["lan"].result is Result.CONVERGED
    assert hypervisor.networks.state("lan").saved.mode == "bridge"  # type: ignore[union-attr]


def test_an_unmanaged_network_is_a_conflict_and_its_vms_wait(rig: Rig, hypervisor: Hypervisor,
                                                            tree: Tree) -> None:
    # the test driver's own network "default" (active, not reconcile's)
    load = tree.write(doc("Network", "default", ipv4={"address": "192.168.122.1/24"}),
                      vm("web-1", interfaces=[{"network": "default"}]))
    report = rig.run_pass(load)
    network = by(report, "network")["default"]
    assert network.result is Result.CONFLICT
    assert network.error == ("network 'default' exists and is not managed by reconcile; set "
                             "spec.adopt: true to take it over")
    assert by(report)["web-1"].error == f"network default conflict: {network.error}"
    assert not hypervisor.domains.observe("web-1").exists


def test_adopting_an_inactive_network_marks_it_and_keeps_its_address(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    hypervisor.networks.stop("default")  # the test driver shows saved = live when active
    load = tree.write(doc("Network", "default", adopt=True,
                          ipv4={"address": "192.168.122.1/24",
                                "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"}},
                          bridge="virbr0"))
    report = rig.run_pass(load)
    outcome = by(report, "network")["default"]
    assert steps(outcome) == ["define-network", "start-network"]
    assert [str(change) for change in outcome.changes] == ["managed no → yes"]
    state = hypervisor.networks.state("default")
    assert state.managed and state.active
    assert state.saved is not None and state.saved.cidr == "192.168.122.1/24"
    assert rig.run_pass(load).outcomes[0].result is Result.UNCHANGED


def test_reservations_change_live(rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    rig.run_pass(tree.write(doc("Network", "lab", **LAB)))
    changed = dict(LAB, dhcpHosts=[
        {"mac": "52:54:00:00:15:01", "ip": "192.168.150.21", "name": "web-1"},
        {"mac": "52:54:00:00:15:02", "ip": "192.168.150.22"}])
    report = rig.run_pass(tree.write(doc("Network", "lab", **changed)))
    outcome = by(report, "network")["lab"]
    assert outcome.result is Result.CONVERGED
    assert steps(outcome)[:2] == ["update-network", "update-network"]
    assert "stop-network" not in steps(outcome)
    live = hypervisor.networks.state("lab").live
    assert live is not None
    assert {(host.mac, host.ip) for host in live.hosts} == {
        ("52:54:00:00:15:01", "192.168.150.21"), ("52:54:00:00:15:02", "192.168.150.22")}


def test_removal_of_a_network_with_a_running_guest_touches_nothing(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    rig.run_pass(tree.write(doc("Network", "lab", **LAB),
                            vm("web-1", interfaces=[{"network": "lab"}])))
    assert hypervisor.domains.observe("web-1").power.active
    report = rig.run_pass(tree.write(doc("Network", "lab", state="absent"),
                                     vm("web-1", state="absent")))
    # the VM goes first (removal in reverse), so the network finds no running guest
    assert by(report)["web-1"].result is Result.CONVERGED
    assert steps(by(report, "network")["lab"]) == ["stop-network", "undefine-network"]
    assert not hypervisor.networks.state("lab").exists


def test_a_network_a_running_guest_uses_is_never_removed(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    rig.run_pass(tree.write(doc("Network", "lab", **LAB)))
    # a guest reconcile does not manage, running on the network
    hypervisor.steps.define(
        "<domain type='test'><name>t-guest</name><memory>65536</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os><devices><interface type='network'>"
        "<source network='lab'/></interface></devices></domain>")
    hypervisor.steps.start("t-guest")
    report = rig.run_pass(tree.write(doc("Network", "lab", state="absent"), vm("web-1")))
    lab = by(report, "network")["lab"]
    assert lab.result is Result.FAILED and lab.steps == []
    assert lab.error == ("network 'lab' is in use by running domain(s) t-guest: not removed "
                         "(a network a running domain uses is never destroyed)")
    state = hypervisor.networks.state("lab")
    assert state.exists and state.active
    assert hypervisor.domains.observe("t-guest").power.active
    assert by(report)["web-1"].result is Result.CONVERGED  # the rest still converges


def test_a_pool_with_volumes_stays_and_an_empty_one_goes(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    store = doc("StoragePool", "vmstore", path=str(tree.disks / "vmstore"))
    empty = doc("StoragePool", "spare", path=str(tree.disks / "spare"))
    rig.run_pass(tree.write(store, empty, vm("web-1", state="stopped", disks=[
        {"volume": "web-1-root", "pool": "vmstore", "size": "8MiB"}])))
    report = rig.run_pass(tree.write(doc("StoragePool", "vmstore", state="absent"),
                                     doc("StoragePool", "spare", state="absent"),
                                     vm("web-1", state="absent")))
    pools = by(report, "pool")
    assert pools["vmstore"].result is Result.FAILED
    assert pools["vmstore"].error == (
        f"storage pool 'vmstore' holds 1 volume(s) in {tree.disks}/vmstore: it stays defined "
        "and active (a pool is never deleted with its volumes)")
    assert hypervisor.pools.state("vmstore").active
    assert hypervisor.storage.volume("vmstore", "web-1-root") is not None
    assert steps(pools["spare"]) == ["stop-pool", "undefine-pool"]
    assert not hypervisor.pools.state("spare").exists


def test_orphans_are_reported_and_pruned_within_max_prune_with_the_domains(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    rig.run_pass(tree.write(
        doc("Network", "lab", **LAB), doc("Network", "lab2", mode="isolated"),
        doc("StoragePool", "spare", path=str(tree.disks / "spare")), vm("web-1"), vm("web-2")))
    keep = tree.write(vm("keeper"))
    report = rig.run_pass(keep)
    spare = {(o.kind, o.name) for o in report.outcomes if o.orphan}
    assert spare == {("network", "lab"), ("network", "lab2"), ("pool", "spare")}
    assert sorted(report.orphans) == ["web-1", "web-2"]
    text = render.to_text(report.outcomes, keep.invalid, report.orphans)
    assert "orphans: web-1, web-2, pool spare, network lab, network lab2 (not pruned" in text
    # five orphans of three kinds: --max-prune 4 prunes none of them
    refused = rig.run_pass(keep, prune=True, max_prune=4)
    assert refused.prune_note == "nothing pruned: 5 orphans exceed --max-prune 4"
    assert all(o.result is Result.FAILED for o in refused.outcomes if o.orphan)
    assert hypervisor.networks.state("lab").exists and hypervisor.pools.state("spare").exists
    pruned = rig.run_pass(keep, prune=True, max_prune=5)
    results = {(o.kind, o.name): o.result for o in pruned.outcomes if o.orphan}
    assert results == {("network", "lab"): Result.PRUNED, ("network", "lab2"): Result.PRUNED,
                       ("pool", "spare"): Result.PRUNED, ("vm", "web-1"): Result.PRUNED,
                       ("vm", "web-2"): Result.PRUNED}
    assert not hypervisor.networks.state("lab").exists
    assert not hypervisor.pools.state("spare").exists
    assert hypervisor.networks.state("default").exists  # not reconcile's: never an orphan


def test_an_orphan_whose_manifest_is_invalid_is_left_as_it_is(
        rig: Rig, hypervisor: Hypervisor, tree: Tree) -> None:
    rig.run_pass(tree.write(doc("Network", "lab", **LAB)))
    broken = tree.write(doc("Network", "lab", mode="bridge"))  # no bridge: invalid
    assert broken.invalid
    report = rig.run_pass(broken, prune=True)
    lab = by(report, "network")["lab"]
    assert lab.result is Result.FAILED
    assert lab.error == "left as it is: its manifest all.yaml is invalid"
    assert hypervisor.networks.state("lab").active


def test_a_dry_run_plans_the_vm_on_a_network_to_be_made(rig: Rig, hypervisor: Hypervisor,
                                                         tree: Tree) -> None:
    dry = Rig.single(hypervisor, None, dry_run=True)
    report = dry.run_pass(tree.write(doc("Network", "lab", **LAB),
                                     vm("web-1", interfaces=[{"network": "lab"}])))
    assert by(report, "network")["lab"].result is Result.PLANNED
    assert by(report)["web-1"].result is Result.PLANNED
    assert not hypervisor.networks.state("lab").exists

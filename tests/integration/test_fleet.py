"""Many hosts without real remote hosts: each host is libvirt's test driver on a file of its
own (`test:///<abs path>`), which gives every connection a separate, in-memory hypervisor
starting from that file's content. A rig kept across passes therefore sees its own state
persist, and each `reconcile` command run in-process starts from the files again.

The test driver cannot migrate, so live moves are out of scope here (tests/multihost has
real hosts). An unreachable host is a refused TCP port, or a socket that never answers.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import libvirt
import pytest

from controller import domainxml
from controller.inventory import Inventory
from controller.locks import VMLocks
from controller.manifests import LoadResult, load_directory
from controller.model import Action, Outcome, Result
from controller.virt import Hypervisor
from tests.support.command import run_main, run_reconcile
from tests.support.waiting import wait_until

from ..support.rig import Rig
from .conftest import vm

HOSTS = ("kvm-1", "kvm-2", "kvm-3")
REFUSED = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1: refused at once
NS = "urn:reconcile-libvirt:managed:1"
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


class Dom(NamedTuple):
    power: str  # running | stopped
    uuid: str
    owner: str | None  # "-" unmanaged; None managed without a host; else the host named
    autostart: bool


class World:
    """The test hosts' files, the manifest tree and the state directory of one test."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.tree = tmp_path / "manifests"
        self.tree.mkdir()
        self.state = tmp_path / "state"
        (tmp_path / "hosts").mkdir()
        self.uris = {name: self.node(name) for name in HOSTS}
        self.write_hosts(self.uris)
        self.fleets: list[Rig] = []

    def node(self, name: str, *domains: str) -> str:
        """(Re)write host `name`'s file, holding `domains`; return its URI."""
        path = self.tmp / "hosts" / f"{name}.xml"
        path.write_text("<node>\n" + "\n".join(domains) + "\n</node>\n", encoding="utf-8")
        return f"test://{path}"

    def write_hosts(self, hosts: dict[str, str]) -> None:
        body = "".join(f"  {name}: {uri}\n" for name, uri in hosts.items())
        (self.tree / "hosts.yaml").write_text(
            f"apiVersion: reconcile/v1\nkind: Hosts\nhosts:\n{body}", encoding="utf-8")

    def place(self, name: str, host: str | None, **spec: object) -> None:
        """Write `name`.yaml placing the VM on `host`."""
        if host is not None:
            spec["host"] = host
        (self.tree / f"{name}.yaml").write_text(vm(name, **spec), encoding="utf-8")

    def load(self) -> LoadResult:
        load = load_directory(str(self.tree))
        assert load.invalid == []
        return load

    def fleet(self, load: LoadResult, *, dry_run: bool = False, **options: Any) -> Rig:
        locks = None if dry_run else VMLocks(str(self.tmp / "locks"), timeout=10)
        fleet = Rig.fleet(load.hosts, state=self.state, locks=locks, dry_run=dry_run,
                          **options)
        self.fleets.append(fleet)
        return fleet

    def inventory(self) -> dict[str, list[str]]:
        data = json.loads((self.state / "inventory.json").read_text(encoding="utf-8"))
        assert data["version"] == 1
        return {host: entry["domains"] for host, entry in data["hosts"].items()}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("RECONCILE_STATE_DIR", str(tmp_path / "state"))
    world = World(tmp_path)
    yield world
    for fleet in world.fleets:
        fleet.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port whose connections are accepted (by the kernel) and never answered."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()  # resets the pending connections: a hanging open then fails


# --- reading and writing the hosts through a fleet's own connections ------------------------

def conn(fleet: Rig, host: str) -> Any:
    connection = fleet.hosts[host].hypervisor.connection
    if not connection.connected:
        connection.connect()
    return connection.conn


def domains(fleet: Rig, host: str) -> dict[str, Dom]:
    return domains_on(conn(fleet, host))


def domains_on(connection: Any) -> dict[str, Dom]:
    found = {}
    for dom in connection.listAllDomains(0):
        saved = domainxml.parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        found[dom.name()] = Dom("running" if dom.isActive() else "stopped", dom.UUIDString(),
                                saved.owner if saved.managed else "-", bool(dom.autostart()))
    return dict(sorted(found.items()))


def domain_xml(name: str, uid: str, owner: str | None = "", *, memory_mib: int = 64) -> str:
    """A domain definition; owner "" unmanaged, None managed without a host, else the host."""
    if owner == "":
        metadata = ""
    else:
        host = f' host="{owner}"' if owner else ""
        metadata = (f'<metadata><reconcile:managed xmlns:reconcile="{NS}"{host} '
                    f'source="{name}.yaml"/></metadata>')
    return (f"<domain type='kvm'><name>{name}</name><uuid>{uid}</uuid>{metadata}"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
            "<os><type>hvm</type></os></domain>")


def in_node(xml: str, *, running: bool) -> str:
    """`xml` for a host's file, where the test driver starts domains running by default."""
    state = 1 if running else 5
    return xml.replace("</domain>", f"<test:runstate xmlns:test='{TEST_NS}'>{state}"
                                    "</test:runstate></domain>")


def cut(fleet: Rig, host: str) -> Hypervisor:
    """Make `host` unreachable to `fleet`; return its real connection, still open."""
    link = fleet.hosts[host]
    real, link.hypervisor = link.hypervisor, Hypervisor.open(REFUSED)
    return real


def restore(fleet: Rig, host: str, real: Hypervisor) -> None:
    fleet.hosts[host].hypervisor = real


def define(fleet: Rig, host: str, xml: str, *, running: bool = False,
           autostart: bool = False) -> None:
    dom = conn(fleet, host).defineXML(xml)
    if autostart:
        dom.setAutostart(1)
    if running:
        dom.create()


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def results(outcomes: list[Outcome]) -> dict[str, tuple[str | None, Result]]:
    return {outcome.name: (outcome.host, outcome.result) for outcome in outcomes}


def actions(outcome: Outcome) -> list[tuple[str, str | None]]:
    return [(step.action.value, step.host) for step in outcome.steps]


def one(outcomes: list[Outcome], name: str) -> Outcome:
    (found,) = [outcome for outcome in outcomes if outcome.name == name]
    return found


# --- convergence over three hosts ------------------------------------------------------------

def spread(world: World, count: int = 6) -> None:
    for index in range(count):
        world.place(f"vm-{index}", HOSTS[index % 3],
                    state="stopped" if index == 5 else "running")


def test_vms_spread_over_three_hosts_converge_then_a_pass_is_all_unchanged(
        world: World) -> None:
    spread(world)
    fleet = world.fleet(world.load())
    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {
        "vm-0": ("kvm-1", Result.CONVERGED), "vm-3": ("kvm-1", Result.CONVERGED),
        "vm-1": ("kvm-2", Result.CONVERGED), "vm-4": ("kvm-2", Result.CONVERGED),
        "vm-2": ("kvm-3", Result.CONVERGED), "vm-5": ("kvm-3", Result.CONVERGED)}
    assert [outcome.name for outcome in report.outcomes] == [
        "vm-0", "vm-3", "vm-1", "vm-4", "vm-2", "vm-5"]  # sorted by host, then name
    assert (report.orphans, report.unreachable, report.prune_note) == ([], {}, None)
    assert {name: {d: (s.power, s.owner) for d, s in domains(fleet, name).items()}
            for name in HOSTS} == {
        "kvm-1": {"vm-0": ("running", "kvm-1"), "vm-3": ("running", "kvm-1")},
        "kvm-2": {"vm-1": ("running", "kvm-2"), "vm-4": ("running", "kvm-2")},
        "kvm-3": {"vm-2": ("running", "kvm-3"), "vm-5": ("stopped", "kvm-3")}}
    assert "" not in world.inventory()  # the -c connection was never in scope

    again = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert {outcome.result for outcome in again.outcomes} == {Result.UNCHANGED}
    assert [outcome.steps for outcome in again.outcomes] == [[]] * 6


def test_the_ownership_mark_names_the_host(world: World) -> None:
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    xml = conn(fleet, "kvm-2").lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert '<reconcile:managed host="kvm-2" source="a.yaml"/>' in xml


@pytest.mark.parametrize(("owner", "label"), [(None, "(-c)"), ("kvm-1", "kvm-1")])
def test_a_mark_naming_another_host_is_redefined(world: World, owner: str | None,
                                                 label: str) -> None:
    """A domain marked before hosts existed (no host) or by another host's copy."""
    uid = new_uuid()
    world.place("a", "kvm-2", state="stopped")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-2", domain_xml("a", uid, owner))
    report = fleet.run_pass(world.load(), prune=False, max_prune=5)
    (outcome,) = report.outcomes
    assert outcome.result is Result.CONVERGED
    assert [(step.action, step.reason) for step in outcome.steps] == [
        (Action.DEFINE, f"ownership mark: host {label} → kvm-2")]
    assert domains(fleet, "kvm-2") == {"a": Dom("stopped", uid, "kvm-2", False)}


def test_a_vm_without_spec_host_lives_on_the_c_connection(world: World) -> None:
    world.place("a", "kvm-1")
    world.place("b", None)
    default = world.node("default")
    fleet = world.fleet(world.load(), default_uri=default)
    report = fleet.run_pass(world.load(), prune=False, max_prune=5)
    assert results(report.outcomes) == {"b": (None, Result.CONVERGED),
                                        "a": ("kvm-1", Result.CONVERGED)}
    assert domains(fleet, "") == {"b": Dom("running", domains(fleet, "")["b"].uuid, None,
                                           False)}
    assert list(domains(fleet, "kvm-1")) == ["a"]


def test_c_naming_a_host_s_uri_is_that_host(world: World) -> None:
    world.place("a", None)
    fleet = world.fleet(world.load(), default_uri=world.uris["kvm-3"])
    report = fleet.run_pass(world.load(), prune=False, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-3", Result.CONVERGED)}
    assert set(fleet.hosts.by_name) == set(HOSTS)
    assert domains(fleet, "kvm-3")["a"].owner is None  # placed by -c, not by spec.host


# --- moves -----------------------------------------------------------------------------------

def test_cold_move_of_a_running_vm(world: World) -> None:
    world.place("a", "kvm-1", autostart="true")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    (before,) = domains(fleet, "kvm-1").values()
    assert before.power == "running" and before.autostart

    world.place("a", "kvm-2", autostart="true")
    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    (outcome,) = report.outcomes
    assert (outcome.host, outcome.result, outcome.error) == ("kvm-2", Result.CONVERGED, None)
    assert actions(outcome) == [("autostart", "kvm-1"), ("destroy", "kvm-1"),
                                ("define", "kvm-2"), ("autostart", None), ("start", None),
                                ("undefine", "kvm-1")]
    assert outcome.steps[0].autostart is False
    assert report.orphans == []
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", before.uuid, "kvm-2", True)}
    assert domains(fleet, "kvm-3") == {}
    assert world.inventory()["kvm-1"] == [] and world.inventory()["kvm-2"] == ["a"]

    again = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(again.outcomes) == {"a": ("kvm-2", Result.UNCHANGED)}


@pytest.mark.parametrize("strategy", ["cold", "live"])
def test_a_stopped_vm_moves_cold_whatever_the_strategy(world: World, strategy: str) -> None:
    world.place("a", "kvm-1", state="stopped", moveStrategy=strategy)
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    uid = domains(fleet, "kvm-1")["a"].uuid

    world.place("a", "kvm-3", state="stopped", moveStrategy=strategy)
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.result, outcome.error) == (Result.CONVERGED, None)
    assert actions(outcome) == [("define", "kvm-3"), ("undefine", "kvm-1")]
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-3") == {"a": Dom("stopped", uid, "kvm-3", False)}


def test_a_failed_live_move_leaves_the_guest_running_on_the_source(world: World) -> None:
    """The test driver cannot migrate: the move fails, and nothing is duplicated."""
    world.place("a", "kvm-1", moveStrategy="live")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    before = domains(fleet, "kvm-1")

    world.place("a", "kvm-2", moveStrategy="live")
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.host, outcome.result, outcome.steps) == ("kvm-2", Result.FAILED, [])
    assert outcome.error == (
        f"cannot migrate domain 'a' to {world.uris['kvm-2']}: argument unsupported: Migration "
        "APIs with extensible parameters are not supported but extended parameters were "
        "passed (libvirt error 74, domain 20)")
    assert domains(fleet, "kvm-1") == before
    assert domains(fleet, "kvm-2") == {}


def test_a_move_with_state_absent_removes_the_source(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    world.place("a", "kvm-2", state="absent")
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert outcome.result is Result.CONVERGED
    assert actions(outcome) == [("destroy", "kvm-1"), ("undefine", "kvm-1")]
    assert (domains(fleet, "kvm-1"), domains(fleet, "kvm-2")) == ({}, {})


# --- moves interrupted half-way ----------------------------------------------------------------

def test_interrupted_source_stopped_target_defined_is_finished(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"))
    define(fleet, "kvm-2", domain_xml("a", uid, "kvm-2"))
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.host, outcome.result, outcome.error) == ("kvm-2", Result.CONVERGED, None)
    assert actions(outcome) == [("undefine", "kvm-1"), ("start", None)]
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", uid, "kvm-2", False)}


def test_interrupted_after_the_stop_on_the_source_is_moved(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"))  # stopped, autostart already off
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.result, outcome.error) == (Result.CONVERGED, None)
    assert actions(outcome) == [("define", "kvm-2"), ("start", None), ("undefine", "kvm-1")]
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", uid, "kvm-2", False)}


def test_interrupted_before_the_undefine_on_the_source_is_finished(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2", autostart="true")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"))
    define(fleet, "kvm-2", domain_xml("a", uid, "kvm-2"), running=True, autostart=True)
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.result, outcome.error) == (Result.CONVERGED, None)
    assert actions(outcome) == [("undefine", "kvm-1")]
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", uid, "kvm-2", True)}


def test_interrupted_source_running_target_holding_a_stale_copy_is_moved(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"), running=True)
    define(fleet, "kvm-2", domain_xml("a", uid, "kvm-2", memory_mib=32))
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.result, outcome.error) == (Result.CONVERGED, None)
    assert actions(outcome) == [("destroy", "kvm-1"), ("define", "kvm-2"), ("start", None),
                                ("undefine", "kvm-1")]
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", uid, "kvm-2", False)}
    info = conn(fleet, "kvm-2").lookupByName("a").info()
    assert info[1] == 64 * 1024  # the source's definition, not the stale copy's


def test_copies_running_on_two_hosts_are_a_conflict(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"), running=True)
    define(fleet, "kvm-2", domain_xml("a", uid, "kvm-2"), running=True, autostart=True)
    before = {host: domains(fleet, host) for host in HOSTS}
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.host, outcome.result, outcome.steps) == ("kvm-2", Result.CONFLICT, [])
    assert outcome.error == "running on both kvm-1 and kvm-2; stop one by hand"
    assert {host: domains(fleet, host) for host in HOSTS} == before


def test_different_uuids_on_the_two_hosts_are_a_conflict(world: World) -> None:
    one_uid, other_uid = new_uuid(), new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", one_uid, "kvm-1"), running=True)
    define(fleet, "kvm-2", domain_xml("a", other_uid, "kvm-2"))
    before = {host: domains(fleet, host) for host in HOSTS}
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.result, outcome.steps) == (Result.CONFLICT, [])
    assert outcome.error == (f"different domains named 'a' on kvm-1 ({one_uid}) and kvm-2 "
                             f"({other_uid})")
    assert {host: domains(fleet, host) for host in HOSTS} == before


def test_managed_copies_on_two_other_hosts_are_a_conflict(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-3")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"))
    define(fleet, "kvm-2", domain_xml("a", uid, "kvm-2"))
    before = {host: domains(fleet, host) for host in HOSTS}
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.result, outcome.steps) == (Result.CONFLICT, [])
    assert outcome.error == "managed copies on hosts kvm-1, kvm-2; keep one by hand"
    assert {host: domains(fleet, host) for host in HOSTS} == before


def test_an_unmanaged_domain_on_the_target_is_a_conflict(world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-1", domain_xml("a", uid, "kvm-1"), running=True)
    define(fleet, "kvm-2", domain_xml("a", new_uuid()))
    before = {host: domains(fleet, host) for host in HOSTS}
    (outcome,) = fleet.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert (outcome.result, outcome.steps) == (Result.CONFLICT, [])
    assert {host: domains(fleet, host) for host in HOSTS} == before


def test_an_unmanaged_domain_elsewhere_is_not_a_copy(world: World) -> None:
    world.place("a", "kvm-2")
    fleet = world.fleet(world.load())
    uid = new_uuid()
    define(fleet, "kvm-1", domain_xml("a", uid), running=True)
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.result, actions(outcome)) == (Result.CONVERGED,
                                                  [("define", None), ("start", None)])
    assert domains(fleet, "kvm-1") == {"a": Dom("running", uid, "-", False)}
    assert domains(fleet, "kvm-2")["a"].power == "running"


# --- dry run of a move -------------------------------------------------------------------------

def test_dry_run_of_a_move_lists_the_steps_and_changes_nothing(world: World) -> None:
    world.place("a", "kvm-1", autostart="true")
    wet = world.fleet(world.load())
    wet.run_pass(world.load(), prune=False, max_prune=5)
    world.place("a", "kvm-2", autostart="true")
    before = {host: domains(wet, host) for host in HOSTS}
    inventory = world.inventory()

    dry = world.fleet(world.load(), dry_run=True,  # the same in-memory hosts
                      make_hypervisor=lambda name, _: wet.hosts[name].hypervisor)
    (outcome,) = dry.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert (outcome.host, outcome.result) == ("kvm-2", Result.PLANNED)
    assert actions(outcome) == [("autostart", "kvm-1"), ("destroy", "kvm-1"),
                                ("define", "kvm-2"), ("autostart", None), ("start", None),
                                ("undefine", "kvm-1")]
    assert {host: domains(wet, host) for host in HOSTS} == before
    assert world.inventory() == inventory


def test_dry_run_of_a_live_move_plans_the_migration(world: World) -> None:
    world.place("a", "kvm-1", moveStrategy="live")
    wet = world.fleet(world.load())
    wet.run_pass(world.load(), prune=False, max_prune=5)
    world.place("a", "kvm-2", moveStrategy="live", memory=128)
    before = {host: domains(wet, host) for host in HOSTS}
    dry = world.fleet(world.load(), dry_run=True,
                      make_hypervisor=lambda name, _: wet.hosts[name].hypervisor)
    (outcome,) = dry.run_pass(world.load(), prune=False, max_prune=5).outcomes
    assert outcome.result is Result.PLANNED
    assert [(step.action.value, step.host, step.to_host, step.reason)
            for step in outcome.steps] == [
        ("migrate", "kvm-1", "kvm-2", "move kvm-1 → kvm-2 (live)"),
        ("destroy", None, None, "memory 64 MiB → 128 MiB needs a restart"),
        ("define", None, None, "memory 64 MiB → 128 MiB, currentMemory 64 MiB → 128 MiB"),
        ("start", None, None, "start again after the restart")]
    assert {host: domains(wet, host) for host in HOSTS} == before


def test_a_suspended_vm_is_not_moved(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    before = {host: domains(fleet, host) for host in HOSTS}
    world.place("a", "kvm-2", suspend="true")
    (outcome,) = fleet.run_pass(world.load(), prune=True, max_prune=5).outcomes
    assert {host: domains(fleet, host) for host in HOSTS} == before
    assert outcome.result is Result.SUSPENDED
    assert actions(outcome) == [("destroy", "kvm-1"), ("define", "kvm-2"), ("start", None),
                                ("undefine", "kvm-1")]


def test_cli_dry_run_of_a_move_exits_3(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    uid = new_uuid()
    world.uris["kvm-1"] = world.node("kvm-1", in_node(domain_xml("a", uid, "kvm-1"),
                                                      running=False))
    world.place("a", "kvm-2", state="stopped")
    code, out, err = run_main(capsys, "--once", "--dry-run", "-m", str(world.tree), "-o", "json")
    assert code == 3, err
    assert json.loads(out) == {"vms": [{
        "name": "a", "source": "a.yaml", "host": "kvm-2", "result": "planned", "error": None,
        "steps": [{"action": "define", "reason": "move kvm-1 → kvm-2: kvm-1's definition, "
                                                 "same UUID"},
                  {"action": "undefine", "reason": "move kvm-1 → kvm-2: done"}],
        "addresses": [], "agent": None}],
        "invalid": [], "orphans": []}
    assert not (world.state / "inventory.json").exists()  # a dry run writes nothing

    code, out, _ = run_main(capsys, "--once", "--dry-run", "-m", str(world.tree))
    assert code == 3
    assert out.splitlines()[:3] == [
        "host kvm-2:",
        "  ~ a  planned  (a.yaml)",
        "      define     move kvm-1 → kvm-2: kvm-1's definition, same UUID (on kvm-2)"]
    assert "      undefine   move kvm-1 → kvm-2: done (on kvm-1)" in out


# --- an unreachable host -----------------------------------------------------------------------

def test_an_unreachable_host_fails_its_vms_and_the_others_converge(world: World) -> None:
    spread(world)
    world.write_hosts({**world.uris, "kvm-3": REFUSED})
    fleet = world.fleet(world.load())
    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {
        "vm-0": ("kvm-1", Result.CONVERGED), "vm-3": ("kvm-1", Result.CONVERGED),
        "vm-1": ("kvm-2", Result.CONVERGED), "vm-4": ("kvm-2", Result.CONVERGED),
        "vm-2": ("kvm-3", Result.FAILED), "vm-5": ("kvm-3", Result.FAILED)}
    failed = one(report.outcomes, "vm-2")
    assert failed.steps == []
    assert failed.error is not None and failed.error.startswith("host kvm-3 is unreachable: ")
    assert list(report.unreachable) == ["kvm-3"]
    assert report.prune_note == "host(s) kvm-3 unreachable: not pruned"
    assert "kvm-3" not in world.inventory()


def test_cli_exits_1_naming_the_unreachable_host(world: World,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spread(world)
    world.write_hosts({**world.uris, "kvm-3": REFUSED})
    code, out, err = run_main(capsys, "--once", "-m", str(world.tree), "-o", "json")
    assert code == 1
    document = json.loads(out)
    assert {entry["name"]: (entry["host"], entry["result"]) for entry in document["vms"]} == {
        "vm-0": ("kvm-1", "converged"), "vm-3": ("kvm-1", "converged"),
        "vm-1": ("kvm-2", "converged"), "vm-4": ("kvm-2", "converged"),
        "vm-2": ("kvm-3", "failed"), "vm-5": ("kvm-3", "failed")}
    assert "host kvm-3 is unreachable: " in err

    code, out, _ = run_main(capsys, "--once", "-m", str(world.tree))
    assert code == 1
    assert "note: host kvm-3 is unreachable: " in out

    # a host with no VM placed on it fails the run too: its orphans are unknown
    for name in ("vm-2", "vm-5"):
        (world.tree / f"{name}.yaml").unlink()
    code, out, err = run_main(capsys, "--once", "-m", str(world.tree), "-o", "json")
    assert code == 1
    assert {entry["result"] for entry in json.loads(out)["vms"]} == {"converged"}
    assert "host kvm-3 is unreachable: " in err

    # --host NAME=URI overrides hosts.yaml: now every host answers
    code, out, err = run_main(capsys, "--once", "-m", str(world.tree), "-o", "json",
                              "--host", f"kvm-3={world.uris['kvm-3']}")
    assert code == 0, err
    assert {entry["result"] for entry in json.loads(out)["vms"]} == {"converged"}


def test_a_host_that_never_answers_fails_within_the_connect_deadline(
        world: World, silent_port: int) -> None:
    silent = f"qemu+tcp://127.0.0.1:{silent_port}/system"
    world.place("a", "kvm-1")
    world.place("b", "kvm-2")
    world.write_hosts({"kvm-1": world.uris["kvm-1"], "kvm-2": silent})
    fleet = world.fleet(world.load(), connect_timeout=0.5)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(
        fleet.run_pass(world.load(), prune=True, max_prune=5)), daemon=True)
    worker.start()
    worker.join(60)  # a hang (libvirt's open has no deadline) would exceed this by far
    assert not worker.is_alive(), "the pass did not return"
    (report,) = reports
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED),
                                        "b": ("kvm-2", Result.FAILED)}
    assert one(report.outcomes, "b").error == (
        f"host kvm-2 is unreachable: no answer from {silent} within 0.5s")
    assert report.unreachable == {"kvm-2": f"no answer from {silent} within 0.5s"}
    assert domains(fleet, "kvm-1")["a"].power == "running"

    # the next pass does not wait on the open still hanging: kvm-2 fails at once
    again = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(again.outcomes) == {"a": ("kvm-1", Result.UNCHANGED),
                                       "b": ("kvm-2", Result.FAILED)}
    assert again.unreachable == {"kvm-2": "still connecting from an earlier attempt"}


def test_the_command_exits_while_an_open_still_hangs(world: World, silent_port: int) -> None:
    """The open left behind in its thread must not keep the process alive."""
    silent = f"qemu+tcp://127.0.0.1:{silent_port}/system"
    world.place("a", "kvm-1")
    world.place("b", "kvm-2")
    world.write_hosts({"kvm-1": world.uris["kvm-1"], "kvm-2": silent})
    done = run_reconcile("--once", "-m", str(world.tree), "-o", "json",
                         "--connect-timeout", "0.5")
    assert done.returncode == 1, done.stderr
    assert [(entry["name"], entry["result"], entry["error"])
            for entry in json.loads(done.stdout)["vms"]] == [
        ("a", "converged", None),
        ("b", "failed", f"host kvm-2 is unreachable: no answer from {silent} within 0.5s")]


def test_nothing_is_pruned_on_an_unreachable_host_and_it_converges_when_back(
        world: World) -> None:
    world.place("a", "kvm-1")
    world.place("b", "kvm-2", state="stopped")
    fleet = world.fleet(world.load())
    orphans_on(world, fleet, {"kvm-1": ["o-1"], "kvm-2": ["o-2"]})
    kvm_2 = cut(fleet, "kvm-2")
    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED),
                                        "o-1": ("kvm-1", Result.PRUNED),
                                        "b": ("kvm-2", Result.FAILED)}
    assert report.orphans == ["o-1"]
    assert report.prune_note == "host(s) kvm-2 unreachable: not pruned"
    assert list(domains(fleet, "kvm-1")) == ["a"]
    assert list(domains_on(kvm_2.connection.conn)) == ["o-2"]

    restore(fleet, "kvm-2", kvm_2)
    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.UNCHANGED),
                                        "b": ("kvm-2", Result.CONVERGED),
                                        "o-2": ("kvm-2", Result.PRUNED)}
    assert [(name, dom.power) for name, dom in domains(fleet, "kvm-2").items()] == [
        ("b", "stopped")]


# --- the inventory -----------------------------------------------------------------------------

def test_a_vm_an_unreachable_host_last_held_is_not_created_elsewhere(world: World) -> None:
    world.place("a", "kvm-3")
    world.place("b", "kvm-3")
    first = world.fleet(world.load())
    first.run_pass(world.load(), prune=False, max_prune=5)
    assert world.inventory() == {"kvm-1": [], "kvm-2": [], "kvm-3": ["a", "b"]}
    kvm_3 = cut(first, "kvm-3")

    # a moves to kvm-1 while kvm-3 is down; c is new: another run (its own connections)
    world.place("a", "kvm-1")
    world.place("c", "kvm-1")
    world.write_hosts({**world.uris, "kvm-3": REFUSED})
    second = world.fleet(world.load())
    report = second.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.FAILED),
                                        "c": ("kvm-1", Result.CONVERGED),
                                        "b": ("kvm-3", Result.FAILED)}
    assert one(report.outcomes, "a").error == (
        "unknown: host kvm-3 held this VM at its last listing and is unreachable now; "
        "nothing is done until it answers")
    assert one(report.outcomes, "a").steps == []
    assert list(domains(second, "kvm-1")) == ["c"]
    assert world.inventory() == {"kvm-1": ["c"], "kvm-2": [], "kvm-3": ["a", "b"]}

    # the same in the first run, which knows kvm-3 from its own listing
    report = first.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes)["a"] == ("kvm-1", Result.FAILED)
    assert domains(first, "kvm-1") == {"c": domains(first, "kvm-1")["c"]}
    assert sorted((name, dom.power) for name, dom in domains_on(kvm_3.connection.conn).items()) == [
        ("a", "running"), ("b", "running")]

    # kvm-3 answers again: the move happens
    restore(first, "kvm-3", kvm_3)
    uid = domains(first, "kvm-3")["a"].uuid
    report = first.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes)["a"] == ("kvm-1", Result.CONVERGED)
    assert actions(one(report.outcomes, "a"))[-1] == ("undefine", "kvm-3")
    assert domains(first, "kvm-1")["a"] == Dom("running", uid, "kvm-1", False)
    assert list(domains(first, "kvm-3")) == ["b"]


def test_a_vm_no_listing_ever_held_is_created_while_a_host_is_down(world: World) -> None:
    world.place("a", "kvm-1")
    world.write_hosts({**world.uris, "kvm-3": REFUSED})
    fleet = world.fleet(world.load())
    report = fleet.run_pass(world.load(), prune=False, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED)}
    assert list(report.unreachable) == ["kvm-3"]  # every host named is in scope
    assert list(domains(fleet, "kvm-1")) == ["a"]
    assert world.inventory() == {"kvm-1": ["a"], "kvm-2": []}


def test_parallel_adds_on_one_host_are_all_kept_in_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = Inventory(str(tmp_path))
    write = Inventory._write
    overtaken = threading.Event()
    calls: list[dict[str, set[str]]] = []

    def first_writer_is_slow(self: Inventory, changed: dict[str, set[str]]) -> None:
        calls.append(changed)
        if len(calls) == 1:
            overtaken.wait(2)  # the second add waits for this one (the lock): 2 s here
            write(self, changed)
        else:
            write(self, changed)
            overtaken.set()

    monkeypatch.setattr(Inventory, "_write", first_writer_is_slow)
    worker = threading.Thread(target=inventory.add, args=("kvm-1", "a"))
    worker.start()
    wait_until(lambda: calls, 10, what="the first add to write")
    inventory.add("kvm-1", "b")
    worker.join(10)
    assert Inventory(str(tmp_path)).holders("a") == ["kvm-1"]
    assert Inventory(str(tmp_path)).holders("b") == ["kvm-1"]


def test_the_state_dir_after_passes(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    spread(world, 4)
    state = world.tmp / "elsewhere"
    code, _, err = run_main(capsys, "--once", "-m", str(world.tree), "--state-dir", str(state))
    assert code == 0, err
    data = json.loads((state / "inventory.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert {host: entry["domains"] for host, entry in data["hosts"].items()} == {
        "kvm-1": ["vm-0", "vm-3"], "kvm-2": ["vm-1"], "kvm-3": ["vm-2"]}
    assert all(set(entry) == {"domains", "updated"} for entry in data["hosts"].values())
    assert not world.state.exists()  # only --state-dir was written

    # a run over a host that is down keeps its last entry; the others are listed afresh
    world.write_hosts({**world.uris, "kvm-2": REFUSED})
    (world.tree / "vm-3.yaml").unlink()
    code, _, _ = run_main(capsys, "--once", "-m", str(world.tree), "--state-dir", str(state))
    assert code == 1
    data = json.loads((state / "inventory.json").read_text(encoding="utf-8"))
    assert {host: entry["domains"] for host, entry in data["hosts"].items()} == {
        "kvm-1": ["vm-0"], "kvm-2": ["vm-1"], "kvm-3": ["vm-2"]}


# --- orphans -----------------------------------------------------------------------------------

def orphans_on(world: World, fleet: Rig, layout: dict[str, list[str]]) -> None:
    for host, names in layout.items():
        for name in names:
            define(fleet, host, domain_xml(name, new_uuid(), host), running=True)


def test_orphans_belong_to_their_host_and_are_pruned(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    orphans_on(world, fleet, {"kvm-1": ["o-1"], "kvm-3": ["o-3"]})
    define(fleet, "kvm-2", domain_xml("keep", new_uuid()))  # unmanaged: never an orphan

    report = fleet.run_pass(world.load(), prune=False, max_prune=5)
    assert report.orphans == ["o-1", "o-3"]
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED)}

    report = fleet.run_pass(world.load(), prune=True, max_prune=5)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.UNCHANGED),
                                        "o-1": ("kvm-1", Result.PRUNED),
                                        "o-3": ("kvm-3", Result.PRUNED)}
    assert list(domains(fleet, "kvm-1")) == ["a"]
    assert list(domains(fleet, "kvm-2")) == ["keep"]
    assert domains(fleet, "kvm-3") == {}


def test_max_prune_counts_orphans_across_hosts(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    orphans_on(world, fleet, {"kvm-1": ["o-1"], "kvm-2": ["o-2", "o-3"]})
    report = fleet.run_pass(world.load(), prune=True, max_prune=2)
    assert report.prune_note == "nothing pruned: 3 orphans exceed --max-prune 2"
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED),
                                        "o-1": ("kvm-1", Result.FAILED),
                                        "o-2": ("kvm-2", Result.FAILED),
                                        "o-3": ("kvm-2", Result.FAILED)}
    assert sorted(domains(fleet, "kvm-1")) == ["a", "o-1"]
    assert sorted(domains(fleet, "kvm-2")) == ["o-2", "o-3"]

    report = fleet.run_pass(world.load(), prune=True, max_prune=3)
    assert [outcome.result for outcome in report.outcomes].count(Result.PRUNED) == 3
    assert (list(domains(fleet, "kvm-1")), domains(fleet, "kvm-2")) == (["a"], {})


def test_a_managed_domain_placed_on_another_host_is_a_move_not_an_orphan(
        world: World) -> None:
    uid = new_uuid()
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    define(fleet, "kvm-3", domain_xml("a", uid, "kvm-3"), running=True)
    report = fleet.run_pass(world.load(), prune=True, max_prune=0)
    assert (report.orphans, report.prune_note) == ([], None)
    assert results(report.outcomes) == {"a": ("kvm-1", Result.CONVERGED)}
    assert domains(fleet, "kvm-3") == {}
    assert domains(fleet, "kvm-1") == {"a": Dom("running", uid, "kvm-1", False)}


def test_an_invalid_manifest_elsewhere_stops_every_prune(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    orphans_on(world, fleet, {"kvm-2": ["o-2"]})
    (world.tree / "bad.yaml").write_text(vm("bad", host="kvm-9"), encoding="utf-8")
    load = load_directory(str(world.tree))
    report = fleet.run_pass(load, prune=True, max_prune=5)
    assert report.prune_note == "nothing pruned: 1 invalid manifest(s)"
    assert report.orphans == ["o-2"]
    assert list(domains(fleet, "kvm-2")) == ["o-2"]


def test_cli_prunes_an_orphan_with_its_host(world: World,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    world.uris["kvm-2"] = world.node("kvm-2", domain_xml("old", new_uuid(), "kvm-2"))
    world.place("a", "kvm-1")
    code, out, err = run_main(capsys, "--once", "--prune", "-m", str(world.tree), "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["orphans"] == ["old"]
    assert [(entry["name"], entry["host"], entry["result"]) for entry in document["vms"]] == [
        ("a", "kvm-1", "converged"), ("old", "kvm-2", "pruned")]


# --- per-host mode -----------------------------------------------------------------------------

def test_per_host_mode_touches_only_its_host(world: World) -> None:
    spread(world)
    fleet = world.fleet(world.load())
    orphans_on(world, fleet, {"kvm-1": ["o-1"], "kvm-2": ["o-2"]})
    report = fleet.run_pass(world.load(), prune=True, max_prune=5, only_host="kvm-2")
    assert results(report.outcomes) == {"vm-1": ("kvm-2", Result.CONVERGED),
                                        "vm-4": ("kvm-2", Result.CONVERGED),
                                        "o-2": ("kvm-2", Result.PRUNED)}
    assert report.orphans == ["o-2"]
    assert sorted(domains(fleet, "kvm-1")) == ["o-1"]
    assert sorted(domains(fleet, "kvm-2")) == ["vm-1", "vm-4"]
    assert domains(fleet, "kvm-3") == {}


def test_per_host_mode_pulls_its_vm_from_another_host(world: World) -> None:
    world.place("a", "kvm-1")
    fleet = world.fleet(world.load())
    fleet.run_pass(world.load(), prune=False, max_prune=5)
    uid = domains(fleet, "kvm-1")["a"].uuid
    world.place("a", "kvm-2")
    report = fleet.run_pass(world.load(), prune=True, max_prune=5, only_host="kvm-2")
    assert results(report.outcomes) == {"a": ("kvm-2", Result.CONVERGED)}
    assert domains(fleet, "kvm-1") == {}
    assert domains(fleet, "kvm-2") == {"a": Dom("running", uid, "kvm-2", False)}


def test_cli_per_host_mode(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.uris["kvm-1"] = world.node("kvm-1", domain_xml("o-1", new_uuid(), "kvm-1"))
    world.uris["kvm-3"] = world.node("kvm-3", domain_xml("o-3", new_uuid(), "kvm-3"))
    spread(world)
    code, out, err = run_main(capsys, "--once", "--prune", "-m", str(world.tree), "-o", "json",
                              "--host", "kvm-3")
    assert code == 0, err
    document = json.loads(out)
    assert [(entry["name"], entry["host"], entry["result"]) for entry in document["vms"]] == [
        ("o-3", "kvm-3", "pruned"), ("vm-2", "kvm-3", "converged"),
        ("vm-5", "kvm-3", "converged")]
    assert document["orphans"] == ["o-3"]


# --- the command line: output ------------------------------------------------------------------

def test_cli_json_has_a_host_per_vm_and_text_groups_by_host(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    spread(world)
    code, out, err = run_main(capsys, "--once", "-m", str(world.tree), "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert [(entry["host"], entry["name"], entry["result"]) for entry in document["vms"]] == [
        ("kvm-1", "vm-0", "converged"), ("kvm-1", "vm-3", "converged"),
        ("kvm-2", "vm-1", "converged"), ("kvm-2", "vm-4", "converged"),
        ("kvm-3", "vm-2", "converged"), ("kvm-3", "vm-5", "converged")]
    assert {frozenset(entry) for entry in document["vms"]} == {
        frozenset({"name", "source", "steps", "result", "error", "host", "addresses", "agent"})}

    code, out, err = run_main(capsys, "--once", "-m", str(world.tree))
    assert code == 0, err
    lines = out.splitlines()
    assert [line for line in lines if not line.startswith("    ")] == [
        "host kvm-1:", "  + vm-0  converged  (vm-0.yaml)", "  + vm-3  converged  (vm-3.yaml)",
        "host kvm-2:", "  + vm-1  converged  (vm-1.yaml)", "  + vm-4  converged  (vm-4.yaml)",
        "host kvm-3:", "  + vm-2  converged  (vm-2.yaml)", "  + vm-5  converged  (vm-5.yaml)",
        "Applied: 6 created, 0 updated, 0 restarted, 0 removed; 0 unchanged."]


def test_cli_status_with_hosts(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    uid = new_uuid()
    world.uris["kvm-1"] = world.node("kvm-1", in_node(domain_xml("a", uid, "kvm-1"),
                                                      running=True))
    world.uris["kvm-2"] = world.node("kvm-2", domain_xml("old", new_uuid(), "kvm-2"))
    world.place("a", "kvm-1")
    world.place("b", "kvm-3")
    code, out, err = run_main(capsys, "status", "-m", str(world.tree), "-o", "json")
    assert code == 3, err
    rows = json.loads(out)["vms"]
    assert [(row["host"], row["name"], row["actual"], row["in_sync"], row["owner"])
            for row in rows] == [("kvm-1", "a", "running", "yes", "managed"),
                                 ("kvm-2", "old", "running", "no", "orphan"),
                                 ("kvm-3", "b", "absent", "no", "-")]
    code, out, _ = run_main(capsys, "status", "-m", str(world.tree))
    lines = out.splitlines()
    assert lines[0].split() == ["HOST", "NAME", "DESIRED", "ACTUAL", "MEMORY", "VCPUS", "OWNER",
                                "SYNC", "ADDRESSES", "AGENT", "REASON"]
    assert [line.split()[:2] for line in lines[1:]] == [["kvm-1", "a"], ["kvm-2", "old"],
                                                       ["kvm-3", "b"]]
    assert not (world.state / "inventory.json").exists()  # status writes nothing


def test_cli_status_with_an_unreachable_host(world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    world.place("a", "kvm-1")
    world.place("b", "kvm-3")
    world.write_hosts({**world.uris, "kvm-3": REFUSED})
    code, out, err = run_main(capsys, "status", "-m", str(world.tree), "-o", "json")
    assert code == 1
    rows = json.loads(out)["vms"]
    assert [(row["host"], row["name"], row["in_sync"]) for row in rows] == [
        ("kvm-1", "a", "no"), ("kvm-3", "b", "unknown")]
    assert "host kvm-3 is unreachable: " in err

"""plan(desired, observed): a table of (spec, observed) in, exact steps and flags out.

Observed domains are built from small libvirt-like XML through
`domainxml.parse_domain`, as the hypervisor edge builds them, with the live
values a running QEMU domain really reports (memory rounded up to whole MiB,
machine aliases expanded).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domainxml import MANAGED_NS, build_domain, parse_domain
from controller.model import (
    ABSENT_DOMAIN,
    Action,
    DesiredState,
    Disk,
    Interface,
    Observed,
    Plan,
    Power,
    UpdatePolicy,
    VMSpec,
)
from controller.planner import plan
from controller.units import parse_memory_kib

UUID = "c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
OTHER_UUID = "6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"
MACHINES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}
IMAGES = "/var/lib/libvirt/images"
SAVED_REAL = Path(__file__).parent / "data" / "saved-domain.xml"

RUNNING, STOPPED, ABSENT = DesiredState.RUNNING, DesiredState.STOPPED, DesiredState.ABSENT
RESTART, NEXT_BOOT = UpdatePolicy.RESTART, UpdatePolicy.NEXT_BOOT


def spec(**fields: object) -> VMSpec:
    """The manifest `vm`: 64 MiB, 1 vCPU, running, destroyed at once when stopped."""
    base: dict[str, object] = {
        "name": "vm", "source": "vm.yaml", "memory_kib": 65536, "current_memory_kib": 65536,
        "vcpus": 1, "stop_timeout": 0,
    }
    base.update(fields)
    if "memory_kib" in fields and "current_memory_kib" not in fields:
        base["current_memory_kib"] = base["memory_kib"]
    return VMSpec(**base)  # type: ignore[arg-type]


def xml(
    *,
    uuid: str = UUID,
    memory: str = "65536",
    current: str | None = None,
    vcpus: int = 1,
    kind: str = "kvm",
    machine: str = "pc-i440fx-7.2",
    managed: bool = True,
    devices: str = "",
) -> str:
    """A domain definition shaped like `virsh dumpxml` output."""
    marker = (f'<reconcile:managed xmlns:reconcile="{MANAGED_NS}" source="vm.yaml"/>'
              if managed else "")
    return f"""<domain type='{kind}'>
  <name>vm</name>
  <uuid>{uuid}</uuid>
  <metadata>{marker}</metadata>
  <memory unit='KiB'>{memory}</memory>
  <currentMemory unit='KiB'>{current or memory}</currentMemory>
  <vcpu placement='static'>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {devices}
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>"""


DISK_A = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
          f"<source file='{IMAGES}/a.qcow2'/><target dev='vda' bus='virtio'/>"
          "<address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/></disk>")
CDROM = (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
         f"<source file='{IMAGES}/install.iso'/><target dev='sda' bus='sata'/><readonly/></disk>")
NIC = ("<interface type='network'><mac address='52:54:00:13:a2:52'/>"
       "<source network='default'/><model type='virtio'/></interface>")


def domain(
    power: Power,
    saved: str,
    live: str | None = None,
    *,
    persistent: bool = True,
    autostart: bool = False,
) -> Observed:
    """What the hypervisor edge reports: live XML only for an active domain."""
    live_config = None
    if power.active:
        live_config = parse_domain(live if live is not None else saved)
    return Observed(name="vm", exists=True, power=power, persistent=persistent,
                    autostart=autostart, saved=parse_domain(saved), live=live_config,
                    saved_xml=saved)


def on(saved: str, live: str | None = None, *, persistent: bool = True,
       autostart: bool = False) -> Observed:
    return domain(Power.RUNNING, saved, live, persistent=persistent, autostart=autostart)


def off(saved: str, *, autostart: bool = False) -> Observed:
    return domain(Power.STOPPED, saved, autostart=autostart)


class Case(NamedTuple):
    id: str
    spec: VMSpec
    observed: Observed
    steps: list[tuple[str, str]]
    conflict: str | None = None
    restart_pending: str | None = None


MEM_CHANGE = "memory 64 MiB → 128 MiB, currentMemory 64 MiB → 128 MiB"
KB_SAVED = "97657"  # measured: <memory unit='KB'>100000</memory> is saved as 97657 KiB
KB_LIVE = "98304"  # ... and reported as 98304 KiB by the running QEMU domain
CONFLICT = ("domain 'vm' exists and is not managed by reconcile; "
            "set spec.adopt: true to take it over")
REPLACE = f"uuid {UUID} → {OTHER_UUID}: the domain must be replaced"

CASES = [
    # --- create ----------------------------------------------------------------------------
    Case("create-stopped", spec(state=STOPPED), ABSENT_DOMAIN,
         [("define", "the domain does not exist")]),
    Case("create-running", spec(), ABSENT_DOMAIN,
         [("define", "the domain does not exist"), ("start", "state is running")]),
    Case("create-running-autostart", spec(autostart=True), ABSENT_DOMAIN,
         [("define", "the domain does not exist"), ("autostart", "autostart is wanted"),
          ("start", "state is running")]),
    Case("create-stopped-autostart", spec(state=STOPPED, autostart=True), ABSENT_DOMAIN,
         [("define", "the domain does not exist"), ("autostart", "autostart is wanted")]),
    # --- absent ----------------------------------------------------------------------------
    Case("absent-missing", spec(state=ABSENT), ABSENT_DOMAIN, []),
    Case("absent-running-destroy", spec(state=ABSENT), on(xml()),
         [("destroy", "state is absent"), ("undefine", "state is absent")]),
    Case("absent-running-shutdown", spec(state=ABSENT, stop_timeout=60), on(xml()),
         [("shutdown", "state is absent"), ("undefine", "state is absent")]),
    Case("absent-paused", spec(state=ABSENT), domain(Power.PAUSED, xml()),
         [("destroy", "state is absent"), ("undefine", "state is absent")]),
    Case("absent-stopped", spec(state=ABSENT, stop_timeout=60), off(xml()),
         [("undefine", "state is absent")]),
    Case("absent-transient-running", spec(state=ABSENT), on(xml(), persistent=False),
         [("destroy", "state is absent")]),
    Case("absent-transient-running-shutdown", spec(state=ABSENT, stop_timeout=30),
         on(xml(), persistent=False), [("shutdown", "state is absent")]),
    Case("absent-unmanaged", spec(state=ABSENT), on(xml(managed=False)), [], CONFLICT),
    Case("absent-unmanaged-adopt", spec(state=ABSENT, adopt=True), off(xml(managed=False)),
         [("undefine", "state is absent")]),
    # --- ownership -------------------------------------------------------------------------
    Case("unmanaged-running", spec(), on(xml(managed=False)), [], CONFLICT),
    Case("unmanaged-stopped-differs", spec(vcpus=4), off(xml(managed=False)), [], CONFLICT),
    Case("adopt-running", spec(adopt=True), on(xml(managed=False)),
         [("define", "adopt: mark the domain as managed")]),
    Case("adopt-stopped-with-change", spec(adopt=True, vcpus=2, state=STOPPED),
         off(xml(managed=False)),
         [("define", "vcpus 1 → 2, adopt: mark the domain as managed")]),
    Case("adopt-transient", spec(adopt=True), on(xml(managed=False), persistent=False),
         [("define", ("adopt: mark the domain as managed, "
                     "the domain is transient: make it persistent"))]),
    Case("managed-transient", spec(), on(xml(), persistent=False),
         [("define", "the domain is transient: make it persistent")]),
    # --- memory ----------------------------------------------------------------------------
    Case("memory-restart-destroy", spec(memory_kib=131072), on(xml()),
         [("destroy", "memory 64 MiB → 128 MiB needs a restart"), ("define", MEM_CHANGE),
          ("start", "start again after the restart")]),
    Case("memory-restart-shutdown", spec(memory_kib=131072, stop_timeout=60), on(xml()),
         [("shutdown", "memory 64 MiB → 128 MiB needs a restart"), ("define", MEM_CHANGE),
          ("start", "start again after the restart")]),
    Case("memory-next-boot", spec(memory_kib=131072, update_policy=NEXT_BOOT), on(xml()),
         [("define", MEM_CHANGE)],
         restart_pending="memory 64 MiB → 128 MiB takes effect at the next boot"),
    Case("memory-next-boot-already-saved", spec(memory_kib=131072, update_policy=NEXT_BOOT),
         on(xml(memory="131072"), xml()), [],
         restart_pending="memory 64 MiB → 128 MiB takes effect at the next boot"),
    Case("memory-restart-already-saved", spec(memory_kib=131072),
         on(xml(memory="131072"), xml()),
         [("destroy", "memory 64 MiB → 128 MiB needs a restart"),
          ("start", "start again after the restart")]),
    Case("memory-stopped", spec(memory_kib=131072), off(xml()),
         [("define", MEM_CHANGE), ("start", "state is running, the domain is stopped")]),
    Case("memory-shrinks-with-balloon", spec(memory_kib=131072, current_memory_kib=32768),
         on(xml(memory="262144", current="65536")),
         [("destroy", "memory 256 MiB → 128 MiB needs a restart"),
          ("define", "memory 256 MiB → 128 MiB, currentMemory 64 MiB → 32 MiB"),
          ("start", "start again after the restart")]),
    Case("memory-shrinks-with-balloon-next-boot",
         spec(memory_kib=131072, current_memory_kib=32768, update_policy=NEXT_BOOT),
         on(xml(memory="262144", current="65536")),
         [("set-memory", "currentMemory 64 MiB → 32 MiB (live)"),
          ("define", "memory 256 MiB → 128 MiB, currentMemory 64 MiB → 32 MiB")],
         restart_pending="memory 256 MiB → 128 MiB takes effect at the next boot"),
    Case("memory-in-kb-converged", spec(memory_kib=parse_memory_kib("100000KB")),
         on(xml(memory=KB_SAVED), xml(memory=KB_LIVE)), []),
    Case("memory-in-kb-next-boot-converged",
         spec(memory_kib=parse_memory_kib("100000KB"), update_policy=NEXT_BOOT),
         on(xml(memory=KB_SAVED), xml(memory=KB_LIVE)), []),
    Case("memory-in-kb-paused", spec(memory_kib=parse_memory_kib("100000KB")),
         domain(Power.PAUSED, xml(memory=KB_SAVED), xml(memory=KB_LIVE)),
         [("start", "state is running, the domain is paused")]),
    # --- currentMemory ---------------------------------------------------------------------
    Case("current-memory-running", spec(memory_kib=131072, current_memory_kib=65536),
         on(xml(memory="131072")),
         [("set-memory", "currentMemory 128 MiB → 64 MiB (live)"),
          ("define", "currentMemory 128 MiB → 64 MiB")]),
    Case("current-memory-running-next-boot",
         spec(memory_kib=131072, current_memory_kib=98304, update_policy=NEXT_BOOT),
         on(xml(memory="131072", current="65536")),
         [("set-memory", "currentMemory 64 MiB → 96 MiB (live)"),
          ("define", "currentMemory 64 MiB → 96 MiB")]),
    Case("current-memory-stopped", spec(memory_kib=131072, current_memory_kib=65536,
                                        state=STOPPED),
         off(xml(memory="131072")), [("define", "currentMemory 128 MiB → 64 MiB")]),
    Case("current-memory-running-but-stopping",
         spec(memory_kib=131072, current_memory_kib=65536, state=STOPPED),
         on(xml(memory="131072")),
         [("destroy", "state is stopped"), ("define", "currentMemory 128 MiB → 64 MiB")]),
    Case("current-memory-live-drift-ignored", spec(memory_kib=131072, current_memory_kib=65536),
         on(xml(memory="131072", current="65536"), xml(memory="131072", current="131072")), []),
    Case("current-memory-with-vcpus", spec(memory_kib=131072, current_memory_kib=65536, vcpus=2),
         on(xml(memory="131072")),
         [("destroy", "vcpus 1 → 2 needs a restart"),
          ("define", "currentMemory 128 MiB → 64 MiB, vcpus 1 → 2"),
          ("start", "start again after the restart")]),
    # --- vcpus, type, machine ----------------------------------------------------------------
    Case("vcpus-running", spec(vcpus=2), on(xml()),
         [("destroy", "vcpus 1 → 2 needs a restart"), ("define", "vcpus 1 → 2"),
          ("start", "start again after the restart")]),
    Case("vcpus-next-boot", spec(vcpus=2, update_policy=NEXT_BOOT), on(xml()),
         [("define", "vcpus 1 → 2")],
         restart_pending="vcpus 1 → 2 takes effect at the next boot"),
    Case("vcpus-stopped", spec(vcpus=2, state=STOPPED), off(xml()),
         [("define", "vcpus 1 → 2")]),
    Case("type-running", spec(type="qemu"), on(xml()),
         [("destroy", "type kvm → qemu needs a restart"), ("define", "type kvm → qemu"),
          ("start", "start again after the restart")]),
    Case("machine-alias", spec(machine="pc"), on(xml()), []),
    Case("machine-canonical", spec(machine="pc-i440fx-7.2"), on(xml()), []),
    Case("machine-changes", spec(machine="q35", state=STOPPED), off(xml()),
         [("define", "machine pc-i440fx-7.2 → q35")]),
    Case("machine-unset-keeps-any", spec(), on(xml(machine="pc-q35-7.2")), []),
    # --- disks and interfaces ------------------------------------------------------------------
    Case("disk-added", spec(state=STOPPED, disks=(Disk(f"{IMAGES}/a.qcow2", "vda"),)),
         off(xml()), [("define", f"disks none → vda={IMAGES}/a.qcow2 (qcow2, virtio)")]),
    Case("disk-kept-cdrom-ignored", spec(disks=(Disk(f"{IMAGES}/a.qcow2", "vda"),)),
         on(xml(devices=DISK_A + CDROM)), []),
    Case("disk-readonly", spec(disks=(Disk(f"{IMAGES}/a.qcow2", "vda", readonly=True),)),
         on(xml(devices=DISK_A)),
         [("destroy", (f"disks vda={IMAGES}/a.qcow2 (qcow2, virtio) → "
                      f"vda={IMAGES}/a.qcow2 (qcow2, virtio, readonly) needs a restart")),
          ("define", (f"disks vda={IMAGES}/a.qcow2 (qcow2, virtio) → "
                     f"vda={IMAGES}/a.qcow2 (qcow2, virtio, readonly)")),
          ("start", "start again after the restart")]),
    Case("interface-mac-kept", spec(interfaces=(Interface(network="default"),)),
         on(xml(devices=NIC)), []),
    Case("interface-mac-pinned-same", spec(interfaces=(
        Interface(network="default", mac="52:54:00:13:a2:52"),)), on(xml(devices=NIC)), []),
    Case("interface-mac-pinned-differs", spec(state=STOPPED, interfaces=(
        Interface(network="default", mac="52:54:00:00:00:01"),)), off(xml(devices=NIC)),
         [("define", ("interfaces network default 52:54:00:13:a2:52 → "
                     "network default 52:54:00:00:00:01"))]),
    Case("interface-removed", spec(state=STOPPED), off(xml(devices=NIC)),
         [("define", "interfaces network default 52:54:00:13:a2:52 → none")]),
    # --- pinned UUID -------------------------------------------------------------------------
    Case("uuid-same", spec(uuid=UUID), on(xml()), []),
    Case("uuid-same-other-case", spec(uuid=UUID.upper()), on(xml()), []),
    Case("uuid-stopped", spec(uuid=OTHER_UUID, state=STOPPED), off(xml()),
         [("undefine", REPLACE), ("define", REPLACE)]),
    Case("uuid-stopped-want-running", spec(uuid=OTHER_UUID), off(xml()),
         [("undefine", REPLACE), ("define", REPLACE), ("start", "state is running")]),
    Case("uuid-running", spec(uuid=OTHER_UUID), on(xml()),
         [("destroy", REPLACE), ("undefine", REPLACE), ("define", REPLACE),
          ("start", "state is running")]),
    Case("uuid-running-shutdown-autostart", spec(uuid=OTHER_UUID, stop_timeout=5,
                                                 autostart=True), on(xml(), autostart=True),
         [("shutdown", REPLACE), ("undefine", REPLACE), ("define", REPLACE),
          ("autostart", "autostart is wanted"), ("start", "state is running")]),
    Case("uuid-running-next-boot", spec(uuid=OTHER_UUID, update_policy=NEXT_BOOT), on(xml()),
         [], restart_pending=f"uuid {UUID} → {OTHER_UUID} needs the VM stopped"),
    Case("uuid-running-next-boot-stop", spec(uuid=OTHER_UUID, update_policy=NEXT_BOOT,
                                             state=STOPPED), on(xml()),
         [("destroy", REPLACE), ("undefine", REPLACE), ("define", REPLACE)]),
    Case("uuid-unmanaged", spec(uuid=OTHER_UUID), off(xml(managed=False)), [], CONFLICT),
    # --- autostart ---------------------------------------------------------------------------
    Case("autostart-on", spec(autostart=True), on(xml()),
         [("autostart", "autostart false → true")]),
    Case("autostart-off", spec(), on(xml(), autostart=True),
         [("autostart", "autostart true → false")]),
    Case("autostart-on-stopped", spec(autostart=True, state=STOPPED), off(xml()),
         [("autostart", "autostart false → true")]),
    Case("autostart-with-define-and-start", spec(autostart=True, vcpus=2), off(xml()),
         [("define", "vcpus 1 → 2"), ("autostart", "autostart false → true"),
          ("start", "state is running, the domain is stopped")]),
    # --- power -------------------------------------------------------------------------------
    Case("stopped-start", spec(), off(xml()),
         [("start", "state is running, the domain is stopped")]),
    Case("paused-start", spec(), domain(Power.PAUSED, xml()),
         [("start", "state is running, the domain is paused")]),
    Case("paused-stop", spec(state=STOPPED), domain(Power.PAUSED, xml()),
         [("destroy", "state is stopped")]),
    Case("running-stop-destroy", spec(state=STOPPED), on(xml()),
         [("destroy", "state is stopped")]),
    Case("running-stop-shutdown", spec(state=STOPPED, stop_timeout=60), on(xml()),
         [("shutdown", "state is stopped")]),
    Case("running-stop-and-change-next-boot", spec(state=STOPPED, vcpus=2,
                                                   update_policy=NEXT_BOOT), on(xml()),
         [("destroy", "state is stopped"), ("define", "vcpus 1 → 2")]),
    # --- converged: the key property, nothing to do -------------------------------------------
    Case("converged-running", spec(), on(xml()), []),
    Case("converged-stopped", spec(state=STOPPED), off(xml()), []),
    Case("converged-autostart", spec(autostart=True), on(xml(), autostart=True), []),
    Case("converged-full", spec(
        memory_kib=131072, current_memory_kib=65536, vcpus=2, machine="pc", uuid=UUID,
        disks=(Disk(f"{IMAGES}/a.qcow2", "vda"),),
        interfaces=(Interface(network="default"),)),
        on(xml(memory="131072", current="65536", vcpus=2, devices=DISK_A + CDROM + NIC)), []),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_plan(case: Case) -> None:
    result = plan(case.spec, case.observed, machines=MACHINES)
    assert [(step.action.value, step.reason) for step in result.steps] == case.steps
    assert result.conflict == case.conflict
    assert result.restart_pending == case.restart_pending


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


def test_machine_alias_without_a_resolver_is_a_change() -> None:
    result = plan(spec(machine="pc"), on(xml()))
    assert [(s.action.value, s.reason) for s in result.steps] == [
        ("destroy", "machine pc-i440fx-7.2 → pc needs a restart"),
        ("define", "machine pc-i440fx-7.2 → pc"),
        ("start", "start again after the restart"),
    ]


def _step(result: Plan, action: Action) -> str:
    [found] = [step for step in result.steps if step.action is action]
    return found.xml or ""


def test_steps_carry_what_they_need() -> None:
    balloon = plan(spec(memory_kib=131072, current_memory_kib=65536),
                   on(xml(memory="131072", current="131072")))
    assert [(s.action, s.memory_kib) for s in balloon.steps] == [
        (Action.SET_MEMORY, 65536), (Action.DEFINE, None)]
    result = plan(spec(memory_kib=131072, current_memory_kib=65536, stop_timeout=45,
                       autostart=True), on(xml(memory="131072", current="131072", vcpus=2)))
    # a restart is coming: no live balloon first, the new definition carries it
    assert [s.action for s in result.steps] == [
        Action.SHUTDOWN, Action.DEFINE, Action.AUTOSTART, Action.START]
    shutdown, define, autostart, _start = result.steps
    assert shutdown.timeout == 45
    assert autostart.autostart is True
    defined = parse_domain(define.xml or "")
    assert (defined.uuid, defined.vcpus, defined.current_memory_kib, defined.managed) == (
        UUID, 1, 65536, True)
    assert [c.field for c in result.changes] == ["currentMemory", "vcpus"]
    assert all(c.needs_restart for c in result.changes if c.field == "vcpus")


def test_adopting_marks_and_keeps_the_definition() -> None:
    saved = xml(managed=False, devices=DISK_A + NIC)
    result = plan(spec(adopt=True, disks=(Disk(f"{IMAGES}/a.qcow2", "vda"),),
                       interfaces=(Interface(network="default"),)), on(saved))
    defined = parse_domain(_step(result, Action.DEFINE))
    assert defined.managed is True
    assert defined.uuid == UUID
    assert defined.interfaces[0].mac == "52:54:00:13:a2:52"
    root = ET.fromstring(_step(result, Action.DEFINE))
    assert root.find("devices/disk/address") is not None
    assert root.find("devices/console") is not None


def test_replacing_for_a_pinned_uuid_keeps_the_rest_of_the_definition() -> None:
    result = plan(spec(uuid=OTHER_UUID, interfaces=(Interface(network="default"),)),
                  off(xml(devices=NIC)))
    defined = parse_domain(_step(result, Action.DEFINE))
    assert defined.uuid == OTHER_UUID
    assert defined.interfaces[0].mac == "52:54:00:13:a2:52"


def test_create_builds_a_managed_domain() -> None:
    result = plan(spec(uuid=OTHER_UUID, vcpus=2), ABSENT_DOMAIN)
    defined = parse_domain(_step(result, Action.DEFINE))
    assert (defined.name, defined.uuid, defined.vcpus, defined.managed) == (
        "vm", OTHER_UUID, 2, True)


# --- round trip: what the builder writes, the planner accepts as converged ------------------

def _observe_built(desired: VMSpec, base: str | None) -> Observed:
    built = build_domain(desired, base)
    if desired.state is RUNNING:
        return on(built, autostart=desired.autostart)
    return off(built, autostart=desired.autostart)


ROUND_TRIP_SPECS = [
    spec(),
    spec(state=STOPPED, autostart=True, stop_timeout=60),
    spec(memory_kib=parse_memory_kib("100000KB"), current_memory_kib=50000, vcpus=3),
    spec(uuid=UUID, type="qemu", arch="x86_64", machine="pc-q35-7.2",
         update_policy=NEXT_BOOT),
    spec(disks=(Disk(f"{IMAGES}/a.qcow2", "vda"),
                Disk(f"{IMAGES}/b.img", "vdb", format="raw", readonly=True),
                Disk(f"{IMAGES}/c.img", "sda", format="raw", bus="sata"),
                Disk(f"{IMAGES}/d.qcow2", "sdb", bus="scsi")),
         interfaces=(Interface(network="default"),
                     Interface(bridge="br0", mac="52:54:00:aa:bb:cc", model="e1000"),
                     Interface(network="isolated", model="rtl8139"))),
    spec(name="odd&<name>'\"", disks=(Disk(f"{IMAGES}/a & b <c> 'd\" e.qcow2", "vda"),),
         interfaces=(Interface(network="net&<>'\""),)),
]


@pytest.mark.parametrize("base", ["none", "minimal", "real"])
@pytest.mark.parametrize("desired", ROUND_TRIP_SPECS, ids=lambda s: str(ROUND_TRIP_SPECS.index(s)))
def test_round_trip_plans_nothing(desired: VMSpec, base: str) -> None:
    base_xml = {"none": None, "minimal": xml(managed=False, devices=DISK_A + CDROM + NIC),
                "real": SAVED_REAL.read_text(encoding="utf-8")}[base]
    observed = _observe_built(desired, base_xml)
    result = plan(desired, observed, machines=MACHINES)
    assert result == Plan()


def test_round_trip_of_a_redefinition_keeps_planning_nothing() -> None:
    desired = ROUND_TRIP_SPECS[4]
    first = build_domain(desired, SAVED_REAL.read_text(encoding="utf-8"))
    again = build_domain(desired, first)
    assert again == first
    assert plan(desired, on(again), machines=MACHINES) == Plan()


_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_paths = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\x00"),
    min_size=1, max_size=20,
).map(lambda tail: f"{IMAGES}/{tail}")
_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
_disks = st.lists(  # as a valid manifest has them: one disk per image, no read-only SATA or IDE
    st.builds(Disk, source=_paths, target=st.just(""), format=st.sampled_from(["qcow2", "raw"]),
              bus=st.sampled_from(["virtio", "sata", "scsi", "ide"]), readonly=st.booleans()),
    max_size=4, unique_by=lambda disk: disk.source,
).map(lambda disks: tuple(
    dataclasses.replace(disk, target=f"{_PREFIX[disk.bus]}{chr(97 + i)}",
                        readonly=disk.readonly and disk.bus in ("virtio", "scsi"))
    for i, disk in enumerate(disks)))
_macs = st.none() | st.lists(st.integers(0, 255), min_size=3, max_size=3).map(
    lambda tail: "52:54:00:" + ":".join(f"{byte:02x}" for byte in tail))
_interfaces = st.lists(
    st.one_of(
        st.builds(Interface, network=_names, mac=_macs,
                  model=st.sampled_from(["virtio", "e1000"])),
        st.builds(Interface, bridge=_names, mac=_macs, model=st.sampled_from(["virtio"])),
    ),
    max_size=3,
).map(tuple)


@st.composite
def _specs(draw: st.DrawFn) -> VMSpec:
    memory = draw(st.integers(1, 64 * 1024**2))
    return spec(
        name=draw(_names),
        state=draw(st.sampled_from([RUNNING, STOPPED])),
        memory_kib=memory,
        current_memory_kib=draw(st.integers(1, memory)),
        vcpus=draw(st.integers(1, 64)),
        type=draw(st.sampled_from(["kvm", "qemu"])),
        machine=draw(st.sampled_from([None, "pc", "q35", "pc-i440fx-7.2"])),
        autostart=draw(st.booleans()),
        update_policy=draw(st.sampled_from([RESTART, NEXT_BOOT])),
        uuid=draw(st.none() | st.uuids().map(str)),
        disks=draw(_disks),
        interfaces=draw(_interfaces),
    )


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(desired=_specs(), with_base=st.booleans())
def test_any_built_domain_is_converged(desired: VMSpec, with_base: bool) -> None:
    base = SAVED_REAL.read_text(encoding="utf-8") if with_base else None
    result = plan(desired, _observe_built(desired, base), machines=MACHINES)
    assert result == Plan()


def test_a_mark_without_the_manifest_file_gets_it() -> None:
    """The mark records the manifest file (an unreadable manifest is not a missing one):
    an older mark without it, or naming another file, is redefined, nothing else."""
    older = xml().replace(' source="vm.yaml"', "")
    moved = xml().replace(' source="vm.yaml"', ' source="old/vm.yaml"')
    for saved, was in ((older, "(none)"), (moved, "old/vm.yaml")):
        result = plan(spec(), on(saved))
        assert [(step.action.value, step.reason) for step in result.steps] == [
            ("define", f"ownership mark: manifest {was} → vm.yaml")]
        built = parse_domain(result.steps[0].xml or "")
        assert (built.source, built.memory_kib, built.uuid) == ("vm.yaml", 65536, UUID)

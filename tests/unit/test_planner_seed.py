"""The cloud-init seed in plans and domain XML: content-addressed, created once, a next-boot
change, old seeds deleted once no definition uses them, all of them on state: absent, and
the seed cdrom on a bus the firmware and a cloud kernel can see."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from controller.domainxml import build_domain, parse_domain
from controller.model import ABSENT_DOMAIN, Action, CloudInit, DesiredState, Observed, Power, VMSpec
from controller.planner.placement import Situation, plan_placement
from controller.planner.seed import domain_uuid, plan_seed, wanted_seed
from controller.planner.storage import StorageView

SECRET = "hunter2-do-not-print"


def spec(**fields: object) -> VMSpec:
    base: dict[str, object] = {
        "name": "vm", "source": "vm.yaml", "memory_kib": 65536, "current_memory_kib": 65536,
        "vcpus": 1, "stop_timeout": 0,
        "cloud_init": CloudInit(user_data=f"#cloud-config\npassword: {SECRET}\n")}
    base.update(fields)
    return VMSpec(**base)  # type: ignore[arg-type]


def view(*seeds: str) -> StorageView:
    return StorageView(volumes={}, images={}, image_volumes={}, seeds=frozenset(seeds))


def existing(xml: str, power: Power = Power.RUNNING, live: str | None = None) -> Observed:
    config = parse_domain(xml)
    live_config = parse_domain(live or xml) if power.active else None
    return Observed("vm", exists=True, power=power, persistent=True, saved=config,
                    live=live_config, saved_xml=xml)


def steps(result: object) -> list[tuple[str, str]]:
    return [(step.action.value, step.reason) for step in result.steps]  # type: ignore[attr-defined]


def test_a_new_vm_gets_its_seed_first_and_a_uuid_that_is_its_instance_id() -> None:
    result = plan_placement(spec(), Situation(host="", here=ABSENT_DOMAIN, storage=view()))
    want = wanted_seed(spec(), domain_uuid(spec(), ABSENT_DOMAIN))
    assert [step.action for step in result.steps] == [Action.CREATE_SEED, Action.DEFINE,
                                                     Action.START]
    defined = parse_domain(result.steps[1].xml or "")
    assert defined.seed == ("default", want.volume)
    assert json.loads(want.meta_data) == {"instance-id": defined.uuid, "local-hostname": "vm"}
    assert want.volume.startswith("vm.cidata-") and want.volume.endswith(".iso")
    for step in result.steps:
        assert SECRET not in step.reason and SECRET not in repr(step)


def test_the_same_content_is_the_same_seed_and_plans_nothing() -> None:
    first = plan_placement(spec(), Situation(host="", here=ABSENT_DOMAIN, storage=view()))
    xml = first.steps[1].xml or ""
    seed = parse_domain(xml).seed
    assert seed is not None
    again = plan_placement(spec(), Situation(host="", here=existing(xml), storage=view(seed[1])))
    assert again.steps == ()


def test_new_user_data_is_a_new_seed_for_the_next_boot() -> None:
    first = plan_placement(spec(), Situation(host="", here=ABSENT_DOMAIN, storage=view()))
    xml = first.steps[1].xml or ""
    old = parse_domain(xml).seed
    assert old is not None
    edited = spec(cloud_init=CloudInit(user_data="#cloud-config\nhostname: b\n"))
    result = plan_placement(edited, Situation(host="", here=existing(xml), storage=view(old[1])))
    assert [step.action for step in result.steps] == [Action.CREATE_SEED, Action.DEFINE]
    assert "next boot" in result.steps[1].reason and "instance-id" in result.steps[1].reason
    assert result.restart_pending is None  # the running VM is not restarted for it
    new_xml = result.steps[1].xml or ""
    new = parse_domain(new_xml).seed
    assert new is not None and new != old
    # the old seed stays while the running domain uses it, and goes once nothing does
    still = plan_placement(edited, Situation(host="", here=existing(new_xml, live=xml),
                                             storage=view(old[1], new[1])))
    assert still.steps == ()
    stopped = plan_placement(edited, Situation(host="", here=existing(new_xml, Power.STOPPED),
                                               storage=view(old[1], new[1])))
    assert steps(stopped)[-1] == ("delete-volume", f"default/{old[1]}: an old cloud-init seed")


def test_absent_deletes_every_seed_after_the_undefine() -> None:
    first = plan_placement(spec(), Situation(host="", here=ABSENT_DOMAIN, storage=view()))
    xml = first.steps[1].xml or ""
    gone = spec(state=DesiredState.ABSENT)
    result = plan_placement(gone, Situation(host="", here=existing(xml),
                                            storage=view("vm.cidata-000000000000.iso")))
    assert [step.action.value for step in result.steps] == ["destroy", "undefine",
                                                            "delete-volume"]


def test_the_seed_of_an_existing_domain_uses_its_uuid() -> None:
    observed = existing("<domain type='kvm'><name>vm</name>"
                        "<uuid>6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5</uuid><memory>65536</memory>"
                        "<vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    assert plan_seed(spec(), observed, set()).uuid == "6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"


@pytest.mark.parametrize("os_part, bus, controller", [
    ("<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>", "ide", False),
    ("<os firmware='efi'><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>", "scsi",
     True),
    ("<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>", "scsi", True),
])
def test_the_seed_cdrom_is_on_a_bus_the_guest_sees(os_part: str, bus: str,
                                                   controller: bool) -> None:
    base = (f"<domain type='kvm'><name>vm</name><memory>65536</memory><vcpu>1</vcpu>{os_part}"
            "<devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/>"
            "</disk></devices></domain>")
    xml = build_domain(spec(), base, seed=("default", "vm.cidata-0123456789ab.iso"))
    root = ET.fromstring(xml)
    (seed,) = [d for d in root.iter("disk") if d.find("source") is not None
               and d.find("source").get("volume") == "vm.cidata-0123456789ab.iso"]  # type: ignore[union-attr]
    target = seed.find("target")
    assert target is not None and target.get("bus") == bus and seed.find("readonly") is not None
    assert target.get("dev") != "hdc"  # the existing cdrom keeps its target
    scsi = [c for c in root.iter("controller") if c.get("type") == "scsi"]
    assert bool(scsi) == controller
    again = build_domain(spec(), xml, seed=("default", "vm.cidata-ba9876543210.iso"))
    moved = parse_domain(again)
    assert moved.seed == ("default", "vm.cidata-ba9876543210.iso")
    assert ET.canonicalize(build_domain(spec(), again, seed=moved.seed)) == \
        ET.canonicalize(again)
    without = parse_domain(build_domain(spec(cloud_init=None), again))
    assert without.seed is None

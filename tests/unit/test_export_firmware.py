"""`export` writes section 8 as the domain has it (where it differs from a new domain's
defaults), the document validates, and applying it changes nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.domainxml import MANAGED_NS, parse_domain
from controller.export import to_manifest
from controller.manifests import check_document, load_directory
from controller.model import Observed, Plan
from controller.planner import plan
from tests.unit.test_domainxml_firmware import OS_EFI_EXPLICIT, SPICE_OPEN, TPM, VNC, domain
from tests.unit.test_planner import MACHINES, off

# virt-install --boot uefi --tpm emulator --graphics spice --channel unix,target.type=virtio,
# target.name=org.qemu.guest_agent.0 --cpu host-model --sound ich9 (libvirt 9.0 saved XML)
VIRT_INSTALL = domain(
    "<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>"
    "<firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='yes' "
    "name='secure-boot'/></firmware><boot dev='hd'/></os>",
    cpu="<cpu mode='host-model' check='partial'/>", features="<acpi/><smm state='on'/>",
    devices=("<controller type='virtio-serial' index='0'/>"
             "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
             "</channel><channel type='spicevmc'><target type='virtio' "
             "name='com.redhat.spice.0'/></channel>"
             "<graphics type='spice' autoport='yes'><listen type='address'/>"
             "<image compression='off'/></graphics><sound model='ich9'/>"
             "<audio id='1' type='spice'/><video><model type='qxl'/></video>"
             "<redirdev bus='usb' type='spicevmc'/>" + TPM)).replace(
    "pc-i440fx-7.2", "pc-q35-7.2")


def exported(xml: str) -> tuple[dict[str, Any], list[str]]:
    saved = parse_domain(xml)
    observed = Observed(name="vm", exists=True, persistent=True, saved=saved, saved_xml=xml)
    document, warnings = to_manifest(observed, disk_roots=["/"])
    assert check_document(document, disk_roots=["/"]) == []
    return document, warnings


def test_a_virt_install_uefi_domain_exports_what_it_has() -> None:
    document, warnings = exported(VIRT_INSTALL)
    spec = document["spec"]
    section8 = {key: spec[key] for key in spec if key in (
        "firmware", "secureBoot", "tpm", "cpu", "boot", "graphics", "graphicsListen",
        "serial", "guestAgent", "kernel")}
    assert section8 == {"firmware": "efi", "secureBoot": True, "tpm": True,
                        "cpu": {"mode": "host-model"}, "graphics": "spice",
                        "guestAgent": True}
    assert warnings == []


@pytest.mark.parametrize("xml", [
    VIRT_INSTALL, domain(OS_EFI_EXPLICIT), domain(devices=VNC), domain(devices=SPICE_OPEN),
    domain(cpu="<cpu><model>qemu64</model><topology sockets='1' cores='1' threads='1'/></cpu>"),
    domain("<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>"
           "/var/lib/libvirt/boot/k</kernel><cmdline>console=ttyS0</cmdline>"
           "<boot dev='cdrom'/><boot dev='hd'/></os>"),
], ids=["virt-install", "explicit-loader", "vnc", "spice-open", "topology", "kernel"])
def test_applying_the_export_changes_nothing(xml: str, tmp_path: Path) -> None:
    unmanaged = xml.replace(f'<reconcile:managed xmlns:reconcile="{MANAGED_NS}" '
                            'source="vm.yaml"/>', "")
    assert not parse_domain(unmanaged).managed
    document, _ = exported(unmanaged)
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "vm.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    load = load_directory(str(directory), disk_roots=["/"])
    assert load.invalid == []
    spec = load.specs["vm"]
    adopted = plan(spec, off(unmanaged), machines=MACHINES)
    assert [(step.action.value, step.reason) for step in adopted.steps] == [
        ("define", "adopt: mark the domain as managed")]
    # the define changes nothing but the mark
    marked = parse_domain(adopted.steps[0].xml or "")
    assert replace(marked, managed=False, source=None) == parse_domain(unmanaged)
    assert plan(spec, off(adopted.steps[0].xml or ""), machines=MACHINES) == Plan()


def test_what_export_cannot_describe_is_said() -> None:
    network = domain(devices="<graphics type='vnc'><listen type='network' network='default'/>"
                             "</graphics>")
    document, warnings = exported(network)
    assert "graphics" not in document["spec"]
    assert warnings == ["vm: graphics: vnc on a libvirt network's address: kept as it is, "
                        "left out of the manifest"]
    several = domain(devices=VNC + "<graphics type='egl-headless'/>")
    document, warnings = exported(several)
    assert "graphics" not in document["spec"] and len(warnings) == 1


def test_no_serial_is_written_and_defaults_are_not() -> None:
    plain, _ = exported(domain())
    for key in ("firmware", "secureBoot", "tpm", "boot", "graphics", "serial", "guestAgent",
                "kernel", "cpu"):
        assert key not in plain["spec"], key
    quiet, _ = exported(domain().replace(
        "<console type='pty'><target type='serial' port='0'/></console>", ""))
    assert quiet["spec"]["serial"] is False

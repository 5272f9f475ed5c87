"""Domains that `virt-install --import` really creates (and starts) on the real libvirtd,
with UEFI, TPM, SPICE, a guest agent channel, USB, sound and more: `reconcile export`
writes their firmware, TPM, CPU, boot order, display and agent; applying the export is
one define that changes nothing but the ownership mark; a memory change later restarts
the guest and keeps every device; a rerun plans nothing.

virt-install runs as the fidelity corpus runs it (tests/fidelity/build_corpus.py), with
virtinst's automatic storage pool for a disk's folder turned off, so that it leaves no
pool behind; the disk is a tiny qcow2 of the test's own (the guests boot no OS).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from ..fidelity.harness import _canonical, _diff, _without_marker, _without_memory
from ..support.command import OnceRunner, Runner
from ..support.disks import qcow2
from ..support.domains import must_read
from ..support.libvirtd import SYSTEM_URI
from ..support.manifests import Manifests
from .firmware_support import FirmwareState

VIRTINST = """
import sys
sys.path.insert(0, "/usr/share/virt-manager")
from virtinst import diskbackend
diskbackend._can_auto_manage = lambda path: False
from virtinst import virtinstall
virtinstall.runcli()
"""

OPTION_SETS: dict[str, tuple[str, dict[str, Any]]] = {
    "uefi-desktop": (
        "--machine q35 --boot uefi --tpm emulator,model=tpm-crb,version=2.0 "
        "--graphics spice --video qxl --sound ich9 --channel spicevmc "
        "--channel unix,target.type=virtio,target.name=org.qemu.guest_agent.0 "
        "--redirdev usb,type=spicevmc --controller usb,model=qemu-xhci",
        # no Secure Boot feature written: libvirt's auto-selection decides, so export
        # leaves secureBoot out (kept); a qemu domain gets libvirt's qemu64 CPU
        {"firmware": "efi", "tpm": True, "graphics": "spice", "guestAgent": True,
         "cpu": {"mode": "custom", "model": "qemu64"}}),
    "bios-server": (
        "--vcpus 2,sockets=1,cores=2,threads=1 --cpu host-model "
        "--graphics vnc,listen=0.0.0.0 --serial pty --rng /dev/urandom "
        "--watchdog i6300esb --memballoon virtio",
        {"cpu": {"mode": "host-model", "sockets": 1, "cores": 2, "threads": 1},
         "graphics": "vnc", "graphicsListen": "0.0.0.0"}),
    "uefi-explicit": (
        "--machine q35 --boot cdrom,hd,loader=/usr/share/OVMF/OVMF_CODE_4M.fd,"
        "loader.readonly=yes,loader.type=pflash,"
        "nvram.template=/usr/share/OVMF/OVMF_VARS_4M.fd "
        "--channel unix,target.type=virtio,target.name=org.qemu.guest_agent.0 "
        "--graphics none --serial pty --cpu qemu64",
        # virt-install 4.1 adds an emulated TPM to a UEFI guest when swtpm is there
        {"firmware": "efi", "secureBoot": False, "tpm": True, "boot": ["cdrom", "hd"],
         "cpu": {"mode": "custom", "model": "qemu64"}, "guestAgent": True}),
}
SECTION_8 = ("firmware", "secureBoot", "tpm", "cpu", "boot", "kernel", "graphics",
             "graphicsListen", "serial", "guestAgent")


def _virt_install(name: str, disk: Path, options: str) -> None:
    argv = ["/usr/bin/python3", "-c", VIRTINST, "--connect", SYSTEM_URI, "--name", name,
            "--virt-type", "qemu", "--memory", "96", "--osinfo", "detect=on,require=off",
            "--import", "--disk", f"path={disk},format=qcow2,bus=virtio",
            "--network", "none", "--noautoconsole", *options.split()]
    if "--vcpus" not in options:
        argv += ["--vcpus", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _devices(xml: str) -> list[tuple[str, str]]:
    devices = ET.fromstring(xml).find("devices")
    assert devices is not None
    return sorted((device.tag, device.get("type") or device.get("model") or "")
                  for device in devices)


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_a_virt_install_domain_is_adopted_and_changed_without_losing_a_device(
    conn: libvirt.virConnect, prefix: str, image_dir: Path, manifests: Manifests,
    run: Runner, once: OnceRunner, firmware_state: FirmwareState, option_set: str,
) -> None:
    name = prefix + option_set
    options, expected = OPTION_SETS[option_set]
    _virt_install(name, qcow2(image_dir / f"{option_set}.qcow2"), options)
    firmware_state.remember(name)
    installed = must_read(conn, name)
    assert installed.running
    # libvirt's own round trip first: it orders auto-added controllers differently the
    # second time (tests/fidelity/README.md); that fixed point is the baseline
    conn.defineXML(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                                   | libvirt.VIR_DOMAIN_XML_SECURE))
    baseline = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                               | libvirt.VIR_DOMAIN_XML_SECURE)

    exported = run("export", name, check_exit=0)
    document = yaml.safe_load(exported.stdout)
    spec = document["spec"]
    assert {key: spec[key] for key in SECTION_8 if key in spec} == expected, spec
    assert spec["adopt"] is True and spec["state"] == "running"
    manifests.write("vm.yaml", document)

    adopted = once(check_exit=0)
    assert (adopted.result(name), adopted.actions(name)) == ("converged", ["define"])
    after = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                            | libvirt.VIR_DOMAIN_XML_SECURE)
    assert _without_marker(_canonical(after)) == _canonical(baseline), _diff(
        _canonical(baseline), _without_marker(_canonical(after)))
    assert must_read(conn, name).id == installed.id  # adoption restarts nothing

    spec["memory"] = "128MiB"
    spec["stopTimeout"] = 0  # no OS: nothing would answer the ACPI shutdown
    manifests.write("vm.yaml", document)
    changed = once(check_exit=0)
    assert changed.actions(name) == ["destroy", "define", "start"]
    restarted = must_read(conn, name)
    assert restarted.running and restarted.live.memory_kib == 128 * 1024
    assert _devices(restarted.saved_xml) == _devices(after)
    assert _without_memory(_canonical(restarted.saved_xml)) == _without_memory(
        _canonical(after)), _diff(_without_memory(_canonical(after)),
                                  _without_memory(_canonical(restarted.saved_xml)))
    assert once("--dry-run", check_exit=0).result(name) == "unchanged"

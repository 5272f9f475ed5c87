"""`reconcile export` then `--once`: an existing host comes under management with no
restart and no change to its domains but the ownership marker (issue 6's round trip)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import yaml

from tests.support.command import OnceRunner, Runner
from tests.support.disks import qcow2
from tests.support.domains import must_read
from tests.support.manifests import Manifests


def _define(conn: libvirt.virConnect, name: str, virt_type: str, image: Path,
            *, start: bool) -> None:
    """An operator's domain: a disk, a NIC with its own MAC, a console, odd memory."""
    root = ET.Element("domain", type=virt_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="KiB").text = str(96 * 1024)
    ET.SubElement(root, "currentMemory", unit="KiB").text = str(80 * 1024)
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    devices = ET.SubElement(root, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=str(image))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    if not start:  # a NIC on the default network needs that network active to start
        nic = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(nic, "mac", address="52:54:00:3e:71:01")
        ET.SubElement(nic, "source", network="default")
        ET.SubElement(nic, "model", type="virtio")
    ET.SubElement(devices, "console", type="pty")
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    if start:
        dom.create()


def test_export_then_apply_only_marks_the_domains_as_managed(
        conn: libvirt.virConnect, prefix: str, virt_type: str, image_dir: Path,
        manifests: Manifests, run: Runner, once: OnceRunner) -> None:
    running, stopped = prefix + "run", prefix + "stop"
    _define(conn, running, virt_type, qcow2(image_dir / "run.qcow2"), start=True)
    _define(conn, stopped, virt_type, qcow2(image_dir / "stop.qcow2"), start=False)
    before = {name: must_read(conn, name) for name in (running, stopped)}
    xml_before = {name: conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                  for name in (running, stopped)}

    exported = run("export", running, stopped, check_exit=0)
    documents = list(yaml.safe_load_all(exported.stdout))
    assert [d["metadata"]["name"] for d in documents] == [running, stopped]
    assert all(d["spec"]["adopt"] is True for d in documents)
    assert documents[0]["spec"]["state"] == "running"
    assert documents[1]["spec"]["interfaces"] == [
        {"network": "default", "mac": "52:54:00:3e:71:01", "model": "virtio"}]
    manifests.write("adopted.yaml", exported.stdout)

    applied = once(check_exit=0)
    for name in (running, stopped):
        assert applied.result(name) == "converged"
        assert applied.actions(name) == ["define"], applied.vms[name]
    after = {name: must_read(conn, name) for name in (running, stopped)}
    assert after[running].id == before[running].id  # not restarted
    for name in (running, stopped):
        assert after[name].uuid == before[name].uuid
        assert after[name].saved.managed
        xml_after = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert _without_metadata(xml_after) == _without_metadata(xml_before[name])

    dry = once("--dry-run", check_exit=0)
    assert {dry.result(name) for name in (running, stopped)} == {"unchanged"}

    again = run("export", "--all", "--unmanaged", check_exit=0)
    assert running not in again.stdout and stopped not in again.stdout


def _without_metadata(xml: str) -> str:
    root = ET.fromstring(xml)
    for metadata in root.findall("metadata"):
        root.remove(metadata)
    return ET.tostring(root, encoding="unicode")

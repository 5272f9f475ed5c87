"""`export`: a manifest that `validate` accepts, or one line per field saying why not, and
one warning per device it leaves out because adoption keeps it as it is."""

from __future__ import annotations

import pytest

from controller.domainxml import parse_domain
from controller.export import NotExportable, to_manifest
from controller.manifests import check_document
from controller.model import Observed

IMAGES = "/var/lib/libvirt/images"


def observed(devices: str = "", *, memory: str = "<memory unit='KiB'>219100</memory>",
             name: str = "fid") -> Observed:
    xml = (f"<domain type='kvm'><name>{name}</name>"
           "<uuid>efeb2802-667a-47f9-a68d-52471cc6024a</uuid>"
           f"{memory}<vcpu>1</vcpu><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>"
           f"</os><devices>{devices}</devices></domain>")
    return Observed(name=name, exists=True, persistent=True, saved=parse_domain(xml),
                    saved_xml=xml)


def disk(path: str, target: str, bus: str = "virtio") -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{path}'/><target dev='{target}' bus='{bus}'/></disk>")


def test_kept_devices_are_left_out_with_one_warning_each() -> None:
    document, warnings = to_manifest(observed(
        disk(f"{IMAGES}/a.img", "hda", bus="ide")
        + "<disk type='block' device='disk'><source dev='/dev/vg/lv'/>"
          "<target dev='vdb' bus='virtio'/></disk>"
        + "<interface type='direct'><source dev='eth0' mode='bridge'/><model type='virtio'/>"
          "</interface>"
        + "<interface type='network'><mac address='52:54:00:00:00:01'/>"
          "<source network='default'/><model type='virtio'/></interface>"))
    assert document["spec"]["disks"] == [
        {"source": f"{IMAGES}/a.img", "format": "raw", "target": "hda", "bus": "ide"}]
    assert document["spec"]["interfaces"] == [
        {"network": "default", "mac": "52:54:00:00:00:01", "model": "virtio"}]
    assert warnings == [
        "fid: disk vdb: a block disk (/dev/vg/lv): kept as it is, left out of the manifest",
        "fid: interface 0 (direct): a direct interface: kept as it is, left out of the manifest"]
    assert check_document(document) == []


def test_more_than_64_disks_export_and_validate() -> None:
    many = "".join(disk(f"{IMAGES}/d{n}.img", f"vd{chr(97 + n // 26)}{chr(97 + n % 26)}")
                   for n in range(105))
    document, warnings = to_manifest(observed(many))
    assert len(document["spec"]["disks"]) == 105 and warnings == []
    assert check_document(document) == []


def test_a_shared_image_is_left_out_and_the_rest_validates() -> None:
    document, warnings = to_manifest(observed(
        disk(f"{IMAGES}/twice.img", "vda") + disk(f"{IMAGES}/twice.img", "vdb")
        + disk(f"{IMAGES}/once.img", "vdc")))
    assert [d["target"] for d in document["spec"]["disks"]] == ["vdc"]
    assert len(warnings) == 2
    assert check_document(document) == []


def test_the_export_does_not_carry_the_schema_defaults() -> None:
    document, _ = to_manifest(observed(disk(f"{IMAGES}/a.img", "vda")))
    assert "updatePolicy" not in document["spec"]
    assert "readonly" not in document["spec"]["disks"][0]


def test_what_validate_would_refuse_is_one_line_per_field() -> None:
    domain = observed(disk("/srv/vm/a.img", "vda") + disk(f"{IMAGES}/b.img", "vdb")
                      + disk("/srv/vm/c.img", "vdc")
                      + "<interface type='network'><source network='has space'/>"
                        "<model type='virtio'/></interface>",
                      memory="<memory unit='KiB'>9007199254740991</memory>")
    with pytest.raises(NotExportable) as raised:
        to_manifest(domain)
    lines = str(raised.value).splitlines()
    assert lines == [
        "domain 'fid': spec.memory: '9007199254740991KiB' is larger than 1 PiB",
        ("domain 'fid': spec.disks[0].source: /srv/vm/a.img is outside the allowed disk roots "
        f"({IMAGES}); see --disk-root"),
        ("domain 'fid': spec.disks[2].source: /srv/vm/c.img is outside the allowed disk roots "
        f"({IMAGES}); see --disk-root"),
        ("domain 'fid': spec.interfaces[0].network: 'has space' does not match "
        "'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"),
    ]


def test_disk_roots_are_those_given() -> None:
    document, _ = to_manifest(observed(disk("/srv/vm/a.img", "vda")), disk_roots=["/srv/vm"])
    assert check_document(document, disk_roots=["/srv/vm"]) == []


def test_a_long_schema_error_keeps_its_reason() -> None:
    name = "x" * 70
    with pytest.raises(NotExportable) as raised:
        to_manifest(observed(name=name))
    [line] = str(raised.value).splitlines()
    assert line.endswith("does not match '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'")

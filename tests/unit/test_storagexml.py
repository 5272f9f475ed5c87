"""Storage XML (controller.virt.storagexml): names, XML built and parsed, disk sources."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from controller.virt.storage_errors import InvalidName, InvalidRequest
from controller.virt.storagexml import (
    Backing,
    VolumeInfo,
    check_format,
    check_pool_path,
    check_volume_name,
    differences,
    dir_pool_xml,
    disk_sources,
    marker_name,
    parse_pool,
    parse_volume,
    volume_xml,
    whole_sectors,
)


@pytest.mark.parametrize("name", ["web-1-root", "a", "A9_x.y-z", "x" * 128, "a..b"])
def test_allowed_volume_names(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize("name", [
    "", ".", "..", "../escape", "x/y", "/abs", ".hidden", "-dash", "_under", "x" * 129,
    "sp ace", "new\nline", "nul\x00", "ünïcode", "web-1.reconcile-partial",
])
def test_refused_volume_names(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid volume name"):
        check_volume_name(name)


@pytest.mark.parametrize("path", ["relative", "/a/../b", "/a/", "/", "/a//b", ""])
def test_refused_pool_paths(path: str) -> None:
    with pytest.raises(InvalidName):
        check_pool_path(path)


def test_formats() -> None:
    assert check_format("qcow2") == "qcow2"
    with pytest.raises(InvalidRequest):
        check_format("vmdk")


def test_marker_name_is_itself_refused() -> None:
    with pytest.raises(InvalidName, match="markers"):
        check_volume_name(marker_name("web-1-root"))


@pytest.mark.parametrize(("given", "made"), [(0, 0), (1, 512), (512, 512), (513, 1024),
                                             (33554433, 33554944), (20 << 30, 20 << 30)])
def test_whole_sectors(given: int, made: int) -> None:
    assert whole_sectors(given) == made


def test_dir_pool_xml_is_what_virt_install_defines() -> None:
    root = ET.fromstring(dir_pool_xml(name="default", path="/var/lib/libvirt/images"))
    assert root.tag == "pool" and root.get("type") == "dir"
    assert root.findtext("name") == "default"
    assert root.findtext("target/path") == "/var/lib/libvirt/images"


def test_volume_xml_overlay() -> None:
    xml = volume_xml(name="web-1-root", capacity=1 << 30, format="qcow2",
                     backing=Backing(path="/p/debian.qcow2", format="qcow2"), mode=0o600)
    root = ET.fromstring(xml)
    assert root.findtext("name") == "web-1-root"
    assert root.find("capacity").text == str(1 << 30)  # type: ignore[union-attr]
    assert root.find("allocation").text == "0"  # type: ignore[union-attr]
    assert root.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert root.findtext("target/compat") == "1.1"
    assert root.findtext("target/permissions/mode") == "0600"
    assert root.findtext("backingStore/path") == "/p/debian.qcow2"


def test_volume_xml_cannot_be_injected() -> None:
    xml = volume_xml(name="a</name><x>", capacity=1, format="raw")
    assert ET.fromstring(xml).findtext("name") == "a</name><x>"


_VOLUME = """<volume type='file'>
  <name>ov.qcow2</name>
  <key>/pool/ov.qcow2</key>
  <capacity unit='bytes'>34603008</capacity>
  <allocation unit='KiB'>196</allocation>
  <target>
    <path>/pool/ov.qcow2</path>
    <format type='qcow2'/>
    <permissions><mode>0600</mode><owner>0</owner><group>0</group></permissions>
  </target>
  <backingStore>
    <path>/other/a.qcow2</path>
    <format type='qcow2'/>
  </backingStore>
</volume>"""


def test_parse_volume() -> None:
    info = parse_volume(_VOLUME, pool="p", partial=False)
    assert info == VolumeInfo(name="ov.qcow2", pool="p", path="/pool/ov.qcow2",
                              key="/pool/ov.qcow2", capacity=34603008, allocation=196 * 1024,
                              format="qcow2", backing=Backing("/other/a.qcow2", "qcow2"),
                              mode=0o600, partial=False)


def test_parse_pool_netfs_is_shared() -> None:
    xml = """<pool type='netfs'><name>nfs</name>
      <capacity unit='bytes'>100</capacity><allocation unit='bytes'>40</allocation>
      <available unit='bytes'>60</available>
      <source><host name='nas.example'/><dir path='/export/vm'/><format type='nfs'/></source>
      <target><path>/srv/nfs</path></target></pool>"""
    info = parse_pool(xml, active=True, autostart=False, persistent=True)
    assert (info.type, info.path, info.source) == ("netfs", "/srv/nfs", "nas.example:/export/vm")
    assert (info.capacity, info.allocation, info.available) == (100, 40, 60)
    assert info.shared


def test_parse_pool_dir_is_not_shared() -> None:
    xml = dir_pool_xml(name="default", path="/var/lib/libvirt/images")
    info = parse_pool(xml, active=False, autostart=False, persistent=True)
    assert not info.shared and info.source is None and info.capacity == 0


def _info(**fields: object) -> VolumeInfo:
    base: dict[str, object] = {"name": "v", "pool": "p", "path": "/p/v", "key": "/p/v",
                               "capacity": 1 << 30, "allocation": 0, "format": "qcow2",
                               "backing": None, "mode": None, "partial": False}
    base.update(fields)
    return VolumeInfo(**base)  # type: ignore[arg-type]


def test_differences() -> None:
    same = _info()
    assert differences(same, format="qcow2", capacity=1 << 30, backing=None) == ()
    assert differences(same, format="qcow2", capacity=1 << 20, backing=None) == ()  # larger
    assert differences(same, format="raw", capacity=2 << 30, backing=None) == (
        "format qcow2, wanted raw", f"capacity {1 << 30} bytes, wanted {2 << 30}")
    overlay = _info(backing=Backing("/img/a", "qcow2"))
    assert differences(overlay, format="qcow2", capacity=None,
                       backing=Backing("/img/../img/a", "qcow2")) == ()
    assert differences(overlay, format="qcow2", capacity=None, backing=None) == (
        "backed by /img/a, wanted no backing file",)
    assert differences(same, format="qcow2", capacity=None,
                       backing=Backing("/img/b", "qcow2")) == (
        "backed by nothing, wanted /img/b",)


def test_disk_sources_with_backing_chain() -> None:
    xml = """<domain><devices>
      <disk type='file' device='disk'><source file='/p/ov.qcow2'/>
        <backingStore type='file'><source file='/img/base.qcow2'/><backingStore/></backingStore>
        <target dev='vda'/></disk>
      <disk type='volume' device='cdrom'><source pool='p' volume='seed'/>
        <target dev='hdc'/></disk>
      <disk type='file' device='cdrom'><target dev='hdd'/></disk>
    </devices></domain>"""
    sources = disk_sources(xml)
    assert [(s.target, s.path, s.pool, s.volume, s.depth) for s in sources] == [
        ("vda", "/p/ov.qcow2", None, None, 0),
        ("vda", "/img/base.qcow2", None, None, 1),
        ("hdc", None, "p", "seed", 0),
    ]

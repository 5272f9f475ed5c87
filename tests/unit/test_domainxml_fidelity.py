"""Fidelity of the domain XML builder (issue 19): what a manifest models, what it keeps,
and the NUMA rule. The corpus check on the real libvirtd is tests/fidelity; these are the
same rules on small inputs, table by table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from controller import domainxml
from controller.domainxml import build_domain, parse_domain, scale_cells
from controller.manifests import schema
from controller.model import Disk, Interface, VMSpec

IMAGES = "/var/lib/libvirt/images"


def spec(**fields: object) -> VMSpec:
    base: dict[str, object] = {"name": "fid", "source": "fid.yaml", "memory_kib": 219100,
                               "current_memory_kib": 219100, "vcpus": 1, "type": "qemu"}
    base.update(fields)
    return VMSpec(**base)  # type: ignore[arg-type]


def domain(devices: str = "", *, head: str = "", vcpu: str = "<vcpu>1</vcpu>",
           memory: str = "<memory unit='KiB'>219100</memory>") -> str:
    return (f"<domain type='qemu'><name>fid</name>{memory}"
            f"<currentMemory unit='KiB'>219100</currentMemory>{vcpu}"
            f"<os><type arch='x86_64' machine='pc'>hvm</type></os>{head}"
            f"<devices>{devices}</devices></domain>")


def canonical(xml: str) -> str:
    root = ET.fromstring(xml)
    for metadata in root.findall("metadata"):
        root.remove(metadata)
    return ET.canonicalize(ET.tostring(root, encoding="unicode"), strip_text=True)


def adopt(xml: str) -> str:
    """Build from `xml` with the spec its own parse gives: what adoption defines."""
    config = parse_domain(xml)
    desired = spec(memory_kib=config.memory_kib, current_memory_kib=config.current_memory_kib,
                   vcpus=config.vcpus, disks=config.disks, interfaces=config.interfaces,
                   arch=config.arch, machine=config.machine, type=config.type)
    return build_domain(desired, xml)


# --- the rules agree with the schema ---------------------------------------------------------

def test_what_a_disk_may_be_is_what_the_schema_says() -> None:
    disk = schema()["properties"]["spec"]["properties"]["disks"]["items"]["properties"]
    assert tuple(disk["bus"]["enum"]) == domainxml.DISK_BUSES
    assert tuple(disk["format"]["enum"]) == domainxml.DISK_FORMATS
    assert disk["target"]["pattern"].replace("$", r"\Z") == domainxml.DISK_TARGET.pattern


# --- which disks and interfaces a manifest describes ----------------------------------------

FILE = ("<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        "<source file='{path}'/><target dev='{dev}' bus='{bus}'/>{ro}</disk>")


def file_disk(path: str = f"{IMAGES}/a.qcow2", dev: str = "vda", bus: str = "virtio",
              fmt: str = "qcow2", ro: str = "") -> str:
    return FILE.format(path=path, dev=dev, bus=bus, fmt=fmt, ro=ro)


@pytest.mark.parametrize(("xml", "note"), [
    (file_disk(), None),
    (file_disk(dev="hda", bus="ide"), None),
    (file_disk(dev="sdb", bus="sata", fmt="raw"), None),
    (file_disk(dev="sdc", bus="scsi", ro="<readonly/>"), None),
    (("<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
     "<source dev='/dev/HostVG/QEMUGuest1'/><target dev='vda' bus='virtio'/></disk>"),
     "disk vda: a block disk (/dev/HostVG/QEMUGuest1)"),
    (("<disk type='network' device='disk'><source protocol='rbd' name='pool/image'>"
     "<host name='mon1'/></source><target dev='vdb' bus='virtio'/></disk>"),
     "disk vdb: a network disk (pool/image)"),
    (("<disk type='volume' device='disk'><source pool='default' volume='v1'/>"
     "<target dev='vdc' bus='virtio'/></disk>"), None),  # a pool volume: modelled
    (("<disk type='volume' device='disk'><source volume='v1'/>"
     "<target dev='vdc' bus='virtio'/></disk>"),
     "disk vdc: a volume disk without a pool and a volume"),
    (("<disk type='block' device='lun'><source dev='/dev/sdz'/>"
     "<target dev='sda' bus='scsi'/></disk>"), "disk sda: a lun device"),
    (file_disk(dev="sda", bus="usb"), "disk sda: on the usb bus"),
    (file_disk(fmt="vmdk"), "disk vda: in vmdk format"),
    (file_disk(dev="vdb1"), "disk vdb1: not a whole-disk target name"),
    (file_disk(path="relative.img"), "disk vda: no absolute image path"),
    (file_disk(dev="sda", bus="sata", ro="<readonly/>"), "disk sda: read-only on the sata bus"),
    (("<disk type='file' device='cdrom'><source file='/x.iso'/><target dev='hdc' bus='ide'/>"
     "</disk>"), ""),
    ("<disk type='file' device='floppy'><target dev='fda' bus='fdc'/></disk>", ""),
])
def test_which_disks_are_modelled(xml: str, note: str | None) -> None:
    config = parse_domain(domain(xml))
    if note is None:
        assert len(config.disks) == 1 and config.kept == ()
    else:
        assert config.disks == ()
        assert config.kept == ((note,) if note else ())


def test_an_image_two_disks_share_is_kept_on_both() -> None:
    config = parse_domain(domain(file_disk(dev="vda") + file_disk(dev="vdb")))
    assert config.disks == ()
    assert config.kept == ((f"disk vda ({IMAGES}/a.qcow2): its image is used by 2 disks of "
                           "this domain"), (f"disk vdb ({IMAGES}/a.qcow2): its image is used by "
                           "2 disks of this domain"))


@pytest.mark.parametrize(("xml", "note"), [
    (("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>"
     "<model type='virtio'/></interface>"), None),
    ("<interface type='bridge'><source bridge='br0'/><model type='e1000'/></interface>", None),
    (("<interface type='direct'><mac address='52:54:00:00:00:02'/>"
     "<source dev='eth0' mode='bridge'/><model type='virtio'/></interface>"),
     "interface 0 (direct, 52:54:00:00:00:02): a direct interface"),
    ("<interface type='user'><model type='virtio'/></interface>",
     "interface 0 (user): a user interface"),
    (("<interface type='vhostuser'><source type='unix' path='/s' mode='client'/>"
     "<model type='virtio'/></interface>"), "interface 0 (vhostuser): a vhostuser interface"),
    (("<interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0000' "
     "bus='0x81' slot='0x10' function='0x2'/></source></interface>"),
     "interface 0 (hostdev): a hostdev interface"),
    ("<interface type='network'><source network='default'/></interface>",
     "interface 0 (network default): no model"),
])
def test_which_interfaces_are_modelled(xml: str, note: str | None) -> None:
    config = parse_domain(domain(xml))
    assert (len(config.interfaces), config.kept) == ((1, ()) if note is None else (0, (note,)))


# --- adoption changes nothing but the marker --------------------------------------------------

KEPT_EVERYTHING = domain(
    "<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>"
    "<source dev='/dev/HostVG/QEMUGuest1'/><target dev='vda' bus='virtio'/></disk>"
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
    f"<source file='{IMAGES}/opt.img' startupPolicy='optional'/>"
    "<target dev='vdb' bus='virtio' rotation_rate='1'/><serial>S1</serial>"
    "<iotune><total_bytes_sec>1000</total_bytes_sec></iotune></disk>"
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
    f"<source file='{IMAGES}/labelled.img'><seclabel model='dac' relabel='no'/></source>"
    "<target dev='hda' bus='ide'/></disk>"
    "<interface type='direct'><mac address='52:54:00:00:00:02'/>"
    "<source dev='eth0' mode='bridge'/><model type='virtio'/></interface>"
    "<interface type='network'><mac address='52:54:00:00:00:01'/>"
    "<source network='default' portgroup='web'/><model type='virtio'/>"
    "<bandwidth><inbound average='1000'/></bandwidth></interface>"
    "<interface type='user'><mac address='52:54:00:00:00:03'/><model type='e1000'/></interface>",
    vcpu="<vcpu placement='static' cpuset='0-1' current='2'>6</vcpu>",
    memory="<memory unit='KiB' dumpCore='off'>219100</memory>",
    head="<cputune><shares>2048</shares><vcpupin vcpu='0' cpuset='0'/></cputune>"
         "<numatune><memory mode='strict' nodeset='0'/></numatune>"
         "<memoryBacking><hugepages/></memoryBacking>"
         "<seclabel type='static' model='dac' relabel='yes'><label>+0:+0</label></seclabel>",
)


def test_adoption_keeps_every_element_and_attribute() -> None:
    assert canonical(adopt(KEPT_EVERYTHING)) == canonical(KEPT_EVERYTHING)


def test_a_memory_change_keeps_the_other_attributes_of_memory() -> None:
    built = build_domain(spec(memory_kib=438200, current_memory_kib=438200, vcpus=6,
                              disks=parse_domain(KEPT_EVERYTHING).disks,
                              interfaces=parse_domain(KEPT_EVERYTHING).interfaces),
                         KEPT_EVERYTHING)
    memory = ET.fromstring(built).find("memory")
    assert memory is not None and (memory.attrib, memory.text) == (
        {"unit": "KiB", "dumpCore": "off"}, "438200")
    assert canonical(built.replace("438200", "219100")) == canonical(KEPT_EVERYTHING)


def test_a_modelled_interface_after_a_kept_one_keeps_its_position() -> None:
    config = parse_domain(KEPT_EVERYTHING)
    assert [i.network for i in config.interfaces] == ["default"]
    moved = build_domain(spec(vcpus=6, disks=config.disks,
                              interfaces=(Interface(network="isolated"),
                                          Interface(bridge="br0"))), KEPT_EVERYTHING)
    nics = ET.fromstring(moved).findall("devices/interface")
    sources = [n.find("source") for n in nics]
    pairs = zip(nics, sources, strict=True)
    assert [(n.get("type"), s.attrib if s is not None else {}) for n, s in pairs] == [
        ("direct", {"dev": "eth0", "mode": "bridge"}), ("network", {"network": "isolated"}),
        ("user", {}), ("bridge", {"bridge": "br0"})]
    assert nics[1].find("bandwidth") is not None  # the rest of the NIC stays
    assert nics[1].find("mac").get("address") == "52:54:00:00:00:01"  # type: ignore[union-attr]


def test_removing_the_modelled_disks_leaves_the_kept_ones() -> None:
    built = build_domain(spec(vcpus=6), KEPT_EVERYTHING)
    disks = ET.fromstring(built).findall("devices/disk")
    assert [d.get("type") for d in disks] == ["block"]


def test_a_manifest_disk_on_a_kept_disk_target_moves_the_kept_one_off() -> None:
    built = build_domain(spec(vcpus=6, disks=(Disk(f"{IMAGES}/new.qcow2", "vda"),)),
                         KEPT_EVERYTHING)
    targets = {d.get("type"): d.find("target").get("dev")  # type: ignore[union-attr]
               for d in ET.fromstring(built).findall("devices/disk")}
    assert targets == {"block": "vdb", "file": "vda"}
    assert parse_domain(built).disks == (Disk(f"{IMAGES}/new.qcow2", "vda"),)


def test_a_shared_image_the_manifest_names_becomes_one_disk() -> None:
    shared = domain(file_disk(dev="vda") + file_disk(dev="vdb"))
    assert canonical(adopt(shared)) == canonical(shared)  # not named: both kept
    for target in ("vda", "vdb", "vdc"):
        wanted = (Disk(f"{IMAGES}/a.qcow2", target),)
        built = build_domain(spec(disks=wanted), shared)
        assert parse_domain(built).disks == wanted  # in one pass
        assert len(ET.fromstring(built).findall("devices/disk")) == 1


def test_a_changed_source_keeps_the_startup_policy() -> None:
    config = parse_domain(KEPT_EVERYTHING)
    disks = tuple(Disk(f"{IMAGES}/other.img", d.target, d.format, d.bus)
                  if d.target == "vdb" else d for d in config.disks)
    built = build_domain(spec(vcpus=6, disks=disks, interfaces=config.interfaces),
                         KEPT_EVERYTHING)
    [vdb] = [d for d in ET.fromstring(built).findall("devices/disk")
             if d.find("target").get("dev") == "vdb"]  # type: ignore[union-attr]
    assert vdb.find("source").attrib == {  # type: ignore[union-attr]
        "file": f"{IMAGES}/other.img", "startupPolicy": "optional"}
    assert vdb.find("target").attrib == {  # type: ignore[union-attr]
        "dev": "vdb", "bus": "virtio", "rotation_rate": "1"}


def test_a_changed_network_drops_the_portgroup_of_the_old_one() -> None:
    config = parse_domain(KEPT_EVERYTHING)
    built = build_domain(spec(vcpus=6, disks=config.disks,
                              interfaces=(Interface(network="other"),)), KEPT_EVERYTHING)
    [nic] = [n for n in ET.fromstring(built).findall("devices/interface")
             if n.get("type") == "network"]
    assert nic.find("source").attrib == {"network": "other"}  # type: ignore[union-attr]


def test_namespace_prefixes_survive_and_the_registry_is_restored() -> None:
    nova = domain(head="<metadata><nova:instance xmlns:nova='http://openstack.org/xmlns/"
                       "libvirt/nova/1.1'><nova:name>web</nova:name></nova:instance>"
                       "</metadata>")
    before = dict(ET._namespace_map)  # type: ignore[attr-defined]
    built = adopt(nova)
    assert "<nova:instance" in built and "<nova:name>web</nova:name>" in built
    assert "ns0:" not in built
    assert dict(ET._namespace_map) == before  # type: ignore[attr-defined]


# --- vCPUs ----------------------------------------------------------------------------------

HOTPLUG = domain(vcpu="<vcpu placement='static' current='2'>4</vcpu><vcpus>"
                      "<vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>"
                      "<vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>"
                      "<vcpu id='2' enabled='no' hotpluggable='yes'/>"
                      "<vcpu id='3' enabled='no' hotpluggable='yes'/></vcpus>",
                 head="<cpu><topology sockets='2' dies='1' cores='2' threads='1'/></cpu>")


def test_unchanged_vcpus_keep_current_and_the_vcpu_list() -> None:
    assert canonical(adopt(HOTPLUG)) == canonical(HOTPLUG)


def test_a_vcpu_change_drops_the_list_and_follows_with_sockets() -> None:
    root = ET.fromstring(build_domain(spec(vcpus=8), HOTPLUG))
    vcpu, topology = root.find("vcpu"), root.find("cpu/topology")
    assert vcpu is not None and topology is not None
    assert (vcpu.text, vcpu.attrib) == ("8", {"placement": "static", "current": "2"})
    assert root.find("vcpus") is None
    assert topology.attrib == {"sockets": "4", "dies": "1", "cores": "2", "threads": "1"}


# --- the NUMA rule ----------------------------------------------------------------------------

@pytest.mark.parametrize(("sizes", "total", "pages", "scaled"), [
    ([109550, 109550], 438200, [], [219100, 219100]),
    ([109550, 109550], 219101, [], [109551, 109550]),  # the odd KiB goes to the first cell
    ([1048576, 2097152, 3145728], 12582912, [], [2097152, 4194304, 6291456]),
    ([1048576, 1048576, 1048576], 4194304, [], [1398784, 1397760, 1397760]),  # whole MiB
    ([2097152, 2097152], 6291456, [1048576], [3145728, 3145728]),  # 1 GiB pages stay whole
    ([2097152, 2097152], 5242880, [1048576], [3145728, 2097152]),  # a 1 GiB page is whole
    ([1048576, 0], 2097152, [], [2097152, 0]),  # a memoryless node stays empty
    ([1024, 1024], 1, [], None),  # a cell would be empty
    ([], 1024, [], None),
    ([1024], 0, [], None),
])
def test_scale_cells(sizes: list[int], total: int, pages: list[int],
                     scaled: list[int] | None) -> None:
    result = scale_cells(sizes, total, pages)
    assert result == scaled
    if result is not None:
        assert sum(result) == total


NUMA = domain(head="<cpu><numa><cell id='0' cpus='0' memory='109550' unit='KiB'/>"
                   "<cell id='1' cpus='1' memory='107' unit='MiB' memAccess='shared'/>"
                   "</numa></cpu>",
              vcpu="<vcpu>2</vcpu>",
              memory="<memory unit='KiB'>219118</memory>")


def test_a_memory_change_scales_the_numa_cells() -> None:
    root = ET.fromstring(build_domain(spec(vcpus=2, memory_kib=438236,
                                           current_memory_kib=438236), NUMA))
    cells = [cell.attrib for cell in root.findall("cpu/numa/cell")]
    assert cells == [{"id": "0", "cpus": "0", "memory": "219100", "unit": "KiB"},
                     {"id": "1", "cpus": "1", "memory": "219136", "unit": "KiB",
                      "memAccess": "shared"}]
    assert parse_domain(ET.tostring(root, encoding="unicode")).memory_kib == 438236


def test_unchanged_memory_leaves_the_cells_as_written() -> None:
    assert canonical(adopt(NUMA)) == canonical(NUMA)


def test_hot_plugged_memory_is_not_scaled() -> None:
    """libvirt's <memory> is the cells plus the memory devices: only the cells scale."""
    dimm = domain("<memory model='dimm'><target><size unit='KiB'>524288</size><node>0</node>"
                  "</target></memory>",
                  head="<maxMemory slots='16' unit='KiB'>16777216</maxMemory>"
                       "<cpu><numa><cell id='0' cpus='0' memory='1048576' unit='KiB'/></numa>"
                       "</cpu>",
                  memory="<memory unit='KiB'>1572864</memory>")
    root = ET.fromstring(build_domain(spec(memory_kib=2621440, current_memory_kib=2621440),
                                      dimm))
    [cell] = root.findall("cpu/numa/cell")
    assert cell.get("memory") == "2097152"
    assert root.find("devices/memory/target/size").text == "524288"  # type: ignore[union-attr]

"""Networks and pools on a test host of our own (a real libvirtd in its own network
namespace, hosts.py): a real Debian guest that gets its reserved address from a NAT
network reconcile made, and a new one after a reservation changed live; the service
putting back a network and a pool stopped behind its back, on libvirt's events; prune of
orphan networks and pools, never of one a running guest uses.

All traffic stays inside the host's namespace: dnsmasq answers the guest on the
namespace's bridge, and the guest is read through its agent and libvirt's lease table,
never by sending it a packet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.service.support import ServiceProcess
from tests.support.guest import (
    agent_command,
    guest_exec,
    guest_image,
    make_seed_iso,
    real_guest_type,
    wait_for_agent,
)
from tests.support.libvirtd import VIRT_TYPE
from tests.support.netres import (
    bridge_index,
    dnsmasq_pid,
    free_subnet,
    host_address,
    nat_spec,
    network_active,
    network_doc,
    pool_doc,
    remove_networks,
    remove_pools,
)
from tests.support.waiting import wait_until

from .conftest import Hosts
from .hosts import NetnsHost

pytestmark = pytest.mark.e2e

RECONCILE = Path(sys.executable).parent / "reconcile"
BOOT_TIMEOUT = 900.0  # a deadline, not a wait: a quiet TCG boot takes ~90 s
MAC = "52:54:00:5e:10:01"


class Site:
    """One test's manifests, state and the host's private folders, and `reconcile`."""

    def __init__(self, root: Path, host: NetnsHost, prefix: str):
        self.host = host
        self.prefix = prefix
        self.manifests = root / "manifests"
        self.manifests.mkdir()
        self.state = root / "state"
        self.locks = root / "locks"
        #: the host's /var/lib/libvirt/images, seen from here
        self.images = host.base / "root/var/lib/libvirt/images"
        (self.manifests / "hosts.yaml").write_text(
            f"apiVersion: reconcile/v1\nkind: Hosts\nhosts: {{{host.name}: '{host.uri}'}}\n")

    def write(self, name: str, *documents: dict[str, Any]) -> None:
        (self.manifests / name).write_text(yaml.safe_dump_all(documents, sort_keys=False))

    def once(self, *extra: str, timeout: float = 600) -> tuple[int, dict[str, Any], str]:
        done = subprocess.run(
            [str(RECONCILE), "--once", "-o", "json", "-m", str(self.manifests), "--state-dir",
             str(self.state), "--lock-dir", str(self.locks), "--connect-timeout", "10",
             *extra], capture_output=True, text=True, timeout=timeout, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def site(tmp_path: Path, hosts: Hosts, prefix: str) -> Iterator[Site]:
    """kvm-1 as the one host; afterwards the prefix's networks and pools (and their
    folders) are gone from it too (the prefix fixture removes the domains first)."""
    host = hosts["kvm-1"]
    yield Site(tmp_path, host, prefix)
    host.destroy_all(prefix)
    remove_networks(host.conn(), prefix)
    remove_pools(host.conn(), prefix, folders=host.base / "root/var/lib/libvirt/images")
    for leftover in (host.base / "root/var/lib/libvirt/images").glob(f"{prefix}*"):
        leftover.unlink(missing_ok=True)


def by_name(report: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in report.get(key, [])}


def actions(entry: dict[str, Any]) -> list[str]:
    return [step["action"] for step in entry["steps"]]


def guest_xml(name: str, *, pool: str, volume: str, network: str, seed: str,
              serial: str) -> str:
    """The guest as an operator would define it by hand: its disk a volume reconcile will
    make, the seed on IDE (SeaBIOS), serial to a file and the guest agent's channel (what
    a manifest does not describe: adoption keeps it)."""
    domain = ET.Element("domain", type=real_guest_type())
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "512"
    ET.SubElement(domain, "vcpu").text = "1"
    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="volume", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", pool=pool, volume=volume)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "source", file=seed)
    ET.SubElement(cdrom, "target", dev="hdc", bus="ide")
    ET.SubElement(cdrom, "readonly")
    interface = ET.SubElement(devices, "interface", type="network")
    ET.SubElement(interface, "mac", address=MAC)
    ET.SubElement(interface, "source", network=network)
    ET.SubElement(interface, "model", type="virtio")
    for tag in ("serial", "console"):
        device = ET.SubElement(devices, tag, type="file")
        ET.SubElement(device, "source", path=serial)
        target = ET.SubElement(device, "target", port="0")
        if tag == "console":
            target.set("type", "serial")
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    return ET.tostring(domain, encoding="unicode")


def lease_of(conn: libvirt.virConnect, network: str, mac: str) -> str | None:
    """The address libvirt's lease table gives `mac` on `network` now."""
    for lease in conn.networkLookupByName(network).DHCPLeases():
        if lease.get("mac", "").lower() == mac:
            return str(lease.get("ipaddr"))
    return None


def agent_addresses(dom: Any, mac: str) -> tuple[str | None, list[str]]:
    """The guest's interface with `mac` (its name) and its IPv4 addresses, from the agent."""
    for interface in agent_command(dom, {"execute": "guest-network-get-interfaces"}):
        if interface.get("hardware-address", "").lower() == mac:
            return interface.get("name"), [
                address["ip-address"] for address in interface.get("ip-addresses", [])
                if address.get("ip-address-type") == "ipv4"]
    return None, []


def _addressed(dom: Any) -> tuple[str, list[str]] | None:
    iface, addresses = agent_addresses(dom, MAC)
    return (iface, addresses) if iface and addresses else None


def _diagnose(dom: Any, seen: object) -> str:
    """What the guest's own view adds to a failure: its addresses and dhclients."""
    shown = guest_exec(dom, ["/bin/sh", "-c", "ip -4 addr; ps ax | grep [d]hclient; "
                                              "tail -n 20 /var/log/syslog 2>/dev/null"],
                       timeout=60)
    return f"{seen}\n--- in the guest:\n{shown.stdout}{shown.stderr}"


@pytest.mark.guest
def test_a_real_guest_gets_its_reserved_address_and_a_changed_one_live(site: Site) -> None:
    base = guest_image()
    sha256 = base.with_name(base.name + ".sha256").read_text().split()[0]
    conn = site.host.conn()
    prefix = site.prefix
    subnet = free_subnet(conn, netns=site.host.netns)
    network, bridge, pool = prefix + "lab", prefix + "br", prefix + "store"
    name = prefix + "guest"
    seed = site.images / f"{prefix}seed.iso"
    make_seed_iso(seed, user_data="#cloud-config\nssh_genkeytypes: [ed25519]\n",
                  meta_data=f"instance-id: {name}\nlocal-hostname: {name}\n")
    conn.defineXML(guest_xml(name, pool=pool, volume=prefix + "root", network=network,
                             seed=f"/var/lib/libvirt/images/{seed.name}",
                             serial=f"/var/lib/libvirt/images/{prefix}serial.log"))
    host = site.host.name
    site.write("resources.yaml",
               pool_doc(pool, path=f"/var/lib/libvirt/images/{pool}", host=host),
               {"apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": "debian"},
                "spec": {"url": f"file://{base}", "sha256": sha256, "pool": pool}},
               network_doc(network, host=host, **nat_spec(subnet, bridge, hosts=[(MAC, 11)])))
    site.write("guest.yaml", {
        "apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": name},
        "spec": {"memory": "512MiB", "vcpus": 1, "type": real_guest_type(), "host": host,
                 "adopt": True, "stopTimeout": 0,
                 "disks": [{"volume": prefix + "root", "pool": pool, "image": "debian",
                            "target": "vda"}],
                 "interfaces": [{"network": network, "mac": MAC}]}})

    # one pass: the pool, the image imported into it, the network, then the VM adopted
    # (its volume made from the image) and started
    code, report, stderr = site.once()
    assert code == 0, (report, stderr)
    assert actions(by_name(report, "pools")[pool])[0] == "define-pool"
    assert by_name(report, "images")["debian"]["result"] == "converged"
    assert actions(by_name(report, "networks")[network])[0] == "define-network"
    vm = by_name(report, "vms")[name]
    assert vm["result"] == "converged" and "create-volume" in actions(vm)
    dom = conn.lookupByName(name)
    reserved = host_address(subnet, 11)

    started = time.monotonic()
    wait_for_agent(dom, BOOT_TIMEOUT)
    booted = time.monotonic() - started
    wait_until(lambda: lease_of(conn, network, MAC) == reserved, 120, interval=1,
               what=f"the lease of {MAC} to be {reserved}")
    found = wait_until(lambda: _addressed(dom), 120, interval=1,
                       what="the guest's address (agent)")
    assert found is not None
    iface, addresses = found
    assert addresses == [reserved], _diagnose(dom, addresses)

    # the reservation changes: live, the same dnsmasq on the same bridge
    root = site.host.base / "root"
    pid, index = dnsmasq_pid(network, root=root), bridge_index(bridge, netns=site.host.netns)
    assert pid is not None and index is not None
    site.write("resources.yaml",
               pool_doc(pool, path=f"/var/lib/libvirt/images/{pool}", host=host),
               {"apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": "debian"},
                "spec": {"url": f"file://{base}", "sha256": sha256, "pool": pool}},
               network_doc(network, host=host, **nat_spec(subnet, bridge, hosts=[(MAC, 21)])))
    code, report, stderr = site.once()
    assert code == 0, (report, stderr)
    entry = by_name(report, "networks")[network]
    assert actions(entry) == ["update-network", "define-network"], entry
    assert dnsmasq_pid(network, root=root) == pid
    assert bridge_index(bridge, netns=site.host.netns) == index
    assert network_active(conn, network)
    assert by_name(report, "vms")[name]["result"] == "unchanged"

    # the guest sees it at its next lease: ifupdown releases the lease and asks again
    moved = host_address(subnet, 21)
    renewed = guest_exec(dom, ["/bin/sh", "-c", f"ifdown {iface}; ifup {iface}"], timeout=180)
    assert renewed.exit_code == 0, _diagnose(dom, renewed)
    try:
        wait_until(lambda: agent_addresses(dom, MAC)[1] == [moved], 120, interval=1,
                   what=f"the guest's address to be {moved}")
    except AssertionError as error:
        raise AssertionError(_diagnose(dom, error)) from None
    wait_until(lambda: lease_of(conn, network, MAC) == moved, 60, interval=1,
               what=f"the lease of {MAC} to be {moved}")
    print(f"\nguest agent up {booted:.0f} s after the start; lease {reserved} → {moved}")


def test_the_service_puts_back_a_network_and_a_pool_stopped_behind_its_back(
        site: Site) -> None:
    conn = site.host.conn()
    subnet = free_subnet(conn, netns=site.host.netns)
    network, pool = site.prefix + "lab", site.prefix + "store"
    folder = f"/var/lib/libvirt/images/{pool}"
    (site.manifests / "hosts.yaml").unlink()  # the host as the -c connection
    site.write("resources.yaml", pool_doc(pool, path=folder),
               network_doc(network, **nat_spec(subnet, site.prefix + "br")))
    service = ServiceProcess(manifests=site.manifests, uri=site.host.uri,
                             lock_dir=site.locks, args=("--resync", "3600"))
    try:
        service.wait_ready(120)
        # The first reconcile of each is over (it re-reads until converged, so a destroy
        # during it would be undone by it, not by an event).
        service.wait_log(rf"network:{network}: converged .*start-network.* after resync", 60)
        service.wait_log(rf"pool:{pool}: converged .*start-pool.* after resync", 60)
        assert network_active(conn, network)
        assert conn.storagePoolLookupByName(pool).isActive()

        # Put back on an event, not a resync (an hour away). Which event the line names
        # is a race: the 'defined' or 'started' of its own start may still be queued when
        # the network is destroyed, and then that reconcile is the one that finds it
        # stopped. Before the destroy, no event-driven reconcile starts anything.
        conn.networkLookupByName(network).destroy()
        service.wait_log(rf"network:{network}: converged .*start-network.* after libvirt "
                         r"event '\w+'", 30)
        assert network_active(conn, network)

        conn.storagePoolLookupByName(pool).destroy()
        service.wait_log(rf"pool:{pool}: converged .*start-pool.* after libvirt event "
                         r"'\w+'", 30)
        assert conn.storagePoolLookupByName(pool).isActive()
    finally:
        assert service.stop() == 0, service.log


def test_prune_removes_orphan_networks_and_pools_but_not_one_a_guest_uses(
        site: Site) -> None:
    conn = site.host.conn()
    subnet = free_subnet(conn, netns=site.host.netns)
    busy, idle, pool = site.prefix + "busy", site.prefix + "idle", site.prefix + "store"
    other = free_subnet(conn, netns=site.host.netns)
    while other.overlaps(subnet):
        other = free_subnet(conn, netns=site.host.netns)
    host = site.host.name
    site.write("resources.yaml",
               network_doc(busy, host=host, **nat_spec(subnet, site.prefix + "b1")),
               network_doc(idle, host=host, **nat_spec(other, site.prefix + "b2")),
               pool_doc(pool, host=host, path=f"/var/lib/libvirt/images/{pool}"))
    code, report, _ = site.once()
    assert code == 0
    # a guest reconcile does not manage, running on one of them
    guest = site.prefix + "guest"
    conn.defineXML(
        f"<domain type='{VIRT_TYPE}'><name>{guest}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        f"<interface type='network'><source network='{busy}'/><model type='virtio'/>"
        "</interface><console type='pty'/></devices></domain>").create()

    (site.manifests / "resources.yaml").unlink()
    site.write("keep.yaml", {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
                             "metadata": {"name": site.prefix + "keep"},
                             "spec": {"host": host, "state": "stopped", "memory": 64,
                                      "vcpus": 1, "type": VIRT_TYPE}})
    code, report, _ = site.once()
    assert code == 0
    assert {entry["name"]: entry.get("orphan") for entry in report["networks"]} == {
        busy: True, idle: True}
    assert network_active(conn, busy) and network_active(conn, idle)

    code, report, _ = site.once("--prune")
    assert code == 1
    results = {entry["name"]: (entry["result"], entry["error"])
               for entry in report["networks"] + report["pools"]}
    assert results == {
        busy: ("failed", f"network '{busy}' is in use by running domain(s) {guest}: not "
                         "removed (a network a running domain uses is never destroyed)"),
        idle: ("pruned", None), pool: ("pruned", None)}
    assert network_active(conn, busy)
    assert idle not in [n.name() for n in conn.listAllNetworks(0)]
    assert pool not in [p.name() for p in conn.listAllStoragePools(0)]
    assert (site.images / pool).is_dir()  # a pool's folder stays

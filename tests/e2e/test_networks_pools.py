"""Networks and storage pools on the real libvirtd, through the installed command: a NAT
network with DHCP reservations changed live (dnsmasq is reloaded, never the network
restarted), a restart that waits for the running guest, a dir pool made and used by a
volume disk and never removed with it, adoption of hand-made ones with exports that
change nothing, and the bad input that touches nothing.

Every network, pool, bridge and folder is named with the test's prefix ("t-<8 hex>-")
and removed afterwards; subnets are /24s in 10.200-254.x that nothing on the machine
uses (read from `ip` and libvirt). No packet is sent to any address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.command import OnceRunner, Runner
from tests.support.disks import IMAGES
from tests.support.domains import define_unmanaged, must_read, remove_domains
from tests.support.manifests import Manifests, VMBuilder
from tests.support.netres import (
    bridge_index,
    define_network,
    dnsmasq_hosts,
    dnsmasq_pid,
    free_subnet,
    host_address,
    nat_spec,
    network_active,
    network_config,
    network_doc,
    pool_config,
    pool_doc,
    remove_networks,
    remove_pools,
)
from tests.support.waiting import wait_until

MAC1, MAC2 = "52:54:00:5e:00:01", "52:54:00:5e:00:02"


@pytest.fixture
def resources(conn: libvirt.virConnect, prefix: str) -> Iterator[str]:
    """The prefix; afterwards the prefix's domains (first: they hold the network and
    the volumes), networks and pools are gone, and the pools' folders with them."""
    yield prefix
    remove_domains(conn, prefix)
    remove_networks(conn, prefix)
    remove_pools(conn, prefix, folders=IMAGES)


@pytest.fixture
def subnet(conn: libvirt.virConnect) -> ipaddress.IPv4Network:
    return free_subnet(conn)


def networks(result: object) -> dict[str, dict[str, object]]:
    report = result.report  # type: ignore[attr-defined]
    return {entry["name"]: entry for entry in report.get("networks", [])}


def pools(result: object) -> dict[str, dict[str, object]]:
    report = result.report  # type: ignore[attr-defined]
    return {entry["name"]: entry for entry in report.get("pools", [])}


def actions(entry: dict[str, object]) -> list[str]:
    return [step["action"] for step in entry["steps"]]  # type: ignore[attr-defined]


def test_a_nat_network_with_reservations_changes_them_live(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner) -> None:
    name, bridge = resources + "lab", resources + "br"
    manifests.write("lab.yaml", network_doc(name, **nat_spec(
        subnet, bridge, hosts=[(MAC1, 11)], autostart=True)))
    first = once(check_exit=0)
    assert actions(networks(first)[name]) == [
        "define-network", "autostart-network", "start-network"]
    assert network_active(conn, name)
    saved = network_config(conn, name, saved=True)
    assert saved is not None and saved.managed and saved.mark is not None
    assert saved.mark.source == "lab.yaml"
    assert f"{MAC1},{host_address(subnet, 11)}" in dnsmasq_hosts(name)
    assert conn.networkLookupByName(name).autostart()
    again = once(check_exit=0)
    assert networks(again)[name]["result"] == "unchanged"

    pid, index = dnsmasq_pid(name), bridge_index(bridge)
    assert pid is not None and index is not None
    manifests.write("lab.yaml", network_doc(name, **nat_spec(
        subnet, bridge, hosts=[(MAC1, 21), (MAC2, 22)], autostart=True)))
    changed = once(check_exit=0)
    entry = networks(changed)[name]
    assert entry["result"] == "converged"
    assert actions(entry) == ["update-network", "update-network", "define-network"]
    hosts = dnsmasq_hosts(name)
    assert f"{MAC1},{host_address(subnet, 21)}" in hosts
    assert f"{MAC2},{host_address(subnet, 22)}" in hosts
    # live: the same dnsmasq (reloaded, not restarted) on the same bridge
    assert dnsmasq_pid(name) == pid and bridge_index(bridge) == index
    live, saved = network_config(conn, name), network_config(conn, name, saved=True)
    assert live is not None and saved is not None
    assert {host.ip for host in live.hosts} == {host.ip for host in saved.hosts} == {
        host_address(subnet, 21), host_address(subnet, 22)}
    assert networks(once(check_exit=0))[name]["result"] == "unchanged"

    manifests.write("lab.yaml", network_doc(name, **nat_spec(subnet, bridge, autostart=True)))
    removed = networks(once(check_exit=0))[name]
    assert actions(removed) == ["update-network", "update-network", "define-network"]
    assert MAC1 not in dnsmasq_hosts(name) and dnsmasq_pid(name) == pid


def test_a_change_that_needs_a_restart_waits_for_the_running_guest(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner, vm: VMBuilder) -> None:
    name, bridge = resources + "lab", resources + "br"
    manifests.write("lab.yaml", network_doc(name, **nat_spec(subnet, bridge)))
    manifests.write("guest.yaml", vm("guest", interfaces=[{"network": name}]))
    once(check_exit=0)
    assert must_read(conn, resources + "guest").running
    index = bridge_index(bridge)

    moved = ipaddress.IPv4Network(f"{subnet.network_address}/25")  # a smaller subnet
    spec = nat_spec(subnet, bridge)
    spec["ipv4"] = {"address": f"{host_address(subnet, 1)}/25",
                    "dhcp": {"start": host_address(subnet, 50), "end": host_address(subnet, 60)}}
    manifests.write("lab.yaml", network_doc(name, **spec))
    pending = once(check_exit=0)
    entry = networks(pending)[name]
    assert entry["result"] == "restart-pending"
    assert actions(entry) == ["define-network"]  # saved at once, the live one kept
    saved, live = network_config(conn, name, saved=True), network_config(conn, name)
    assert saved is not None and saved.cidr == f"{host_address(subnet, 1)}/25"
    assert live is not None and live.cidr == f"{host_address(subnet, 1)}/24"
    assert bridge_index(bridge) == index and must_read(conn, resources + "guest").running
    assert networks(once(check_exit=0))[name]["result"] == "restart-pending"

    # the guest stops in one pass (networks go first: still pending), the next restarts it
    manifests.write("guest.yaml", vm("guest", state="stopped", interfaces=[{"network": name}]))
    once(check_exit=0)
    restarted = networks(once(check_exit=0))[name]
    assert restarted["result"] == "converged"
    assert actions(restarted) == ["stop-network", "start-network"]
    live = network_config(conn, name)
    assert live is not None and live.cidr == f"{host_address(subnet, 1)}/25"
    assert ipaddress.IPv4Network(live.cidr, strict=False) == moved


def test_removing_a_network_a_running_guest_uses_is_refused_and_touches_nothing(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner, virt_type: str) -> None:
    name, bridge = resources + "lab", resources + "br"
    manifests.write("lab.yaml", network_doc(name, **nat_spec(subnet, bridge)))
    once(check_exit=0)
    guest = resources + "guest"
    define_unmanaged(conn, guest, virt_type)
    dom = conn.lookupByName(guest)
    dom.attachDeviceFlags(f"<interface type='network'><source network='{name}'/>"
                          "<model type='virtio'/></interface>",
                          libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    dom.create()
    index = bridge_index(bridge)
    manifests.write("lab.yaml", network_doc(name, state="absent"))
    result = once(check_exit=1)
    entry = networks(result)[name]
    assert entry["result"] == "failed" and entry["steps"] == []
    assert entry["error"] == (f"network '{name}' is in use by running domain(s) {guest}: not "
                              "removed (a network a running domain uses is never destroyed)")
    assert network_active(conn, name) and bridge_index(bridge) == index
    assert must_read(conn, guest).running


def test_a_dir_pool_is_made_used_by_a_volume_and_never_removed_with_it(
        conn: libvirt.virConnect, resources: str, manifests: Manifests, once: OnceRunner,
        vm: VMBuilder) -> None:
    name, folder = resources + "store", IMAGES / (resources + "store")
    manifests.write("store.yaml", pool_doc(name, path=str(folder), autostart=True))
    manifests.write("guest.yaml", vm("guest", disks=[
        {"volume": resources + "root", "pool": name, "size": "16MiB"}]))
    first = once(check_exit=0)
    assert actions(pools(first)[name]) == [
        "define-pool", "build-pool", "start-pool", "autostart-pool"]
    assert first.vms[resources + "guest"]["result"] == "converged"
    config = pool_config(conn, name)
    assert config is not None and config.managed and config.path == str(folder)
    assert (folder / (resources + "root")).is_file()
    disk = must_read(conn, resources + "guest").saved_xml
    assert f"pool='{name}'" in disk and f"volume='{resources}root'" in disk
    assert pools(once(check_exit=0))[name]["result"] == "unchanged"

    manifests.write("store.yaml", pool_doc(name, state="absent"))
    manifests.write("guest.yaml", vm("guest", state="absent"))
    refused = once(check_exit=1)
    entry = pools(refused)[name]
    assert entry["result"] == "failed"
    assert entry["error"] == (f"storage pool '{name}' holds 1 volume(s) in {folder}: it stays "
                              "defined and active (a pool is never deleted with its volumes)")
    assert conn.storagePoolLookupByName(name).isActive()
    assert (folder / (resources + "root")).is_file()

    conn.storagePoolLookupByName(name).storageVolLookupByName(resources + "root").delete(0)
    removed = pools(once(check_exit=0))[name]
    assert actions(removed) == ["stop-pool", "undefine-pool"]
    assert pool_config(conn, name) is None
    assert folder.is_dir()  # the folder stays


def test_export_and_adopt_a_hand_made_network_and_pool_change_nothing(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner, run: Runner) -> None:
    name, bridge, pool = resources + "lab", resources + "br", resources + "store"
    define_network(conn, name, subnet, bridge, hosts=[(MAC1, 11)])
    folder = IMAGES / pool
    made = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{pool}</name><target><path>{folder}</path></target></pool>", 0)
    made.build(0)
    made.create(0)
    pid, index = dnsmasq_pid(name), bridge_index(bridge)

    exported = run("export", "--network", name, "--pool", pool, check_exit=0)
    assert "adopt: true" in exported.stdout
    (manifests.path / "adopted.yaml").write_text(exported.stdout + "\n")
    adopted = once(check_exit=0)
    assert actions(networks(adopted)[name]) == ["define-network"]
    assert [step["reason"] for step in networks(adopted)[name]["steps"]] == [  # type: ignore[attr-defined]
        "managed no → yes"]
    assert actions(pools(adopted)[pool]) == ["define-pool"]
    saved = network_config(conn, name, saved=True)
    assert saved is not None and saved.managed
    config = pool_config(conn, pool)
    assert config is not None and config.managed
    # nothing else happened: the same dnsmasq, bridge, reservations; both still active
    assert dnsmasq_pid(name) == pid and bridge_index(bridge) == index
    assert f"{MAC1},{host_address(subnet, 11)}" in dnsmasq_hosts(name)
    assert conn.storagePoolLookupByName(pool).isActive()
    second = once(check_exit=0)
    assert networks(second)[name]["result"] == "unchanged"
    assert pools(second)[pool]["result"] == "unchanged"


def test_an_unmanaged_network_is_a_conflict_and_its_vm_is_not_created(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner, vm: VMBuilder) -> None:
    name, bridge = resources + "lab", resources + "br"
    define_network(conn, name, subnet, bridge)
    manifests.write("lab.yaml", network_doc(name, **nat_spec(subnet, bridge)))
    manifests.write("guest.yaml", vm("guest", interfaces=[{"network": name}]))
    result = once(check_exit=1)
    assert networks(result)[name]["result"] == "conflict"
    assert result.result(resources + "guest") == "failed"
    assert result.vms[resources + "guest"]["error"].startswith(f"network {name} conflict: ")
    saved = network_config(conn, name, saved=True)
    assert saved is not None and not saved.managed
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(resources + "guest")


# --- bad input: one clear line, exit 2 (invalid) or 1 (run time), nothing touched -------------

def _nothing_of(conn: libvirt.virConnect, prefix: str) -> None:
    assert not [n.name() for n in conn.listAllNetworks(0) if n.name().startswith(prefix)]
    assert not [p.name() for p in conn.listAllStoragePools(0) if p.name().startswith(prefix)]
    assert not [d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix)]


def test_bad_networks_and_pools_are_invalid_and_touch_nothing(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, run: Runner, vm: VMBuilder) -> None:
    a, b = resources + "a", resources + "b"
    inside = ipaddress.IPv4Network(f"{subnet.network_address}/25")
    manifests.write("overlap.yaml", network_doc(a, **nat_spec(subnet, resources + "b1")),
                    network_doc(b, mode="isolated",
                                ipv4={"address": f"{host_address(inside, 1)}/25"}))
    spec = nat_spec(subnet, resources + "b2")
    spec["ipv4"]["dhcp"]["end"] = str(subnet.broadcast_address + 5)
    manifests.write("range.yaml", network_doc(resources + "c", **spec))
    manifests.write("mac.yaml", network_doc(resources + "d", **nat_spec(
        subnet, resources + "b3", hosts=[(MAC1, 11), (MAC1, 12)])))
    outside = nat_spec(subnet, resources + "b4")
    outside["dhcpHosts"] = [{"mac": MAC2, "ip": "192.0.2.77"}]
    manifests.write("outside.yaml", network_doc(resources + "e", **outside))
    manifests.write("pool.yaml", pool_doc(resources + "p", path="/srv/" + resources + "p"))
    manifests.write("guest.yaml", vm("guest", state="stopped"))
    result = run("--once", check_exit=2)
    lines = [line for line in result.stdout.splitlines() if line.startswith("invalid:")]
    expected = [
        f"overlap.yaml[0]: spec.ipv4.address: {subnet} overlaps {inside} of network '{b}'",
        f"overlap.yaml[1]: spec.ipv4.address: {inside} overlaps {subnet} of network '{a}'",
        f"range.yaml[0]: spec.ipv4.dhcp.end: {subnet.broadcast_address + 5} is outside the "
        f"subnet {subnet}",
        "mac.yaml[0]: spec.dhcpHosts[1].mac: mac 52:54:00:5e:00:01 is already reserved by "
        "dhcpHosts[0]",
        f"outside.yaml[0]: spec.dhcpHosts[0].ip: 192.0.2.77 is outside the subnet {subnet}",
        f"pool.yaml[0]: spec.path: /srv/{resources}p is outside the allowed roots",
    ]
    for want in expected:
        assert sum(line.startswith(f"invalid: {want}") for line in lines) == 1, (want, lines)
    assert len(lines) == len(expected), lines
    assert "Traceback" not in result.stderr
    # the valid VM still converged; no network or pool was made
    assert not must_read(conn, resources + "guest").running
    assert not [n.name() for n in conn.listAllNetworks(0) if n.name().startswith(resources)]
    assert not [p.name() for p in conn.listAllStoragePools(0)
                if p.name().startswith(resources)]
    assert not Path("/srv", resources + "p").exists()


def test_a_bridge_that_does_not_exist_fails_at_run_time_and_makes_nothing(
        conn: libvirt.virConnect, resources: str, manifests: Manifests, once: OnceRunner,
        vm: VMBuilder) -> None:
    name = resources + "lan"
    manifests.write("lan.yaml", network_doc(name, mode="bridge", bridge=resources + "nob"))
    manifests.write("guest.yaml", vm("guest", interfaces=[{"network": name}]))
    result = once(check_exit=1)
    entry = networks(result)[name]
    assert entry["error"] == (f"host bridge {resources}nob does not exist: a bridge network "
                              "attaches to an existing host bridge (nothing was changed)")
    assert result.vms[resources + "guest"]["error"] == f"network {name} failed: {entry['error']}"
    _nothing_of(conn, resources)


def test_a_bridge_network_on_an_existing_bridge(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner) -> None:
    nat, lan, bridge = resources + "lab", resources + "lan", resources + "br"
    # the host bridge: one libvirt makes for its own NAT network, nothing else on the host
    manifests.write("lab.yaml", network_doc(nat, **nat_spec(subnet, bridge)))
    once(check_exit=0)
    manifests.write("lan.yaml", network_doc(lan, mode="bridge", bridge=bridge))
    result = once(check_exit=0)
    assert networks(result)[lan]["result"] == "converged"
    config = network_config(conn, lan)
    assert config is not None and (config.mode, config.bridge) == ("bridge", bridge)
    wait_until(lambda: network_active(conn, lan), 10, what=f"{lan} to be active")


def test_a_dry_run_plans_pool_network_and_vm_and_makes_nothing(
        conn: libvirt.virConnect, resources: str, subnet: ipaddress.IPv4Network,
        manifests: Manifests, once: OnceRunner, vm: VMBuilder) -> None:
    name, pool = resources + "lab", resources + "store"
    manifests.write("all.yaml", pool_doc(pool, path=str(IMAGES / pool)),
                    network_doc(name, **nat_spec(subnet, resources + "br")),
                    vm("guest", interfaces=[{"network": name}],
                       disks=[{"volume": resources + "root", "pool": pool, "size": "8MiB"}]))
    planned = once("--dry-run", check_exit=3)
    assert pools(planned)[pool]["result"] == "planned"
    assert networks(planned)[name]["result"] == "planned"
    assert planned.result(resources + "guest") == "planned"
    _nothing_of(conn, resources)
    assert not (IMAGES / pool).exists()


def test_a_dry_run_counts_the_volumes_of_a_pool_to_remove_and_changes_nothing(
        conn: libvirt.virConnect, resources: str, manifests: Manifests,
        once: OnceRunner) -> None:
    name, folder = resources + "store", IMAGES / (resources + "store")
    manifests.write("store.yaml", pool_doc(name, path=str(folder)))
    once(check_exit=0)
    (folder / "made-by-hand").write_bytes(b"x")  # outside libvirt: seen after a refresh only
    conn.storagePoolLookupByName(name).refresh(0)
    manifests.write("store.yaml", pool_doc(name, state="absent"))
    planned = pools(once("--dry-run", check_exit=1))[name]
    assert planned["result"] == "failed"
    assert "holds 1 volume(s)" in str(planned["error"])
    assert conn.storagePoolLookupByName(name).isActive()
    (folder / "made-by-hand").unlink()
    conn.storagePoolLookupByName(name).refresh(0)
    planned = pools(once("--dry-run", check_exit=3))[name]
    assert (planned["result"], actions(planned)) == ("planned", ["stop-pool", "undefine-pool"])
    assert conn.storagePoolLookupByName(name).isActive()

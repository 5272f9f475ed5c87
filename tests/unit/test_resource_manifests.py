"""Network and StoragePool documents: what the loader makes of them, and every kind of
bad input as one invalid entry (file, document, field, reason), the other documents
still loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.manifests import check_resource, load_directory
from controller.resourcemodel import DhcpHost, NetworkMode, NetworkSpec, PoolSpec, Presence

NAT = {"bridge": "virbr-lab", "ipv4": {"address": "192.168.150.1/24",
                                        "dhcp": {"start": "192.168.150.100",
                                                 "end": "192.168.150.200"}},
       "dhcpHosts": [{"mac": "52:54:00:00:15:01", "ip": "192.168.150.11", "name": "web-1"}],
       "autostart": True}


def network(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "reconcile/v1", "kind": "Network", "metadata": {"name": name},
            "spec": spec}


def pool(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "reconcile/v1", "kind": "StoragePool", "metadata": {"name": name},
            "spec": spec}


def vm(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": name},
            "spec": {"memory": 64, "vcpus": 1, **spec}}


def load(tmp_path: Path, *documents: dict[str, object], roots: tuple[str, ...] = ()
         ) -> tuple[list[str], object]:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "all.yaml").write_text(yaml.safe_dump_all(documents))
    result = load_directory(str(folder), disk_roots=roots or (str(tmp_path),))
    return [str(entry) for entry in result.invalid], result


def test_a_nat_network_and_a_pool_become_specs(tmp_path: Path) -> None:
    invalid, result = load(tmp_path, network("lab", **NAT),
                           pool("vmstore", path=str(tmp_path / "vmstore"), autostart=True))
    assert invalid == []
    assert result.networks == {"lab": NetworkSpec(  # type: ignore[attr-defined]
        name="lab", source="all.yaml", mode=NetworkMode.NAT, bridge="virbr-lab",
        address="192.168.150.1", prefix=24, dhcp=("192.168.150.100", "192.168.150.200"),
        hosts=(DhcpHost("52:54:00:00:15:01", "192.168.150.11", "web-1"),), autostart=True)}
    assert result.pools == {"vmstore": PoolSpec(  # type: ignore[attr-defined]
        name="vmstore", source="all.yaml", path=str(tmp_path / "vmstore"), autostart=True)}


def test_macs_are_lower_case_and_absent_needs_nothing_else(tmp_path: Path) -> None:
    invalid, result = load(tmp_path, network("lab", ipv4={"address": "10.9.0.1/16"},
                                             dhcpHosts=[{"mac": "52:54:00:AB:CD:EF",
                                                         "ip": "10.9.3.4"}]),
                           network("old", state="absent"), pool("gone", state="absent"))
    assert invalid == []
    assert result.networks["lab"].hosts == (  # type: ignore[attr-defined]
        DhcpHost("52:54:00:ab:cd:ef", "10.9.3.4"),)
    assert result.networks["old"].state is Presence.ABSENT  # type: ignore[attr-defined]
    assert result.pools["gone"].state is Presence.ABSENT  # type: ignore[attr-defined]


BAD_NETWORKS = [
    ("a DHCP range outside the subnet",
     [network("lab", ipv4={"address": "192.168.150.1/24",
                           "dhcp": {"start": "192.168.151.10", "end": "192.168.150.20"}})],
     "all.yaml[0]: spec.ipv4.dhcp.start: 192.168.151.10 is outside the subnet "
     "192.168.150.0/24"),
    ("a range ending outside",
     [network("lab", ipv4={"address": "192.168.150.1/25",
                           "dhcp": {"start": "192.168.150.10", "end": "192.168.150.200"}})],
     "all.yaml[0]: spec.ipv4.dhcp.end: 192.168.150.200 is outside the subnet "
     "192.168.150.0/25"),
    ("a range backwards",
     [network("lab", ipv4={"address": "10.1.1.1/24",
                           "dhcp": {"start": "10.1.1.90", "end": "10.1.1.10"}})],
     "all.yaml[0]: spec.ipv4.dhcp: the range starts at 10.1.1.90, after its end 10.1.1.10"),
    ("a range over the host's own address",
     [network("lab", ipv4={"address": "10.1.1.50/24",
                           "dhcp": {"start": "10.1.1.10", "end": "10.1.1.90"}})],
     "all.yaml[0]: spec.ipv4.dhcp: the range 10.1.1.10-10.1.1.90 holds the host's own "
     "address 10.1.1.50"),
    ("a reservation outside the subnet",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:01", "ip": "192.168.99.11"}])],
     "all.yaml[0]: spec.dhcpHosts[0].ip: 192.168.99.11 is outside the subnet "
     "192.168.150.0/24"),
    ("a reservation of the host's own address",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:01", "ip": "192.168.150.1"}])],
     "all.yaml[0]: spec.dhcpHosts[0].ip: 192.168.150.1 is the host's own address on the "
     "network"),
    ("a reservation of the broadcast address",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:01", "ip": "192.168.150.255"}])],
     "all.yaml[0]: spec.dhcpHosts[0].ip: 192.168.150.255 is the broadcast address of "
     "192.168.150.0/24"),
    ("two reservations with one MAC",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:01", "ip": "192.168.150.11"},
                         {"mac": "52:54:00:00:15:01", "ip": "192.168.150.12"}])],
     "all.yaml[0]: spec.dhcpHosts[1].mac: mac 52:54:00:00:15:01 is already reserved by "
     "dhcpHosts[0]"),
    ("one MAC in two cases",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:0a", "ip": "192.168.150.11"},
                         {"mac": "52:54:00:00:15:0A", "ip": "192.168.150.12"}])],
     "all.yaml[0]: spec.dhcpHosts[1].mac: mac 52:54:00:00:15:0a is already reserved by "
     "dhcpHosts[0]"),
    ("two reservations of one address",
     [network("lab", ipv4={"address": "192.168.150.1/24"},
              dhcpHosts=[{"mac": "52:54:00:00:15:01", "ip": "192.168.150.11"},
                         {"mac": "52:54:00:00:15:02", "ip": "192.168.150.11"}])],
     "all.yaml[0]: spec.dhcpHosts[1].ip: ip 192.168.150.11 is already reserved by "
     "dhcpHosts[0]"),
    ("the network address as the host's",
     [network("lab", ipv4={"address": "192.168.150.0/24"})],
     "all.yaml[0]: spec.ipv4.address: 192.168.150.0 is the network address of "
     "192.168.150.0/24, not a host address"),
    ("a /31",
     [network("lab", ipv4={"address": "192.168.150.0/31"})],
     "all.yaml[0]: spec.ipv4.address: /31 leaves no address for guests; at most /30"),
    ("nat without an address",
     [network("lab", mode="nat")],
     "all.yaml[0]: spec.ipv4: a nat network needs an address (ipv4.address)"),
    ("a bridge network without its bridge",
     [network("lan", mode="bridge")],
     "all.yaml[0]: spec.bridge: mode bridge needs the host bridge to attach to"),
    ("a bridge network with an address",
     [network("lan", mode="bridge", bridge="br0", ipv4={"address": "10.0.0.1/24"})],
     "all.yaml[0]: spec.ipv4: a bridge network has no address of libvirt's: the host "
     "bridge's own network gives guests theirs"),
    ("an address that is not one",
     [network("lab", ipv4={"address": "192.168.300.1/24"})],
     "all.yaml[0]: spec.ipv4.address: '192.168.300.1/24' does not match"),
    ("an unknown field",
     [network("lab", ipv4={"address": "10.0.0.1/24"}, forward="route")],
     "all.yaml[0]: spec.forward: unknown field(s)"),
]


@pytest.mark.parametrize(("case", "documents", "line"), BAD_NETWORKS,
                         ids=[case for case, _, _ in BAD_NETWORKS])
def test_bad_networks_are_one_clear_line(tmp_path: Path, case: str,
                                         documents: list[dict[str, object]],
                                         line: str) -> None:
    invalid, result = load(tmp_path, *documents, network("fine", mode="isolated"))
    assert len(invalid) == 1, invalid
    assert invalid[0].startswith(line), invalid[0]
    assert list(result.networks) == ["fine"]  # type: ignore[attr-defined]
    assert "lab" in result.invalid_networks or "lan" in result.invalid_networks  # type: ignore[attr-defined]


def test_overlapping_subnets_on_one_host_make_both_invalid(tmp_path: Path) -> None:
    invalid, result = load(tmp_path, network("a", ipv4={"address": "10.20.0.1/16"}),
                           network("b", ipv4={"address": "10.20.5.1/24"}),
                           network("c", ipv4={"address": "10.21.0.1/24"}))
    assert invalid == [
        "all.yaml[0]: spec.ipv4.address: 10.20.0.0/16 overlaps 10.20.5.0/24 of network 'b' "
        "(all.yaml[1]) on the same host",
        "all.yaml[1]: spec.ipv4.address: 10.20.5.0/24 overlaps 10.20.0.0/16 of network 'a' "
        "(all.yaml[0]) on the same host"]
    assert list(result.networks) == ["c"]  # type: ignore[attr-defined]


def test_overlapping_subnets_on_different_hosts_are_fine(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "hosts.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Hosts\nhosts: {kvm-1: 'test:///default', "
        "kvm-2: 'test:///default'}\n")
    (folder / "nets.yaml").write_text(yaml.safe_dump_all([
        network("a", ipv4={"address": "10.20.0.1/24"}, host="kvm-1"),
        network("b", ipv4={"address": "10.20.0.1/24"}, host="kvm-2")]))
    result = load_directory(str(folder))
    assert result.invalid == []
    assert sorted(result.networks) == ["a", "b"]


def test_one_bridge_for_two_networks_on_one_host(tmp_path: Path) -> None:
    invalid, _ = load(tmp_path, network("a", mode="isolated", bridge="virbr-x"),
                      network("b", mode="isolated", bridge="virbr-x"))
    assert invalid == [
        "all.yaml[0]: spec.bridge: bridge virbr-x is also network 'b''s (all.yaml[1]) on the "
        "same host",
        "all.yaml[1]: spec.bridge: bridge virbr-x is also network 'a''s (all.yaml[0]) on the "
        "same host"]


def test_a_name_defined_twice(tmp_path: Path) -> None:
    invalid, result = load(tmp_path, network("lab", mode="isolated"),
                           network("lab", mode="isolated"), pool("p", path=str(tmp_path)),
                           pool("p", path=str(tmp_path)))
    assert sorted(invalid) == [
                       "all.yaml[0]: metadata.name: network 'lab' is also defined in all.yaml[1]",
                       "all.yaml[1]: metadata.name: network 'lab' is also defined in all.yaml[0]",
                       "all.yaml[2]: metadata.name: pool 'p' is also defined in all.yaml[3]",
                       "all.yaml[3]: metadata.name: pool 'p' is also defined in all.yaml[2]"]
    assert result.networks == {} and result.pools == {}  # type: ignore[attr-defined]


def test_a_host_nobody_named(tmp_path: Path) -> None:
    invalid, _ = load(tmp_path, network("lab", mode="isolated", host="kvm-9"))
    assert invalid == ["all.yaml[0]: spec.host: host 'kvm-9' is not named in hosts.yaml nor "
                       "by --host NAME=URI"]


BAD_POOLS = [
    ("a path outside the allowed roots", {"path": "/srv/vmstore"},
     "all.yaml[0]: spec.path: /srv/vmstore is outside the allowed roots"),
    ("a path that is not normalised", {"path": "{root}/a/../b"},
     "all.yaml[0]: spec.path: {root}/a/../b is not a normalised folder path"),
    ("a trailing slash", {"path": "{root}/a/"},
     "all.yaml[0]: spec.path: {root}/a/ is not a normalised folder path"),
    ("a relative path", {"path": "vmstore"},
     "all.yaml[0]: spec.path: 'vmstore' does not match"),
    ("no path", {},
     "all.yaml[0]: spec.path: a dir pool needs its folder (path)"),
    ("another type", {"type": "netfs", "path": "{root}/x"},
     "all.yaml[0]: spec.type: 'netfs' is not one of ['dir']"),
    ("a file, not a folder", {"path": "{root}/file"},
     "all.yaml[0]: spec.path: {root}/file exists and is not a folder"),
]


@pytest.mark.parametrize(("case", "spec", "line"), BAD_POOLS,
                         ids=[case for case, _, _ in BAD_POOLS])
def test_bad_pools_are_one_clear_line(tmp_path: Path, case: str, spec: dict[str, str],
                                      line: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("x")
    filled = {key: value.replace("{root}", str(root)) for key, value in spec.items()}
    invalid, result = load(tmp_path, pool("vmstore", **filled),
                           pool("fine", path=str(root / "fine")), roots=(str(root),))
    assert len(invalid) == 1, invalid
    assert invalid[0].startswith(line.replace("{root}", str(root))), invalid[0]
    assert list(result.pools) == ["fine"]  # type: ignore[attr-defined]


def test_a_pool_path_through_a_symlink_out_of_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to("/srv")
    invalid, _ = load(tmp_path, pool("vmstore", path=str(root / "escape")),
                      roots=(str(root),))
    assert invalid == [f"all.yaml[0]: spec.path: {root}/escape (resolves to /srv) is outside "
                       f"the allowed roots ({root}); see --disk-root"]


def test_two_pools_on_one_path(tmp_path: Path) -> None:
    invalid, _ = load(tmp_path, pool("a", path=str(tmp_path / "x")),
                      pool("b", path=str(tmp_path / "x")))
    assert invalid == [
        f"all.yaml[0]: spec.path: {tmp_path}/x is also the path of pool 'b' (all.yaml[1]) on "
        "the same host",
        f"all.yaml[1]: spec.path: {tmp_path}/x is also the path of pool 'a' (all.yaml[0]) on "
        "the same host"]


VM_CASES = [
    ("an invalid network", [network("lab", mode="nat")],
     {"interfaces": [{"network": "lab"}]},
     "all.yaml[1]: spec.interfaces[0].network: network 'lab' is invalid (see its document)"),
    ("a network to be removed", [network("lab", state="absent")],
     {"interfaces": [{"network": "lab"}]},
     "all.yaml[1]: spec.interfaces[0].network: network 'lab' is to be removed "
     "(state: absent)"),
    ("a pool to be removed", [pool("p", state="absent")],
     {"disks": [{"volume": "v", "pool": "p", "size": "1GiB"}]},
     "all.yaml[1]: spec.disks[0].pool: pool 'p' is to be removed (state: absent)"),
    ("an invalid pool", [pool("p", path="/srv/outside")],
     {"disks": [{"volume": "v", "pool": "p", "size": "1GiB"}]},
     "all.yaml[1]: spec.disks[0].pool: pool 'p' is invalid (see its document)"),
]


@pytest.mark.parametrize(("case", "resources", "spec", "line"), VM_CASES,
                         ids=[case for case, _, _, _ in VM_CASES])
def test_a_vm_naming_a_bad_resource_is_invalid(tmp_path: Path, case: str,
                                               resources: list[dict[str, object]],
                                               spec: dict[str, object], line: str) -> None:
    invalid, result = load(tmp_path, *resources, vm("web-1", **spec))
    assert line in invalid, invalid
    assert "web-1" in result.invalid_names  # type: ignore[attr-defined]


def test_a_vm_naming_a_network_of_another_host(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "hosts.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Hosts\nhosts: {kvm-1: 'test:///default', "
        "kvm-2: 'test:///default'}\n")
    (folder / "all.yaml").write_text(yaml.safe_dump_all([
        network("lab", mode="isolated", host="kvm-2"),
        vm("web-1", host="kvm-1", interfaces=[{"network": "lab"}])]))
    result = load_directory(str(folder))
    assert [str(entry) for entry in result.invalid] == [
        "all.yaml[1]: spec.interfaces[0].network: network 'lab' is declared for host kvm-2, "
        "the VM is on kvm-1"]


def test_a_vm_naming_an_undeclared_network_is_checked_at_run_time(tmp_path: Path) -> None:
    invalid, result = load(tmp_path, vm("web-1", interfaces=[{"network": "elsewhere"}],
                                        disks=[{"volume": "v", "pool": "other",
                                                "size": "1GiB"}]))
    assert invalid == []
    assert list(result.specs) == ["web-1"]  # type: ignore[attr-defined]


def test_check_resource_says_what_validate_says() -> None:
    assert check_resource(network("lab", ipv4={"address": "10.0.0.1/24"})) == []
    assert [entry.path for entry in check_resource(
        pool("p", path="/srv/x"), disk_roots=("/var/lib/libvirt/images",))] == ["spec.path"]

"""The README's tour on a real host, as written there: its StoragePool, Network and
VirtualMachine documents, taken from README.md itself, run against the real libvirtd.

Only what would clash with anything else on this machine is changed: the names (the
test's prefix), the subnet (a free one), the bridge and the pool's folder; and the VM's
`type` (this machine's) and `stopTimeout: 0` (a guest without an OS ignores the ACPI
shutdown; the tour's 60 s wait is not what is tested). Everything is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.support.command import OnceRunner
from tests.support.disks import IMAGES
from tests.support.domains import must_read, remove_domains
from tests.support.manifests import Manifests
from tests.support.netres import (
    dnsmasq_hosts,
    dnsmasq_pid,
    free_subnet,
    network_active,
    pool_config,
    remove_networks,
    remove_pools,
)

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_SUBNET = ipaddress.IPv4Network("192.168.150.0/24")


def tour_documents() -> list[dict[str, Any]]:
    """The documents of the README's `cat > .../demo.yaml <<'YAML'` block."""
    text = README.read_text()
    match = re.search(r"<<'YAML'\n(.*?)\n +YAML\n", text, re.DOTALL)
    assert match, "the README lost its tour manifest"
    return list(yaml.safe_load_all(textwrap.dedent(match.group(1))))


def _renamed(documents: list[dict[str, Any]], *, prefix: str,
             subnet: ipaddress.IPv4Network, virt_type: str) -> list[dict[str, Any]]:
    """The tour's documents with what could clash made the test's own (see above)."""
    def address(text: str) -> str:
        return text.replace(str(TOUR_SUBNET.network_address)[:-1],
                            str(subnet.network_address)[:-1])

    out = []
    for document in documents:
        spec = document["spec"]
        document["metadata"]["name"] = prefix + document["metadata"]["name"]
        if document["kind"] == "StoragePool":
            spec["path"] = str(IMAGES / (prefix + Path(spec["path"]).name))
        elif document["kind"] == "Network":
            spec["bridge"] = prefix + "br"
            spec["ipv4"]["address"] = address(spec["ipv4"]["address"])
            spec["ipv4"]["dhcp"] = {key: address(value)
                                    for key, value in spec["ipv4"]["dhcp"].items()}
            for host in spec["dhcpHosts"]:
                host["ip"] = address(host["ip"])
        else:
            spec["type"], spec["stopTimeout"] = virt_type, 0
            for disk in spec["disks"]:
                disk["volume"], disk["pool"] = prefix + disk["volume"], prefix + disk["pool"]
            for interface in spec["interfaces"]:
                interface["network"] = prefix + interface["network"]
        out.append(document)
    return out


@pytest.fixture
def resources(conn: libvirt.virConnect, prefix: str) -> Iterator[str]:
    yield prefix
    remove_domains(conn, prefix)
    remove_networks(conn, prefix)
    remove_pools(conn, prefix, folders=IMAGES)


def _entry(result: object, kind: str, name: str) -> dict[str, Any]:
    report = result.report  # type: ignore[attr-defined]
    entries = {entry["name"]: entry for entry in report.get(kind, [])}
    return entries[name]  # type: ignore[no-any-return]


def _actions(entry: dict[str, Any]) -> list[str]:
    return [step["action"] for step in entry["steps"]]


def test_the_readme_tour_declares_a_pool_and_a_network() -> None:
    kinds = [document["kind"] for document in tour_documents()]
    assert kinds == ["StoragePool", "Network", "VirtualMachine"]


def test_the_readme_tour_on_the_real_libvirtd(
        conn: libvirt.virConnect, resources: str, manifests: Manifests, once: OnceRunner,
        virt_type: str) -> None:
    subnet = free_subnet(conn)
    documents = _renamed(tour_documents(), prefix=resources, subnet=subnet,
                         virt_type=virt_type)
    pool, network, guest = (resources + "demo", resources + "demo", resources + "demo-1")
    folder = IMAGES / pool
    manifests.write("demo.yaml", *documents)

    planned = once("--dry-run", check_exit=3)
    assert _entry(planned, "pools", pool)["result"] == "planned"
    assert _entry(planned, "networks", network)["result"] == "planned"
    assert planned.result(guest) == "planned"
    assert pool_config(conn, pool) is None and not folder.exists()

    first = once(check_exit=0)
    assert _entry(first, "pools", pool)["result"] == "converged"
    assert _entry(first, "networks", network)["result"] == "converged"
    assert first.result(guest) == "converged"
    reserved = str(subnet.network_address + 11)
    assert f"52:54:00:00:15:01,{reserved}" in dnsmasq_hosts(network)
    assert (folder / (resources + "demo-1-root")).is_file()
    assert must_read(conn, guest).running
    again = once(check_exit=0)
    assert [_entry(again, kind, name)["result"] for kind, name in
            (("pools", pool), ("networks", network))] == ["unchanged", "unchanged"]
    assert again.result(guest) == "unchanged"

    # "Change the reservation's ip: ... the network is updated live"
    pid = dnsmasq_pid(network)
    documents[1]["spec"]["dhcpHosts"][0]["ip"] = str(subnet.network_address + 12)
    manifests.write("demo.yaml", *documents)
    changed = _entry(once(check_exit=0), "networks", network)
    assert changed["result"] == "converged" and "update-network" in _actions(changed)
    assert f"52:54:00:00:15:01,{subnet.network_address + 12}" in dnsmasq_hosts(network)
    assert dnsmasq_pid(network) == pid and must_read(conn, guest).running

    # "Give all three state: absent": the VM, then the network; the pool stays (the
    # VM's volume is kept) and the output says why
    for document in documents:
        document["spec"]["state"] = "absent"
    manifests.write("demo.yaml", *documents)
    removed = once(check_exit=1)
    assert removed.result(guest) == "converged"
    assert _entry(removed, "networks", network)["result"] == "converged"
    kept = _entry(removed, "pools", pool)
    assert kept["result"] == "failed"
    assert "holds 1 volume(s)" in kept["error"]
    assert not network_active(conn, network) and pool_config(conn, pool) is not None
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(guest)

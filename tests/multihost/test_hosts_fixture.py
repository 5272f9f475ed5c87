"""The test hosts themselves: separate libvirt hosts, a link that can be cut and brought
back, and live migration between them. The many-hosts tests stand on these facts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from tests.support.domains import lookup, tiny_domain_xml
from tests.support.waiting import wait_until

from .conftest import HOST_NAMES, Hosts
from .hosts import call_with_deadline

pytestmark = pytest.mark.e2e


def _host_uuid(conn: libvirt.virConnect) -> str:
    text = ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
    assert text
    return text


def test_three_hosts_at_their_own_addresses(hosts: Hosts) -> None:
    assert list(hosts) == HOST_NAMES
    addresses = {host.address for host in hosts.values()}
    assert len(addresses) == 3
    for host in hosts.values():
        assert host.uri == f"qemu+tcp://{host.address}/system"
        assert host.conn().getURI() == host.uri
    # Migration refuses to go to "the same host": each must have its own host UUID.
    assert len({_host_uuid(host.conn()) for host in hosts.values()}) == 3


def test_a_domain_lives_on_one_host_only(hosts: Hosts, prefix: str) -> None:
    name = f"{prefix}alone"
    one, two, three = (hosts[name_].conn() for name_ in HOST_NAMES)
    dom = one.defineXML(tiny_domain_xml(name))
    uuid = dom.UUIDString()
    assert lookup(one, name) is not None
    assert lookup(two, name) is None
    assert lookup(three, name) is None
    assert name not in {d.name() for d in two.listAllDomains(0)}
    with pytest.raises(libvirt.libvirtError) as caught:
        two.lookupByUUIDString(uuid)
    assert caught.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def test_a_domain_of_a_test_host_is_not_on_the_main_daemon(hosts: Hosts, prefix: str) -> None:
    try:
        system = libvirt.open("qemu:///system")
    except libvirt.libvirtError:
        pytest.skip("no libvirtd answers at qemu:///system")
    name = f"{prefix}hidden"
    try:
        hosts["kvm-1"].conn().defineXML(tiny_domain_xml(name))
        assert lookup(system, name) is None
    finally:
        system.close()


def test_a_cut_host_does_not_answer_until_restored(hosts: Hosts, prefix: str) -> None:
    host, other = hosts["kvm-3"], hosts["kvm-2"]
    assert host.answering()
    host.cut()
    # libvirt's open has no timeout: give up on it from here.
    outcome, value = call_with_deadline(lambda: libvirt.open(host.uri), 3.0)
    assert outcome != "ok", f"opened {host.uri} across a cut link: {value}"
    assert other.answering()  # the others are not affected
    host.restore()
    conn = libvirt.open(host.uri)
    try:
        assert conn.getURI() == host.uri
        assert conn.listAllDomains(0) is not None
    finally:
        conn.close()


def test_a_running_guest_migrates_live_between_hosts(hosts: Hosts, prefix: str) -> None:
    name = f"{prefix}mover"
    source, target = hosts["kvm-1"], hosts["kvm-2"]
    sconn, dconn = source.conn(), target.conn()
    dom = sconn.defineXML(tiny_domain_xml(name))
    dom.create()
    uuid = dom.UUIDString()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    moved = dom.migrate3(
        dconn, {libvirt.VIR_MIGRATE_PARAM_URI: target.migrate_uri},
        libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)

    assert moved.UUIDString() == uuid
    there = dconn.lookupByName(name)
    assert there.UUIDString() == uuid
    assert there.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert there.isPersistent() == 1
    assert there.ID() > 0
    wait_until(lambda: lookup(sconn, name) is None, 10, what=f"{name} gone from kvm-1")
    assert lookup(hosts["kvm-3"].conn(), name) is None

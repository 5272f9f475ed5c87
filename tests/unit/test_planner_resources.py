"""plan_network and plan_pool: a (manifest, observed) pair in, the exact steps (or why none
may run) out; and the network and pool XML they define (built and parsed back)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from controller.model import Action, Plan
from controller.netxml import build_network, parse_network
from controller.planner.networks import needs_users, plan_network, plan_network_removal
from controller.planner.pools import plan_pool, plan_pool_removal
from controller.poolxml import build_pool, parse_pool_config
from controller.resourcemodel import (
    DhcpHost,
    NetworkMode,
    NetworkSpec,
    NetworkState,
    PoolSpec,
    PoolState,
    Presence,
)

WEB1 = DhcpHost("52:54:00:00:15:01", "192.168.150.11", "web-1")
WEB2 = DhcpHost("52:54:00:00:15:02", "192.168.150.12", "web-2")
LAB = NetworkSpec(name="lab", source="net.yaml", bridge="virbr-lab", address="192.168.150.1",
                  prefix=24, dhcp=("192.168.150.100", "192.168.150.200"), hosts=(WEB1,),
                  autostart=True)


def existing(spec: NetworkSpec, *, active: bool = True, users: tuple[str, ...] | None = (),
             autostart: bool | None = None, saved: NetworkSpec | None = None,
             live: NetworkSpec | None = None, managed: bool = True) -> NetworkState:
    """A network as libvirt would report one defined from `saved` (default: `spec`) and
    running `live` (default: the saved one)."""
    saved_xml = build_network(saved or spec)
    if not managed:
        root = ET.fromstring(saved_xml)
        root.remove(root.find("metadata"))  # type: ignore[arg-type]
        saved_xml = ET.tostring(root, encoding="unicode")
    live_xml = build_network(live) if live else saved_xml
    return NetworkState(name=spec.name, exists=True, active=active, persistent=True,
                        autostart=spec.autostart if autostart is None else autostart,
                        saved=parse_network(saved_xml),
                        live=parse_network(live_xml) if active else None,
                        saved_xml=saved_xml, users=users)


def actions(the_plan: Plan) -> list[str]:
    return [step.action.value for step in the_plan.steps]


# --- networks -----------------------------------------------------------------------------

def test_a_missing_network_is_defined_autostarted_and_started() -> None:
    the_plan = plan_network(LAB, NetworkState(name="lab", exists=False))
    assert actions(the_plan) == ["define-network", "autostart-network", "start-network"]
    assert parse_network(the_plan.steps[0].xml or "") == replace(
        parse_network(the_plan.steps[0].xml or ""), mode="nat", bridge="virbr-lab",
        address="192.168.150.1", prefix=24, ranges=(("192.168.150.100", "192.168.150.200"),),
        hosts=(WEB1,))


def test_a_converged_network_plans_nothing() -> None:
    the_plan = plan_network(LAB, existing(LAB))
    assert the_plan == Plan()


def test_an_unmanaged_network_is_a_conflict_unless_adopted() -> None:
    state = existing(LAB, managed=False)
    assert plan_network(LAB, state).conflict == (
        "network 'lab' exists and is not managed by reconcile; set spec.adopt: true to take "
        "it over")
    adopted = plan_network(replace(LAB, adopt=True), state)
    assert actions(adopted) == ["define-network"]
    assert [str(change) for change in adopted.changes] == ["managed no → yes"]
    assert parse_network(adopted.steps[0].xml or "").managed


@pytest.mark.parametrize(("hosts", "expected"), [
    ((WEB1, WEB2), [("add", "dhcpHosts: add 52:54:00:00:15:02 → 192.168.150.12 (web-2) (live)")]),
    ((replace(WEB1, ip="192.168.150.21"),),
     [("modify", "dhcpHosts: 52:54:00:00:15:01 192.168.150.11 (web-1) → 192.168.150.21 "
                 "(web-1) (live)")]),
    ((), [("delete", "dhcpHosts: remove 52:54:00:00:15:01 → 192.168.150.11 (web-1) (live)")]),
])
def test_reservations_change_live_then_the_saved_definition(
        hosts: tuple[DhcpHost, ...], expected: list[tuple[str, str]]) -> None:
    wanted = replace(LAB, hosts=hosts)
    the_plan = plan_network(wanted, existing(LAB))
    updates = [step for step in the_plan.steps if step.action is Action.UPDATE_NETWORK]
    assert [(step.dhcp.command, step.reason) for step in updates  # type: ignore[union-attr]
            ] == expected
    assert actions(the_plan)[len(updates):] == ["define-network"]
    assert parse_network(the_plan.steps[-1].xml or "").hosts == hosts
    assert not the_plan.restart_pending


def test_a_reservation_saved_already_but_not_live_is_applied_live_only() -> None:
    wanted = replace(LAB, hosts=(WEB1, WEB2))
    the_plan = plan_network(wanted, existing(wanted, live=LAB))
    assert actions(the_plan) == ["update-network"]


def test_a_new_range_is_added_before_the_old_one_goes() -> None:
    wanted = replace(LAB, dhcp=("192.168.150.50", "192.168.150.60"))
    the_plan = plan_network(wanted, existing(LAB))
    assert [(step.dhcp.section, step.dhcp.command)  # type: ignore[union-attr]
            for step in the_plan.steps[:2]] == [("range", "add"), ("range", "delete")]
    assert actions(the_plan)[2:] == ["define-network"]


def test_an_address_change_restarts_a_network_no_running_domain_uses() -> None:
    wanted = replace(LAB, address="192.168.160.1", dhcp=None, hosts=())
    state = existing(LAB, users=())
    assert needs_users(wanted, replace(state, users=None))
    the_plan = plan_network(wanted, state)
    assert actions(the_plan) == ["define-network", "stop-network", "start-network"]
    assert the_plan.steps[1].reason == (
        "ipv4 192.168.150.1/24 → 192.168.160.1/24 needs a restart (no running domain is "
        "attached)")


def test_an_address_change_waits_for_the_running_domains_and_saves_at_once() -> None:
    wanted = replace(LAB, address="192.168.160.1", dhcp=None, hosts=())
    the_plan = plan_network(wanted, existing(LAB, users=("web-1", "web-2")))
    assert actions(the_plan) == ["define-network"]
    assert the_plan.restart_pending == (
        "ipv4 192.168.150.1/24 → 192.168.160.1/24 needs a restart of network 'lab'; running "
        "domains attached: web-1, web-2 (the new definition is saved)")
    saved_already = plan_network(wanted, existing(wanted, live=LAB, users=("web-1",)))
    assert saved_already.steps == () and saved_already.restart_pending


def test_users_unknown_is_not_no_users() -> None:
    wanted = replace(LAB, mode=NetworkMode.ISOLATED)
    the_plan = plan_network(wanted, existing(LAB, users=None))
    assert the_plan.failure and "could not be read" in the_plan.failure
    assert the_plan.steps == ()


def test_an_inactive_network_is_started_and_autostart_follows() -> None:
    the_plan = plan_network(LAB, existing(LAB, active=False, autostart=False))
    assert actions(the_plan) == ["start-network", "autostart-network"]


def test_a_bridge_network_on_a_missing_host_bridge_makes_nothing() -> None:
    lan = NetworkSpec(name="lan", source="lan.yaml", mode=NetworkMode.BRIDGE, bridge="br9")
    the_plan = plan_network(lan, NetworkState(name="lan", exists=False, bridge_exists=False))
    assert the_plan.steps == ()
    assert the_plan.failure == ("host bridge br9 does not exist: a bridge network attaches "
                                "to an existing host bridge (nothing was changed)")
    unknown = plan_network(lan, NetworkState(name="lan", exists=False, bridge_exists=None))
    assert actions(unknown) == ["define-network", "start-network"]
    xml = ET.fromstring(unknown.steps[0].xml or "")
    assert xml.find("forward").get("mode") == "bridge"  # type: ignore[union-attr]
    assert xml.find("ip") is None


def test_a_route_network_is_not_described_by_a_manifest() -> None:
    state = existing(LAB)
    assert state.saved is not None
    routed = replace(state, saved=replace(state.saved, mode="route"))
    the_plan = plan_network(replace(LAB, adopt=True), routed)
    assert the_plan.terminal and "forward mode 'route'" in (the_plan.failure or "")


def test_removal_never_destroys_a_network_a_running_domain_uses() -> None:
    absent = replace(LAB, state=Presence.ABSENT)
    refused = plan_network(absent, existing(LAB, users=("web-1",)))
    assert refused.steps == ()
    assert refused.failure == ("network 'lab' is in use by running domain(s) web-1: not "
                               "removed (a network a running domain uses is never destroyed)")
    assert actions(plan_network(absent, existing(LAB))) == ["stop-network", "undefine-network"]
    assert actions(plan_network(absent, existing(LAB, active=False))) == ["undefine-network"]
    assert plan_network(absent, NetworkState(name="lab", exists=False)) == Plan()
    assert plan_network(absent, existing(LAB, managed=False)).conflict
    assert plan_network_removal(existing(LAB, users=None), "orphan").failure


# --- network XML ---------------------------------------------------------------------------------

SAVED = """<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>lab</name>
  <uuid>0b5d6e9a-61e2-4d2c-8a07-3c1f8e2a9b15</uuid>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr-lab' stp='on' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
  <domain name='lab.example'/>
  <dns><host ip='192.168.150.1'><hostname>gw</hostname></host></dns>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.150.100' end='192.168.150.200'/>
      <host mac='52:54:00:00:15:01' ip='192.168.150.11' name='web-1'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00::1' prefix='64'/>
  <dnsmasq:options><dnsmasq:option value='log-dhcp'/></dnsmasq:options>
</network>"""


def test_parsing_reads_what_a_manifest_models_and_names_what_it_keeps() -> None:
    config = parse_network(SAVED)
    assert (config.mode, config.bridge, config.cidr, config.ranges, config.hosts) == (
        "nat", "virbr-lab", "192.168.150.1/24", (("192.168.150.100", "192.168.150.200"),),
        (WEB1,))
    assert config.uuid == "0b5d6e9a-61e2-4d2c-8a07-3c1f8e2a9b15"
    assert config.kept == ("an IPv6 address (fd00::1)",)
    assert not config.managed
    assert parse_network("<network><name>x</name></network>").mode == "isolated"


def test_a_redefinition_keeps_everything_the_manifest_does_not_model() -> None:
    wanted = replace(LAB, hosts=(WEB1, WEB2), adopt=True)
    xml = build_network(wanted, SAVED)
    root = ET.fromstring(xml)
    for kept in ("uuid", "forward/nat/port", "mac", "domain", "dns/host",
                 "ip[@family='ipv6']"):
        assert root.find(kept) is not None, kept
    assert "dnsmasq:options" in xml  # the prefix survives, libvirt reads it by prefix
    config = parse_network(xml)
    assert config.hosts == (WEB1, WEB2) and config.managed
    assert config.mark is not None and config.mark.source == "net.yaml"
    assert config.cidr == "192.168.150.1/24"


def test_a_change_to_isolated_drops_forwarding_only() -> None:
    config = parse_network(build_network(replace(LAB, mode=NetworkMode.ISOLATED), SAVED))
    assert (config.mode, config.bridge, config.cidr) == ("isolated", "virbr-lab",
                                                         "192.168.150.1/24")


def test_update_elements_are_built_not_pasted() -> None:
    from controller.netxml import host_xml

    evil = DhcpHost("52:54:00:00:15:01", "192.168.150.11", "a'/><x y='")
    element = ET.fromstring(host_xml(evil))
    assert element.get("name") == "a'/><x y='" and len(element) == 0


# --- pools -------------------------------------------------------------------------------------

STORE = PoolSpec(name="vmstore", source="pools.yaml", path="/var/lib/libvirt/images/vmstore",
                 autostart=True)


def pool_state(spec: PoolSpec, *, active: bool = True, volumes: int | None = 0,
               managed: bool = True, autostart: bool | None = None,
               path: str | None = None) -> PoolState:
    xml = build_pool(replace(spec, path=path or spec.path))
    if not managed:
        root = ET.fromstring(xml)
        root.remove(root.find("source"))  # type: ignore[arg-type]
        xml = ET.tostring(root, encoding="unicode")
    return PoolState(name=spec.name, exists=True, active=active, persistent=True,
                     autostart=spec.autostart if autostart is None else autostart,
                     saved=parse_pool_config(xml), saved_xml=xml, volumes=volumes)


def test_a_missing_pool_is_defined_built_started_autostarted() -> None:
    the_plan = plan_pool(STORE, PoolState(name="vmstore", exists=False))
    assert actions(the_plan) == ["define-pool", "build-pool", "start-pool", "autostart-pool"]
    config = parse_pool_config(the_plan.steps[0].xml or "")
    assert (config.type, config.path, config.managed) == ("dir", STORE.path, True)
    assert config.mark is not None and config.mark.source == "pools.yaml"


def test_pool_ownership_adoption_and_drift() -> None:
    assert plan_pool(STORE, pool_state(STORE)) == Plan()
    unmanaged = pool_state(STORE, managed=False)
    assert plan_pool(STORE, unmanaged).conflict
    adopted = plan_pool(replace(STORE, adopt=True), unmanaged)
    assert actions(adopted) == ["define-pool"]
    assert parse_pool_config(adopted.steps[0].xml or "").managed
    assert actions(plan_pool(STORE, pool_state(STORE, active=False, autostart=False))) == [
        "start-pool", "autostart-pool"]


def test_a_pool_is_never_moved() -> None:
    the_plan = plan_pool(STORE, pool_state(STORE, path="/var/lib/libvirt/images/old"))
    assert the_plan.steps == () and the_plan.terminal
    assert "a pool is not moved (its volumes would stay behind)" in (the_plan.failure or "")


def test_a_pool_is_never_removed_with_its_volumes() -> None:
    absent = replace(STORE, state=Presence.ABSENT)
    refused = plan_pool(absent, pool_state(STORE, volumes=3))
    assert refused.steps == () and refused.terminal
    assert refused.failure == (
        "storage pool 'vmstore' holds 3 volume(s) in /var/lib/libvirt/images/vmstore: it stays "
        "defined and active (a pool is never deleted with its volumes)")
    empty = plan_pool(absent, pool_state(STORE, volumes=0))
    assert actions(empty) == ["stop-pool", "undefine-pool"]
    assert empty.steps[1].reason == "state is absent; /var/lib/libvirt/images/vmstore stays"
    assert actions(plan_pool_removal(pool_state(STORE, active=False, volumes=None),
                                     "orphan")) == ["start-pool"]
    assert plan_pool_removal(pool_state(STORE, volumes=None), "orphan").failure
    assert plan_pool(absent, PoolState(name="vmstore", exists=False)) == Plan()

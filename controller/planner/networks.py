"""plan(desired, observed) for one libvirt network on its host. Pure.

Called by the network reconcile (controller/resources_reconcile.py, through the kinds of
controller/resourcekinds.py) under the network's lock, right after observing it.

- Missing: define, autostart, start. A `bridge` network whose host bridge does not
  exist is refused before anything is made.
- Not managed: a conflict, unless `adopt: true`; adoption writes the ownership mark
  into the saved definition, nothing else the manifest does not change.
- DHCP reservations and the range are changed live (virNetworkUpdate on the running
  network: reservations reload dnsmasq, a range restarts dnsmasq; the network and
  its guests stay up), then the saved definition is written.
- Mode, bridge and address need the network restarted (stop, start): done only when no
  running domain is attached; else the new definition is saved at once and the network
  is restart-pending, naming the domains in the way.
- Removal (state absent, prune): never while a running domain is attached.
"""

from __future__ import annotations

from ..model import Action, Change, Plan, Step
from ..netxml import build_network, host_xml, range_xml
from ..resourcemodel import DhcpChange, DhcpHost, NetworkConfig, NetworkSpec, NetworkState, Presence


def plan_network(spec: NetworkSpec, state: NetworkState) -> Plan:
    """The ordered steps that take `state` to `spec`, each with its reason."""
    if spec.state is Presence.ABSENT:
        if state.exists and not state.managed and not spec.adopt:
            return Plan(conflict=_unmanaged(spec.name))
        return plan_network_removal(state, "state is absent")
    if not state.exists:
        if _no_bridge(spec, state):
            return Plan(failure=_no_bridge_reason(spec))
        created = [Step(Action.DEFINE_NETWORK, "the network does not exist",
                        xml=build_network(spec))]
        if spec.autostart:
            created.append(Step(Action.AUTOSTART_NETWORK, "autostart is wanted",
                                autostart=True))
        created.append(Step(Action.START_NETWORK, "the network is to be active"))
        return Plan(steps=tuple(created))
    if not state.managed and not spec.adopt:
        return Plan(conflict=_unmanaged(spec.name))
    saved = state.saved
    assert saved is not None  # an existing network always has a definition
    if saved.mode not in ("nat", "isolated", "bridge"):
        return Plan(terminal=True, failure=(
            f"network '{spec.name}' has forward mode '{saved.mode}'; a Network manifest "
            "describes nat, isolated and bridge networks"))
    saved_changes = network_changes(spec, saved)
    live = state.live if state.active else None
    live_changes = network_changes(spec, live, live=True) if live is not None else []
    restart = [change for change in live_changes if change.needs_restart]
    shown = saved_changes + [change for change in live_changes if change not in saved_changes]
    if restart and _no_bridge(spec, state):
        return Plan(changes=tuple(shown), failure=_no_bridge_reason(spec))
    steps: list[Step] = []
    if live is not None and not restart:
        steps += live_updates(spec, live)
    if saved_changes:
        summary = ", ".join(str(change) for change in saved_changes)
        steps.append(Step(Action.DEFINE_NETWORK, summary,
                          xml=build_network(spec, state.saved_xml)))
    pending = None
    if restart:
        why = ", ".join(str(change) for change in restart)
        if state.users is None:
            return Plan(changes=tuple(shown), failure=(
                f"{why} needs a restart of network '{spec.name}', and its running domains "
                "could not be read"))
        if state.users:
            pending = (f"{why} needs a restart of network '{spec.name}'; running domains "
                       f"attached: {', '.join(state.users)} (the new definition is saved)")
        else:
            steps += [Step(Action.STOP_NETWORK, f"{why} needs a restart (no running domain "
                                                "is attached)"),
                      Step(Action.START_NETWORK, "start again after the restart")]
    elif not state.active:
        steps.append(Step(Action.START_NETWORK, "the network is not active"))
    if state.autostart != spec.autostart:
        steps.append(Step(Action.AUTOSTART_NETWORK,
                          f"autostart {str(state.autostart).lower()} → "
                          f"{str(spec.autostart).lower()}", autostart=spec.autostart))
    return Plan(steps=tuple(steps), changes=tuple(shown), restart_pending=pending)


def needs_users(spec: NetworkSpec | None, state: NetworkState) -> bool:
    """Whether planning `spec` (None: an orphan to remove) may stop the running network,
    so the running domains attached must be read first."""
    if not state.exists or not state.active or state.live is None:
        return False
    if spec is None or spec.state is Presence.ABSENT:
        return True
    return any(change.needs_restart for change in network_changes(spec, state.live, live=True))


def plan_network_removal(state: NetworkState, reason: str) -> Plan:
    """Stop and undefine the network, unless a running domain is attached to it."""
    if not state.exists:
        return Plan()
    if state.active:
        if state.users is None:
            return Plan(failure=f"network '{state.name}': its running domains could not be "
                                "read, so it is not removed")
        if state.users:
            return Plan(failure=(
                f"network '{state.name}' is in use by running domain(s) "
                f"{', '.join(state.users)}: not removed (a network a running domain uses is "
                "never destroyed)"))
    steps = []
    if state.active:
        steps.append(Step(Action.STOP_NETWORK, reason))
    if state.persistent:
        steps.append(Step(Action.UNDEFINE_NETWORK, reason))
    return Plan(steps=tuple(steps))


# --- what differs ----------------------------------------------------------------------------

def network_changes(spec: NetworkSpec, config: NetworkConfig, *,
                    live: bool = False) -> list[Change]:
    """What differs between `spec` and a definition, each marked when it needs a
    restart. The ownership mark is compared in the saved definition only (`live`)."""
    changes: list[Change] = []
    if config.mode != spec.mode.value:
        changes.append(Change("mode", config.mode, spec.mode.value, needs_restart=True))
    if spec.bridge and config.bridge != spec.bridge:
        changes.append(Change("bridge", config.bridge or "none", spec.bridge,
                              needs_restart=True))
    if config.cidr != spec.cidr:
        changes.append(Change("ipv4", config.cidr or "none", spec.cidr or "none",
                              needs_restart=True))
    wanted = (spec.dhcp,) if spec.dhcp else ()
    if config.ranges != wanted:
        changes.append(Change("dhcp", _ranges(config.ranges), _ranges(wanted)))
    have = {host.mac: host for host in config.hosts}
    want = {host.mac: host for host in spec.hosts}
    for mac in sorted(set(have) | set(want)):
        old, new = have.get(mac), want.get(mac)
        if old != new:
            changes.append(Change(f"dhcpHosts[{mac}]", _host(old), _host(new)))
    if not live:
        mark = config.mark
        if mark is None:
            changes.append(Change("managed", "no", "yes"))
        elif (mark.source, mark.host) != (spec.source, spec.host):
            changes.append(Change("mark", f"{mark.source} on {mark.host or '(-c)'}",
                                  f"{spec.source} on {spec.host or '(-c)'}"))
    return changes


def live_updates(spec: NetworkSpec, live: NetworkConfig) -> list[Step]:
    """The live DHCP changes that take the running network to `spec`: reservations
    removed, changed, added (in that order: an address freed first can be reused),
    then the new range added before the old one goes (never without a range)."""
    steps: list[Step] = []
    have = {host.mac: host for host in live.hosts}
    want = {host.mac: host for host in spec.hosts}
    for mac in sorted(set(have) - set(want)):
        steps.append(_update("host", "delete", host_xml(have[mac]),
                             f"dhcpHosts: remove {have[mac]} (live)"))
    for mac in sorted(set(have) & set(want)):
        if have[mac] != want[mac]:
            steps.append(_update("host", "modify", host_xml(want[mac]),
                                 f"dhcpHosts: {mac} {_host(have[mac])} → {_host(want[mac])} "
                                 "(live)"))
    for host in spec.hosts:
        if host.mac not in have:
            steps.append(_update("host", "add", host_xml(host),
                                 f"dhcpHosts: add {host} (live)"))
    wanted = (spec.dhcp,) if spec.dhcp else ()
    if live.ranges != wanted:
        for start, end in wanted:
            if (start, end) not in live.ranges:
                steps.append(_update("range", "add", range_xml(start, end),
                                     f"dhcp: add range {start}-{end} (live; dnsmasq restarts, "
                                     "guests stay attached)"))
        for start, end in live.ranges:
            if (start, end) not in wanted:
                steps.append(_update("range", "delete", range_xml(start, end),
                                     f"dhcp: remove range {start}-{end} (live)"))
    return steps


def _update(section: str, command: str, xml: str, reason: str) -> Step:
    return Step(Action.UPDATE_NETWORK, reason, dhcp=DhcpChange(section, command, xml))


def _ranges(ranges: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{start}-{end}" for start, end in ranges) or "none"


def _host(host: DhcpHost | None) -> str:
    if host is None:
        return "none"
    return f"{host.ip}{f' ({host.name})' if host.name else ''}"


def _unmanaged(name: str) -> str:
    return (f"network '{name}' exists and is not managed by reconcile; set spec.adopt: true "
            "to take it over")


def _no_bridge(spec: NetworkSpec, state: NetworkState) -> bool:
    return spec.bridge is not None and spec.mode.value == "bridge" \
        and state.bridge_exists is False


def _no_bridge_reason(spec: NetworkSpec) -> str:
    return (f"host bridge {spec.bridge} does not exist: a bridge network attaches to an "
            "existing host bridge (nothing was changed)")

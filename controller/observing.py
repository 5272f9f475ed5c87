"""Observing one VM name for the planner: the domain on its host, the managed copies on
the other reachable hosts, the hosts that may hold it and cannot be asked, and the
machine aliases involved, resolved on the VM's host. Called by the reconciler under
the VM's lock; everything read afresh (or from a listing the caller may trust).
"""

from __future__ import annotations

from .hosts import Host, Hosts
from .model import Observed, VMSpec
from .planner import Copy, Machines, Situation
from .virt import Listing


def observe(spec: VMSpec, host: Host, hosts: Hosts, listing: Listing | None) -> Situation:
    here = host.hypervisor.domains.observe(spec.name, listing)
    copies: list[Copy] = []
    unknown: tuple[str, ...] = ()
    if hosts.several:
        unknown = tuple(hosts.unknown_holders(spec.name, host.name))
        if not unknown:
            copies = copies_elsewhere(spec.name, host, hosts)
    observed = [here] + [copy.observed for copy in copies]
    return Situation(host=host.name, here=here, copies=tuple(copies), unknown=unknown,
                     machines=machines_of(spec, host, observed))


def copies_elsewhere(name: str, target: Host, hosts: Hosts) -> list[Copy]:
    """Managed domains named `name` on the other usable hosts, observed afresh (only
    where this pass's listing, if there is one, has the name)."""
    copies = []
    for other in hosts.all():
        if other is target or not other.usable:
            continue
        if other.listed is not None and name not in other.listed.listing.names:
            continue
        observed = other.hypervisor.domains.observe(name)
        if observed.exists and observed.managed:
            copies.append(Copy(other.name, observed))
    return copies


def machines_of(spec: VMSpec, host: Host, observed: list[Observed]) -> Machines | None:
    """The machine aliases involved, resolved on the VM's host (cached there): only
    when the manifest names a machine, the only case the planner compares them."""
    if not spec.machine:
        return None
    configs = [config for seen in observed for config in (seen.saved, seen.live)
               if config is not None and config.machine]
    if not configs:
        return None
    canonical = host.hypervisor.domains.canonical_machine
    machines = {spec.machine: canonical(spec.type, spec.arch or configs[0].arch,
                                        spec.machine)}
    for config in configs:
        assert config.machine is not None
        machines[config.machine] = canonical(config.type, config.arch, config.machine)
    return machines

"""The kinds of host resource beside VMs (`kind: StoragePool`, `kind: Network`), as one
registry that the reconcile, the pass, the service and the output iterate over; what the
last reconcile of each found (`ResourceStates`); and a VM's view of them (`vm_blocker`).

Used by controller/resources_reconcile.py (observe, plan, list), controller/passes.py
(order, orphans), controller/observing.py (a VM whose network or pool is missing or
failed is failed, never half-created), controller/unnamed.py (prune counts every kind
together) and the service (keys, events, which VMs to look at again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .manifests import LoadResult
from .model import DesiredState, Outcome, Plan, Result, VMSpec
from .planner.networks import needs_users, plan_network, plan_network_removal
from .planner.orphans import Manifests, left_as_is
from .planner.pools import plan_pool, plan_pool_removal
from .resourcemodel import (
    Mark,
    NetworkMode,
    NetworkSpec,
    NetworkState,
    PoolSpec,
    PoolState,
    Presence,
)

if TYPE_CHECKING:
    from .virt import Hypervisor

Spec = NetworkSpec | PoolSpec
State = NetworkState | PoolState


class _Placed(Protocol):
    @property
    def host(self) -> str | None: ...


@dataclass(frozen=True)
class ResourceKind:
    """One kind of resource: how to find its specs, observe, plan and list it."""

    name: str  # "network", "pool": Outcome.kind, the JSON list is name + "s"
    label: str  # how messages name one: "network", "storage pool"
    document: str  # its manifest kind: "Network", "StoragePool"
    specs: Callable[[LoadResult], Mapping[str, Spec]]
    invalid: Callable[[LoadResult], set[str]]
    observe: Callable[[Hypervisor, str, Spec | None], State]
    plan: Callable[[Spec, State], Plan]
    plan_removal: Callable[[State, str], Plan]
    managed: Callable[[Hypervisor], dict[str, Mark]]
    #: the VM specs that use the resource `name` (to look at again once it changed)
    users: Callable[[LoadResult, str], list[str]]

    @property
    def prefix(self) -> str:
        """Its key on the work queue and in the lock folder: "network:lab"."""
        return f"{self.name}:"

    def key(self, name: str) -> str:
        return self.prefix + name


# --- networks ------------------------------------------------------------------------------

def _observe_network(hypervisor: Hypervisor, name: str, spec: Spec | None) -> State:
    assert spec is None or isinstance(spec, NetworkSpec)
    bridge = (spec.bridge if spec is not None and spec.mode is NetworkMode.BRIDGE
              and spec.state is Presence.PRESENT else None)
    state = hypervisor.networks.state(name, bridge=bridge)
    if needs_users(spec, state):
        state = hypervisor.networks.state(name, users=True, bridge=bridge)
    return state


def _plan_network(spec: Spec, state: State) -> Plan:
    assert isinstance(spec, NetworkSpec) and isinstance(state, NetworkState)
    return plan_network(spec, state)


def _remove_network(state: State, reason: str) -> Plan:
    assert isinstance(state, NetworkState)
    return plan_network_removal(state, reason)


def _network_users(load: LoadResult, name: str) -> list[str]:
    return sorted(spec.name for spec in load.specs.values()
                  if any(interface.network == name for interface in spec.interfaces))


NETWORK = ResourceKind(
    name="network", label="network", document="Network",
    specs=lambda load: load.networks, invalid=lambda load: load.invalid_networks,
    observe=_observe_network, plan=_plan_network, plan_removal=_remove_network,
    managed=lambda hypervisor: hypervisor.networks.managed(), users=_network_users)


# --- pools -----------------------------------------------------------------------------------

def _observe_pool(hypervisor: Hypervisor, name: str, spec: Spec | None) -> State:
    removal = spec is None or spec.state is Presence.ABSENT
    return hypervisor.pools.state(name, count=removal)


def _plan_pool(spec: Spec, state: State) -> Plan:
    assert isinstance(spec, PoolSpec) and isinstance(state, PoolState)
    return plan_pool(spec, state)


def _remove_pool(state: State, reason: str) -> Plan:
    assert isinstance(state, PoolState)
    return plan_pool_removal(state, reason)


def _pool_users(load: LoadResult, name: str) -> list[str]:
    return sorted(spec.name for spec in load.specs.values()
                  if any(disk.volume and disk.pool == name for disk in spec.disks))


POOL = ResourceKind(
    name="pool", label="storage pool", document="StoragePool",
    specs=lambda load: load.pools, invalid=lambda load: load.invalid_pools,
    observe=_observe_pool, plan=_plan_pool, plan_removal=_remove_pool,
    managed=lambda hypervisor: hypervisor.pools.managed(), users=_pool_users)

#: In the order a pass creates them (pools, [images], networks, VMs); removal goes in
#: reverse.
KINDS = (POOL, NETWORK)
BY_PREFIX = {kind.prefix: kind for kind in KINDS}


def kind_of_key(key: str) -> tuple[ResourceKind, str] | None:
    """The kind and name of a queue key such as "network:lab"; None for a VM's name."""
    prefix, colon, name = key.partition(":")
    kind = BY_PREFIX.get(prefix + colon) if colon else None
    return (kind, name) if kind is not None else None


def placed_on(spec: _Placed, default: str) -> str:
    """The host a resource lives on: spec.host, else the -c connection's."""
    return spec.host if spec.host is not None else default


def left_alone(kind: ResourceKind, name: str, mark: Mark, view: Manifests,
               load: LoadResult) -> str | None:
    """Why a managed resource no valid manifest declares is left as it is (its manifest
    is invalid), if it is: the orphan rule of controller/planner/orphans.py."""
    names = frozenset(kind.invalid(load))
    kind_view = Manifests(complete=view.complete, problem=view.problem,
                          invalid_files=view.invalid_files, invalid_names=names,
                          invalid_sources={})
    return left_as_is(name, mark.source, kind_view)


# --- what the last reconcile of each found ------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """What the last reconcile of one resource found: its result and error."""

    result: Result
    error: str | None

    @property
    def failed(self) -> bool:
        return self.result in (Result.FAILED, Result.CONFLICT)


class ResourceStates:
    """The outcome of the last reconcile of each declared network and pool on each host,
    in this process; and, during a pass (`begin_pass`), what libvirt said of the
    undeclared ones that VMs name, so that 1,000 VMs on `default` ask once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], Seen] = {}
        self._briefs: dict[tuple[str, str, str], tuple[bool, bool]] | None = None

    def begin_pass(self) -> None:
        with self._lock:
            self._seen.clear()
            self._briefs = {}

    def record(self, kind: str, host: str, outcome: Outcome) -> None:
        with self._lock:
            self._seen[(kind, host, outcome.name)] = Seen(outcome.result, outcome.error)

    def get(self, kind: str, host: str, name: str) -> Seen | None:
        with self._lock:
            return self._seen.get((kind, host, name))

    def brief(self, kind: str, host: str, name: str,
              read: Callable[[], tuple[bool, bool]]) -> tuple[bool, bool]:
        with self._lock:
            cached = self._briefs.get((kind, host, name)) if self._briefs is not None else None
        if cached is not None:
            return cached
        found = read()
        with self._lock:
            if self._briefs is not None:
                self._briefs[(kind, host, name)] = found
        return found


def vm_blocker(spec: VMSpec, hypervisor: Hypervisor, *, host: str, where: str,
               load: LoadResult, states: ResourceStates, exists: bool) -> str | None:
    """Why the VM may not be reconciled now because of a network its interfaces name or a
    pool its volume disks live in; None when nothing stands in the way. In the way: one
    that failed in its own reconcile (or is in conflict), a pool that is missing (its
    volumes cannot be made), a network that is missing while the domain is to be created
    or to run (libvirt defines a domain on a missing network, and an existing stopped
    one, adopted as it is, keeps it), or either inactive while the VM should run.
    `exists`: whether the domain exists. `where`: " on host X" or "" for messages."""
    if spec.state is DesiredState.ABSENT:
        return None
    wanted = [(NETWORK, name) for name in dict.fromkeys(
        interface.network for interface in spec.interfaces if interface.network)]
    wanted += [(POOL, name) for name in dict.fromkeys(
        disk.pool for disk in spec.disks if disk.volume and disk.pool)]
    for kind, name in wanted:
        assert name is not None
        declared = name in kind.specs(load)
        seen = states.get(kind.name, host, name) if declared else None
        if seen is not None:
            if seen.failed:
                return f"{kind.label} {name}{where} {seen.result.value}: {seen.error}"
            continue
        reader = (hypervisor.networks.brief if kind is NETWORK else hypervisor.pools.brief)
        found, active = states.brief(kind.name, host, name, partial(reader, name))
        if not found:
            if kind is POOL and name == "default" and not declared:
                continue  # made as virt-install makes it, by the volume's create step
            if kind is NETWORK and exists and spec.state is not DesiredState.RUNNING:
                continue
            return (f"{kind.label} {name} does not exist{where}"
                    + ("" if declared else f" and no {kind.document} manifest declares it"))
        if not active and spec.state is DesiredState.RUNNING:
            return f"{kind.label} {name} is not active{where}"
    return None


def orphans_on(kind: ResourceKind, host: str, marks: Mapping[str, Mark], load: LoadResult,
               view: Manifests, *, default: str, left: bool = False) -> list[str]:
    """The managed resources of `kind` on `host` (with their `marks`) that no valid
    manifest declares for that host, except those left as they are (their manifest is
    invalid): the orphans. With `left`: those left as they are instead."""
    declared = {name for name, spec in kind.specs(load).items()
                if placed_on(spec, default) == host}
    return sorted(name for name, mark in marks.items()
                  if name not in declared
                  and bool(left_alone(kind, name, mark, view, load)) is left)


def count_orphans(hypervisors: Mapping[str, Hypervisor], load: LoadResult,
                  view: Manifests, *, default: str) -> int:
    """The orphan networks and pools on each of `hypervisors` (host name → its
    hypervisor), listed afresh (the service, which has no pass to count them in)."""
    return sum(len(orphans_on(kind, host, kind.managed(hypervisor), load, view,
                              default=default))
               for host, hypervisor in hypervisors.items() for kind in KINDS)

"""Runs the steps of a network's or a storage pool's plan on a host. Called by the
executor, under the resource's lock ("network:lab", "pool:vmstore"); each step is safe
to repeat (the libvirt edge tolerates "already done"): controller/virt/networks.py and
the `Pools` of controller/virt/pools.py.
"""

from __future__ import annotations

from .model import Action, Step
from .virt import Hypervisor

NETWORK_ACTIONS = frozenset({Action.UPDATE_NETWORK, Action.DEFINE_NETWORK,
                             Action.STOP_NETWORK, Action.START_NETWORK,
                             Action.AUTOSTART_NETWORK, Action.UNDEFINE_NETWORK})
POOL_ACTIONS = frozenset({Action.DEFINE_POOL, Action.BUILD_POOL, Action.START_POOL,
                          Action.AUTOSTART_POOL, Action.STOP_POOL, Action.UNDEFINE_POOL})
RESOURCE_ACTIONS = NETWORK_ACTIONS | POOL_ACTIONS


def run_resource_step(hypervisor: Hypervisor, key: str, step: Step) -> None:
    """`key`: the resource's key, "network:lab" or "pool:vmstore"."""
    name = key.partition(":")[2] or key
    action = step.action
    if action in NETWORK_ACTIONS:
        networks = hypervisor.networks
        if action is Action.UPDATE_NETWORK:
            assert step.dhcp is not None
            networks.update(name, step.dhcp)
        elif action is Action.DEFINE_NETWORK:
            assert step.xml is not None
            networks.define(step.xml)
        elif action is Action.STOP_NETWORK:
            networks.stop(name)
        elif action is Action.START_NETWORK:
            networks.start(name)
        elif action is Action.AUTOSTART_NETWORK:
            networks.set_autostart(name, bool(step.autostart))
        else:
            networks.undefine(name)
        return
    pools = hypervisor.pools
    if action is Action.DEFINE_POOL:
        assert step.xml is not None
        pools.define(step.xml)
    elif action is Action.BUILD_POOL:
        pools.build(name)
    elif action is Action.START_POOL:
        pools.start(name)
    elif action is Action.AUTOSTART_POOL:
        pools.set_autostart(name, bool(step.autostart))
    elif action is Action.STOP_POOL:
        pools.stop(name)
    elif action is Action.UNDEFINE_POOL:
        pools.undefine(name)
    else:  # pragma: no cover - the executor sends only resource actions here
        raise AssertionError(action)

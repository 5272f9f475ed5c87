"""An Ansible inventory of the running VMs, in `ansible-inventory --list` (inventory
script) form: `reconcile status -o ansible`. Pure.

    {"_meta": {"hostvars": {"web-1": {"ansible_host": "10.0.0.5", "reconcile_host": ...}}},
     "all": {"children": ["host_kvm_1", "label_team_web", "ungrouped"]},
     "label_team_web": {"hosts": ["web-1"]}, "host_kvm_1": {"hosts": ["web-1"]},
     "ungrouped": {"hosts": []}}

A VM is in it when its manifest is valid and its domain runs. `ansible_host` is its
first IPv4 address (a DHCP lease first, else the guest agent's), else its first
address; a VM with no address yet has no `ansible_host` (and the CLI warns). Groups:
`label_KEY_VALUE` per label and `host_NAME` per host (`host_default` for the -c
connection), with every character Ansible does not take in a group name turned into
`_`. Called by the CLI's status command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .model import GuestAddress, Outcome

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def group_name(*parts: str) -> str:
    """('label', 'team', 'web-1') → 'label_team_web_1': a name Ansible takes as is."""
    return _INVALID.sub("_", "_".join(parts))


def ansible_host(addresses: Sequence[GuestAddress]) -> str | None:
    for address in addresses:
        if ":" not in address.address:
            return address.address
    return addresses[0].address if addresses else None


def inventory(outcomes: Sequence[Outcome]) -> tuple[dict[str, Any], list[str]]:
    """The inventory of the running VMs among `outcomes` (whose guests were read), and
    the names of those that run without an address yet."""
    hostvars: dict[str, dict[str, Any]] = {}
    groups: dict[str, set[str]] = {}
    no_address: list[str] = []
    for outcome in sorted(outcomes, key=lambda o: o.name):
        info, spec = outcome.guest, outcome.spec
        if spec is None or info is None or not info.running:
            continue
        host = outcome.host or "default"
        variables: dict[str, Any] = {
            "reconcile_host": outcome.host,
            "reconcile_source": outcome.source,
            "reconcile_labels": dict(spec.labels),
            "reconcile_addresses": [address.to_json() for address in info.addresses],
            "reconcile_agent": info.agent,
        }
        chosen = ansible_host(info.addresses)
        if chosen is None:
            no_address.append(outcome.name)
        else:
            variables["ansible_host"] = chosen
        hostvars[outcome.name] = variables
        for key, value in spec.labels:
            groups.setdefault(group_name("label", key, value), set()).add(outcome.name)
        groups.setdefault(group_name("host", host), set()).add(outcome.name)
    document: dict[str, Any] = {"_meta": {"hostvars": hostvars},
                                "all": {"children": [*sorted(groups), "ungrouped"]}}
    for name in sorted(groups):
        document[name] = {"hosts": sorted(groups[name])}
    document["ungrouped"] = {"hosts": []}
    return document, no_address

"""Section 8 in a plan: which firmware, CPU, boot and console fields differ, and the
hot-plug steps where the running domain can take a change without a restart. Pure.

Called by `planner.vm` for both comparisons it makes: the manifest against the saved
definition (what a define changes) and against the live one (what needs a restart).
A field the manifest leaves out (None) is never a change.

Disruption classes, as measured on libvirt 9.0 / QEMU 7.2:
- `guestAgent` hot-plugs (attach/detach with VIR_DOMAIN_AFFECT_LIVE) when the running
  domain has a virtio-serial controller; without one, libvirt refuses ("no
  virtio-serial controllers are available") and cannot hot-plug the controller, so
  adding the agent then needs a restart. Unplugging it always works.
"""

from __future__ import annotations

from ..domainxml.devices import agent_channel_xml
from ..model import Action, Change, DomainConfig, Step, VMSpec


def _flag(value: bool) -> str:
    return "true" if value else "false"


def device_changes(spec: VMSpec, config: DomainConfig) -> list[Change]:
    """What differs between the manifest and `config`, each marked as needing a restart
    (`hotplug_steps` lifts that where the running domain takes the change live)."""
    changes = []
    if spec.guest_agent is not None and spec.guest_agent != config.guest_agent:
        changes.append(Change("guestAgent", _flag(config.guest_agent),
                              _flag(spec.guest_agent), True))
    return changes


def hotplug_steps(spec: VMSpec, live: DomainConfig) -> tuple[list[Step], frozenset[str]]:
    """The live steps that apply what differs in the running domain, and the fields
    they take care of (no restart needed for those)."""
    steps: list[Step] = []
    fields: set[str] = set()
    if spec.guest_agent is not None and spec.guest_agent != live.guest_agent:
        change = Change("guestAgent", _flag(live.guest_agent), _flag(spec.guest_agent))
        if not spec.guest_agent:
            steps.append(Step(Action.DETACH, f"{change} (live)", xml=agent_channel_xml()))
            fields.add(change.field)
        elif live.virtio_serial:
            steps.append(Step(Action.ATTACH, f"{change} (live)", xml=agent_channel_xml()))
            fields.add(change.field)
    return steps, frozenset(fields)

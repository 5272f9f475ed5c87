"""Section 8 in a plan: which firmware, CPU, boot and console fields differ, the
hot-plug steps where the running domain can take a change without a restart, and the
refusals that need the domain to decide. Pure.

Called by `planner.vm` for both comparisons it makes: the manifest against the saved
definition (what a define changes) and against the live one (what needs a restart). A
field the manifest leaves out (None) is never a change: it keeps what the domain has.

Disruption classes, as measured on libvirt 9.0 / QEMU 7.2:
- `guestAgent` hot-plugs (attach/detach with VIR_DOMAIN_AFFECT_LIVE) when the running
  domain has a virtio-serial controller; without one, libvirt refuses ("no
  virtio-serial controllers are available") and cannot hot-plug the controller, so
  adding the agent then needs a restart. Unplugging it always works.
- `serial` needs a restart: QEMU cannot plug or unplug an ISA serial port ("Bus
  'isa.0' does not support hotplugging").
- `graphics` and `graphicsListen` need a restart: "live attach of device 'graphics' is
  not supported".
- `firmware`, `secureBoot`, `tpm`, `cpu`, `boot` and `kernel` take effect at boot.

The live comparison allows for what libvirt changes when it starts a domain: a
`host-model` CPU runs as the `custom` CPU libvirt expanded it to; EFI auto-selection
shows up as the loader and NVRAM it chose. A restart-only field that the define
changes now always needs the restart, whatever the live form says.
"""

from __future__ import annotations

from collections.abc import Collection

from ..domainxml.cpu import wanted_mode
from ..domainxml.devices import agent_channel_xml
from ..model import CPU, Action, Change, DomainConfig, Kernel, Step, VMSpec

#: The fields a running domain may take without a restart (where `hotplug_steps` says).
HOT_PLUGGABLE = frozenset({"guestAgent"})


def _flag(value: bool | None) -> str:
    return "auto" if value is None else "true" if value else "false"


def describe_cpu(cpu: CPU | None) -> str:
    if cpu is None:
        return "the hypervisor's default"
    mode = cpu.mode or ("custom" if cpu.model else None)
    parts = [f"{mode} {cpu.model}" if cpu.model else mode] if mode else []
    if cpu.topology:
        sockets, cores, threads = cpu.topology
        parts.append(f"sockets={sockets} cores={cores} threads={threads}")
    return ", ".join(parts) or "no mode, model or topology"


def describe_kernel(kernel: Kernel) -> str:
    if not kernel.path:
        return "none"
    text = kernel.path
    if kernel.initrd:
        text += f" initrd={kernel.initrd}"
    if kernel.cmdline:
        text += f" cmdline={kernel.cmdline!r}"
    return text


def _cpu_differs(want: CPU, have: CPU | None, *, live: bool) -> bool:
    mode = wanted_mode(want)
    have_mode = have.mode if have else None
    if mode is not None and mode != have_mode and not (
            live and mode == "host-model" and have_mode == "custom"):
        return True
    if mode == "custom" and want.model is not None and (have is None or have.model != want.model):
        return True
    return want.topology is not None and (have is None or have.topology != want.topology)


def device_changes(spec: VMSpec, config: DomainConfig, *, live: bool = False) -> list[Change]:
    """What differs between the manifest and `config` (the saved definition, or with
    `live` the running one), each marked as needing a restart (`hotplug_steps` lifts
    that where the running domain takes the change live)."""
    changes = []
    if spec.firmware is not None and spec.firmware != config.firmware:
        changes.append(Change("firmware", config.firmware, spec.firmware, True))
    wanted_secure = spec.secure_boot
    if wanted_secure is None and spec.firmware == "efi" and config.firmware != "efi":
        wanted_secure = False  # a domain that becomes EFI gets the default
    if (wanted_secure is not None and (spec.firmware or config.firmware) == "efi"
            and wanted_secure != config.secure_boot
            and not (live and config.secure_boot is None)):
        changes.append(Change("secureBoot", _flag(config.secure_boot), _flag(wanted_secure),
                              True))
    if spec.tpm is not None and spec.tpm != config.tpm:
        changes.append(Change("tpm", _flag(config.tpm), _flag(spec.tpm), True))
    if spec.cpu is not None and _cpu_differs(spec.cpu, config.cpu, live=live):
        changes.append(Change("cpu", describe_cpu(config.cpu), describe_cpu(spec.cpu), True))
    if spec.boot is not None and spec.boot != config.boot:
        changes.append(Change("boot", ", ".join(config.boot) if config.boot else "(per device)",
                              ", ".join(spec.boot), True))
    if spec.kernel is not None and spec.kernel != config.kernel:
        changes.append(Change("kernel", describe_kernel(config.kernel),
                              describe_kernel(spec.kernel), True))
    if spec.graphics is not None and spec.graphics != config.graphics:
        changes.append(Change("graphics", config.graphics or "(other)", spec.graphics, True))
    elif (spec.graphics_listen is not None and spec.graphics not in (None, "none")
          and spec.graphics_listen != config.graphics_listen):
        changes.append(Change("graphicsListen", config.graphics_listen or "(default)",
                              spec.graphics_listen, True))
    if spec.serial is not None and spec.serial != config.serial:
        changes.append(Change("serial", _flag(config.serial), _flag(spec.serial), True))
    if spec.guest_agent is not None and spec.guest_agent != config.guest_agent:
        changes.append(Change("guestAgent", _flag(config.guest_agent),
                              _flag(spec.guest_agent), True))
    return changes


def live_changes(spec: VMSpec, saved: DomainConfig, live: DomainConfig) -> list[Change]:
    """What the running domain lacks: the live comparison, and every restart-only field
    the define changes now (its live form may hide the difference)."""
    changes = device_changes(spec, live, live=True)
    seen = {change.field for change in changes}
    changes += [change for change in device_changes(spec, saved)
                if change.field not in seen and change.field not in HOT_PLUGGABLE]
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


def refusal(spec: VMSpec, saved: DomainConfig | None, *, machine: str | None,
            cpu_models: Collection[str] | None) -> str | None:
    """Why the manifest cannot be applied to this domain (None: a new one), or None.
    Nothing of the VM's plan is done then: the VM fails with this one line.

    `machine`: the machine the domain will have, resolved ('pc-q35-7.2');
    `cpu_models`: the CPU models the host's libvirt knows for it (None: not known, as on
    a read-only connection: libvirt refuses an unknown model when the domain starts).
    A model the domain already has is not checked: the manifest changes nothing there.
    """
    if spec.secure_boot and machine and "q35" not in machine:
        return (f"secureBoot needs a q35 machine; the domain has {machine}: set spec.machine: "
                "q35 (a machine change is a restart)")
    if (saved is not None and spec.graphics in ("vnc", "spice")
            and spec.graphics_listen is None and saved.graphics_exposed):
        where = saved.graphics_listen or "a libvirt network's address"
        return (f"graphics: the domain's {saved.graphics or 'display'} listens on {where}, "
                "beyond 127.0.0.1, and the manifest has no graphicsListen: set "
                f"graphicsListen: {saved.graphics_listen or 'ADDRESS'} to keep that, or "
                "graphicsListen: 127.0.0.1")
    model = spec.cpu.model if spec.cpu is not None else None
    have = saved.cpu.model if saved is not None and saved.cpu is not None else None
    if model and model != have and cpu_models is not None and model not in cpu_models:
        return (f"cpu: model '{model}' is unknown to this host's libvirt ({spec.type}, "
                f"{machine or 'the default machine'}; known: {_some(cpu_models)}): libvirt "
                "would refuse to start the domain")
    return None


def _some(names: Collection[str], shown: int = 6) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:shown]) + (f", ... ({len(ordered)})" if len(ordered) > shown
                                         else "")

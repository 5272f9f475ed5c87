"""Value types shared by every layer: the desired VM, the observed domain, the plan.

Frozen dataclasses and enums only; no I/O. The manifest loader builds `VMSpec`,
`domainxml` parses libvirt XML into `DomainConfig`, the hypervisor edge fills
`Observed`, and the planner turns a (`VMSpec`, `Observed`) pair into a `Plan`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# section 8's values, re-exported with the others
from .hardware import CPU as CPU
from .hardware import NO_KERNEL as NO_KERNEL
from .hardware import Kernel as Kernel
from .resourcemodel import DhcpChange

# The storage values live in storagemodel.py; model is where every layer finds them.
from .storagemodel import SHARED_POOL_TYPES as SHARED_POOL_TYPES
from .storagemodel import Backing as Backing
from .storagemodel import CloudInit as CloudInit
from .storagemodel import ImageSpec as ImageSpec
from .storagemodel import PoolInfo as PoolInfo
from .storagemodel import SeedWant as SeedWant
from .storagemodel import VolumeInfo as VolumeInfo
from .storagemodel import VolumeWant as VolumeWant


class DesiredState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    ABSENT = "absent"


class UpdatePolicy(enum.Enum):
    RESTART = "restart"
    NEXT_BOOT = "next-boot"


class MoveStrategy(enum.Enum):
    COLD = "cold"
    LIVE = "live"


class Readiness(enum.Enum):
    """When a running VM counts as ready (spec.readiness)."""

    RUNNING = "running"  # the domain runs
    ADDRESS = "address"  # ... and has an address (DHCP lease or guest agent)
    AGENT = "agent"  # ... and its guest agent answers guest-ping


class Power(enum.Enum):
    """A domain's power state, folded to what reconciling needs to know."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    OTHER = "other"  # shutting down, crashed, pmsuspended, blocked: active but not plain running

    @property
    def active(self) -> bool:
        return self is not Power.STOPPED


class Action(enum.Enum):
    """Plan steps, in the only order they may run (a pass: pools, images, networks, VMs;
    removal in reverse)."""

    DEFINE_POOL = "define-pool"  # a StoragePool's own plan, before any image's
    BUILD_POOL = "build-pool"
    START_POOL = "start-pool"
    AUTOSTART_POOL = "autostart-pool"
    IMPORT_IMAGE = "import-image"  # an Image's own plan, before any VM's
    UPDATE_NETWORK = "update-network"  # a Network's own plan: a live DHCP change
    DEFINE_NETWORK = "define-network"  # its saved definition
    STOP_NETWORK = "stop-network"  # a restart (no running domain attached) or a removal
    START_NETWORK = "start-network"
    AUTOSTART_NETWORK = "autostart-network"
    CREATE_VOLUME = "create-volume"
    GROW_VOLUME = "grow-volume"
    CREATE_SEED = "create-seed"  # a cloud-init seed volume, built and uploaded
    SET_MEMORY = "set-memory"
    ATTACH = "attach"  # hot-plug a device into the running domain (the guest agent channel)
    DETACH = "detach"  # unplug one from the running domain
    MIGRATE = "migrate"  # a live move to another host; only in a move plan
    SHUTDOWN = "shutdown"
    DESTROY = "destroy"
    COPY_VOLUME = "copy-volume"  # a cold move: a volume from the source host to the target
    UNDEFINE = "undefine"
    DEFINE = "define"
    AUTOSTART = "autostart"
    START = "start"
    DELETE_VOLUME = "delete-volume"  # state: absent, onRemove: delete, after the undefine
    UNDEFINE_NETWORK = "undefine-network"  # after the VMs: removal goes in reverse
    STOP_POOL = "stop-pool"  # an empty pool only; its folder stays
    UNDEFINE_POOL = "undefine-pool"


class Result(enum.Enum):
    """How a VM's reconcile ended: 'web-1 has been ...'."""

    UNCHANGED = "unchanged"
    CONVERGED = "converged"
    PLANNED = "planned"
    FAILED = "failed"
    CONFLICT = "conflict"
    RESTART_PENDING = "restart-pending"
    SUSPENDED = "suspended"
    PRUNED = "pruned"


@dataclass(frozen=True)
class Disk:
    """A disk: a file (`source`) or a volume (`volume` in `pool`; `source` is "").

    `image`, `copy`, `size` and `on_remove` say how reconcile creates and removes a
    volume: the domain XML knows nothing of them."""

    source: str
    target: str
    format: str = "qcow2"
    bus: str = "virtio"
    readonly: bool = False
    volume: str | None = None
    pool: str | None = None
    image: str | None = None
    copy: bool = False
    size: int | None = None  # bytes
    on_remove: str = "keep"

    @property
    def attached(self) -> tuple[str, str, str, str, bool, str | None, str | None]:
        """What the domain XML says of the disk: the part a define changes."""
        return (self.target, self.source, self.format, self.bus, self.readonly, self.volume,
                self.pool)

    @property
    def where(self) -> str:
        """'pool/volume' or the file, as messages name a disk."""
        return f"{self.pool}/{self.volume}" if self.volume else self.source


@dataclass(frozen=True)
class Interface:
    """A NIC; exactly one of network/bridge is set. mac None means: keep what exists."""

    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: str = "virtio"

    @property
    def attachment(self) -> str:
        return f"network {self.network}" if self.network is not None else f"bridge {self.bridge}"


@dataclass(frozen=True)
class VMSpec:
    """One valid VirtualMachine manifest document, defaults applied, sizes in KiB."""

    name: str
    source: str  # manifest file, relative to the manifest directory
    state: DesiredState = DesiredState.RUNNING
    uuid: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    memory_kib: int = 0
    current_memory_kib: int = 0
    vcpus: int = 0
    type: str = "kvm"
    arch: str | None = None
    machine: str | None = None
    autostart: bool = False
    update_policy: UpdatePolicy = UpdatePolicy.RESTART
    stop_timeout: int = 60
    adopt: bool = False
    suspend: bool = False
    disks: tuple[Disk, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    host: str | None = None  # a named host; None: the -c connection
    move_strategy: MoveStrategy = MoveStrategy.COLD
    cloud_init: CloudInit | None = None
    # Section 8 (firmware, CPU, boot, consoles). None: the manifest leaves the field out,
    # which keeps what an existing domain has (a new domain gets the default).
    firmware: str | None = None  # bios | efi (default bios)
    secure_boot: bool | None = None  # efi only (default false)
    tpm: bool | None = None  # an emulated TPM 2.0 (default false)
    cpu: CPU | None = None  # mode, model, topology (default: the hypervisor's)
    boot: tuple[str, ...] | None = None  # hd | cdrom | network, in order (default hd)
    kernel: Kernel | None = None  # direct kernel boot; NO_KERNEL removes it (default none)
    graphics: str | None = None  # none | vnc | spice (default none)
    graphics_listen: str | None = None  # an address; None: 127.0.0.1 where reconcile adds one
    serial: bool | None = None  # a pty serial port and console (default true)
    guest_agent: bool | None = None  # the org.qemu.guest_agent.0 channel (default false)
    readiness: Readiness = Readiness.RUNNING


@dataclass(frozen=True)
class DomainConfig:
    """What reconcile models of one libvirt domain definition (saved or live)."""

    name: str
    uuid: str
    type: str
    arch: str | None
    machine: str | None
    memory_kib: int
    current_memory_kib: int
    vcpus: int
    disks: tuple[Disk, ...]
    interfaces: tuple[Interface, ...]
    managed: bool
    active: bool = False  # the XML is a running domain's live definition (it has an id)
    owner: str | None = None  # the host named by the ownership mark, if any
    source: str | None = None  # the manifest file named by the ownership mark, if any
    #: the volumes reconcile created for this domain (pool, name), kept in its mark
    created_volumes: tuple[tuple[str, str], ...] = ()
    seed: tuple[str, str] | None = None  # the cloud-init seed cdrom's (pool, volume)
    efi: bool = False  # the firmware is UEFI (a seed cdrom then goes on virtio-scsi)
    #: devices a manifest cannot describe, kept as they are: "disk vdb: a block disk (/dev/x)"
    kept: tuple[str, ...] = ()
    firmware: str = "bios"  # bios | efi (a pflash loader or an NVRAM is efi)
    secure_boot: bool | None = False  # None: EFI auto-selection chooses (no feature says)
    tpm: bool = False  # any <tpm> device
    cpu: CPU | None = None  # None: no <cpu> element
    boot: tuple[str, ...] | None = ("hd",)  # None: per-device boot order, or other devices
    kernel: Kernel = NO_KERNEL
    graphics: str | None = "none"  # None: several, or another type (sdl, rdp, egl-headless)
    graphics_listen: str | None = None  # the address it listens on, when one is written
    graphics_exposed: bool = False  # it listens beyond loopback (an address, or a network)
    serial: bool = False  # a <serial>, or a <console> of target type serial
    guest_agent: bool = False  # a virtio channel named org.qemu.guest_agent.0
    virtio_serial: bool = False  # a virtio-serial controller: a channel can be hot-plugged


@dataclass(frozen=True)
class Observed:
    """A domain as libvirt reported it at one moment. `saved` is the persistent
    definition (the live one for a transient domain), `live` the running one."""

    name: str
    exists: bool
    power: Power = Power.STOPPED
    persistent: bool = False
    autostart: bool = False
    saved: DomainConfig | None = None
    live: DomainConfig | None = None
    saved_xml: str | None = None

    @property
    def managed(self) -> bool:
        return self.saved is not None and self.saved.managed


ABSENT_DOMAIN = Observed(name="", exists=False)


@dataclass(frozen=True)
class GuestAddress:
    """One address of a running guest, and where libvirt learnt it."""

    address: str
    prefix: int
    mac: str
    source: str  # "lease" (a libvirt network's DHCP lease) | "agent" (the guest agent)

    def to_json(self) -> dict[str, object]:
        return {"address": self.address, "prefix": self.prefix, "mac": self.mac,
                "source": self.source}


@dataclass(frozen=True)
class GuestInfo:
    """What a domain's guest shows from outside at one moment (controller.virt.guest).

    `agent`: True when the guest agent answered, False when it did not, None when the
    domain has no agent channel or is not running. `error`: why the addresses or the
    agent could not be read (then they are unknown, not absent)."""

    running: bool = False
    addresses: tuple[GuestAddress, ...] = ()
    channel: bool = False  # the running domain has the org.qemu.guest_agent.0 channel
    agent: bool | None = None
    agent_error: str | None = None  # why the agent did not answer, in libvirt's words
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"addresses": [address.to_json() for address in self.addresses],
                "agent": self.agent}


NO_GUEST = GuestInfo()


@dataclass(frozen=True)
class Change:
    """One field that differs: 'vcpus: 1 → 2'."""

    field: str
    old: str
    new: str
    needs_restart: bool = False

    def __str__(self) -> str:
        return f"{self.field} {self.old} → {self.new}"


@dataclass(frozen=True)
class Step:
    """One libvirt operation with the reason it is needed and what it needs to run."""

    action: Action
    reason: str
    xml: str | None = None  # define; attach and detach: the device
    memory_kib: int | None = None  # set-memory
    timeout: int | None = None  # shutdown: seconds before a hard destroy
    autostart: bool | None = None  # autostart
    host: str | None = None  # in a move: the host the step runs on ("": the -c connection)
    to_host: str | None = None  # migrate: the destination host
    volume: VolumeWant | None = None  # create-volume, grow-volume, delete-volume
    image: ImageSpec | None = None  # import-image
    dhcp: DhcpChange | None = None  # update-network
    seed: SeedWant | None = None  # create-seed
    #: migrate: the target's volumes the migration copies the disks into (made first)
    volumes: tuple[VolumeWant, ...] = ()

    def to_json(self) -> dict[str, str]:
        return {"action": self.action.value, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The ordered steps for one VM, or why none may be taken.

    A move's plan runs `steps` (on the source and the target), then whatever a
    fresh look at the target plans there, then `after` (on the source).
    """

    steps: tuple[Step, ...] = ()
    changes: tuple[Change, ...] = ()
    conflict: str | None = None  # a state to resolve by hand: nothing is done
    failure: str | None = None  # nothing may be done now (unknown state, a refusal)
    terminal: bool = False  # the failure needs a manifest change (a shrink), not a retry
    restart_pending: str | None = None
    after: tuple[Step, ...] = ()
    note: str | None = None  # said with the outcome, e.g. why an orphan is left alone

    @property
    def moves(self) -> bool:
        return bool(self.after) or any(step.action is Action.MIGRATE for step in self.steps)


class Cause(enum.Enum):
    """What the caller should do about an outcome; the service's queue acts on it."""

    NONE = "none"  # done: nothing to retry
    RETRY = "retry"  # failed for now: try again after a backoff
    TERMINAL = "terminal"  # retrying cannot help until the manifest or the domain changes
    HOST_UNREACHABLE = "host-unreachable"  # look again once the host answers


@dataclass
class Outcome:
    """What became of one VM in one pass."""

    name: str
    source: str | None
    result: Result
    steps: list[Step] = field(default_factory=list)
    error: str | None = None
    changes: tuple[Change, ...] = ()
    note: str | None = None  # e.g. why a restart is pending
    observed: Observed | None = None  # as seen before any step ran
    spec: VMSpec | None = None
    host: str | None = None  # with several hosts: where this VM is (or was pruned from)
    multi_host: bool = False  # whether the pass had hosts: then JSON says "host"
    cause: Cause = Cause.NONE
    retry_after: float | None = None  # with Cause.RETRY: not before this many seconds
    orphan: bool = False  # about a managed domain that no manifest names
    kind: str = "vm"  # what it is about: "vm", "image", "network", "pool"
    guest: GuestInfo | None = None  # addresses and agent, when they were read (readiness.py)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "source": self.source,
            "steps": [step.to_json() for step in self.steps],
            "result": self.result.value,
            "error": self.error,
        }
        if self.multi_host:
            data["host"] = self.host
        data.update((self.guest or NO_GUEST).to_json())
        return data

"""Value types shared by every layer: the desired VM, the observed domain, the plan.

Frozen dataclasses and enums only; no I/O. The manifest loader builds `VMSpec`,
`domainxml` parses libvirt XML into `DomainConfig`, the hypervisor edge fills
`Observed`, and the planner turns a (`VMSpec`, `Observed`) pair into a `Plan`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .resourcemodel import DhcpChange


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
    SET_MEMORY = "set-memory"
    MIGRATE = "migrate"  # a live move to another host; only in a move plan
    SHUTDOWN = "shutdown"
    DESTROY = "destroy"
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
class ImageSpec:
    """One valid Image manifest document: a base disk VM volumes start from."""

    name: str
    source: str  # manifest file, relative to the manifest directory
    url: str
    sha256: str  # lower case
    format: str = "qcow2"
    pool: str = "default"

    @property
    def volume(self) -> str:
        """Its volume's name on every host: derived from the name and the content."""
        return f"{self.name}.sha256-{self.sha256[:12]}.{self.format}"


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
    #: devices a manifest cannot describe, kept as they are: "disk vdb: a block disk (/dev/x)"
    kept: tuple[str, ...] = ()


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
    xml: str | None = None  # define
    memory_kib: int | None = None  # set-memory
    timeout: int | None = None  # shutdown: seconds before a hard destroy
    autostart: bool | None = None  # autostart
    host: str | None = None  # in a move: the host the step runs on ("": the -c connection)
    to_host: str | None = None  # migrate: the destination host
    volume: VolumeWant | None = None  # create-volume, grow-volume, delete-volume
    image: ImageSpec | None = None  # import-image
    dhcp: DhcpChange | None = None  # update-network

    def to_json(self) -> dict[str, str]:
        return {"action": self.action.value, "reason": self.reason}


@dataclass(frozen=True)
class VolumeWant:
    """A volume as a step wants it: where, how big (bytes; None: the backing's), and what
    it starts from (nothing, an overlay on `backing`, or a copy of `copy_of`)."""

    pool: str
    name: str
    format: str = "qcow2"
    capacity: int | None = None
    backing: Backing | None = None
    copy_of: tuple[str, str] | None = None  # (pool, volume)
    target: str | None = None  # the disk's target, to grow it live
    live: bool = False  # grow-volume: through the running domain


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
        return data


# --- storage: what libvirt reports of pools and volumes (values) ------------------------

#: Pool types whose volumes are the same storage on every host that defines the pool (with
#: the same source): a cold move need not copy them. Everything else (dir, fs, logical,
#: disk, zfs, ...) is local to one host.
SHARED_POOL_TYPES = frozenset({"netfs", "gluster", "rbd", "sheepdog", "iscsi",
                               "iscsi-direct", "vstorage"})


@dataclass(frozen=True)
class Backing:
    """The file a qcow2 overlay reads what it has not written itself."""

    path: str
    format: str


@dataclass(frozen=True)
class PoolInfo:
    """A storage pool as libvirt reports it. Sizes in bytes (0 when the pool is inactive)."""

    name: str
    type: str
    path: str | None  # the target path (dir, fs, netfs, logical); None where there is none
    source: str | None  # "host:/dir", a device or a source name; None for a dir pool
    active: bool
    autostart: bool
    persistent: bool
    capacity: int
    allocation: int
    available: int

    @property
    def shared(self) -> bool:
        """Its volumes are the same storage on other hosts with the same pool: a cold move
        does not copy them (compare `source` between hosts before relying on it)."""
        return self.type in SHARED_POOL_TYPES


@dataclass(frozen=True)
class VolumeInfo:
    """A storage volume as libvirt reports it. Sizes in bytes."""

    name: str
    pool: str
    path: str
    key: str
    capacity: int  # what the guest sees
    allocation: int  # what the host has spent on it
    format: str | None
    backing: Backing | None
    mode: int | None  # file permissions, where the pool has them
    partial: bool  # an interrupted write: never attach it, never use it as a backing

"""Value types of storage: images, volumes and pools as manifests want them and libvirt
reports them, and what storage steps need. Frozen dataclasses only; no I/O. Re-exported
by `controller.model`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class CloudInit:
    """A VM's first-boot configuration, as the NoCloud seed will hold it. `meta_data` and
    `network_config` are canonical JSON (so the spec stays a comparable value); user data
    may hold secrets and is never printed."""

    user_data: str = ""
    meta_data: str = "{}"
    network_config: str | None = None
    pool: str = "default"

    def __repr__(self) -> str:  # never show user data
        return f"CloudInit(pool={self.pool!r}, ...)"


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
    target: str | None = None  # the disk's target, to grow it live (or to migrate it)
    live: bool = False  # grow-volume: through the running domain
    #: create-volume: only clear the partial marker of a volume a running domain already
    #: uses (a live move that ended before its marker was cleared)
    finish: bool = False


@dataclass(frozen=True)
class SeedWant:
    """A cloud-init seed volume as a create-seed step builds it. Holds the user data:
    never printed (see __repr__)."""

    pool: str
    volume: str
    content_sha256: str
    user_data: str
    meta_data: str  # canonical JSON, instance-id and local-hostname merged in
    network_config: str | None

    def __repr__(self) -> str:
        return f"SeedWant({self.pool}/{self.volume}, sha256:{self.content_sha256[:12]})"

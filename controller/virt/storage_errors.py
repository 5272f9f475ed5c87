"""The storage errors of reconcile: what a pool or volume call tells its caller.

    HypervisorError                 (controller.errors)
     ├── PoolNotFound               no pool of that name on the host
     ├── VolumeNotFound             no volume of that name in the pool
     └── PermanentError             (controller.errors) retrying will not help
          └── StorageRefused        we, or libvirt, refuse this storage request
               ├── InvalidRequest   a request that makes no sense (no size, a raw overlay, ...)
               │    └── InvalidName a name that could leave its pool; refused before libvirt
               ├── PoolUnusable     a pool that is inactive, or cannot be made the way we need
               ├── PoolFull         no space left in the pool
               ├── ShrinkRefused    a smaller capacity than the volume (or its backing) has
               ├── VolumeConflict   a volume exists but is not the one wanted, or is in use
               ├── PartialVolume    an interrupted write: never attached, never used as a backing
               ├── ChecksumMismatch the content is not what was expected; both sums in the message
               └── UnsafeImage      an uploaded qcow2 that names a backing file of its own

Raised by `controller.virt.storage` only, which classifies every libvirt error once
(storage codes first, then `controller.hypervisor.classify`).
"""

from __future__ import annotations

from controller.errors import HypervisorError, PermanentError


class PoolNotFound(HypervisorError):
    """The pool does not exist (libvirt VIR_ERR_NO_STORAGE_POOL)."""


class VolumeNotFound(HypervisorError):
    """The volume does not exist (libvirt VIR_ERR_NO_STORAGE_VOL)."""


class StorageRefused(PermanentError):
    """A storage request that will not succeed as asked."""


class InvalidRequest(StorageRefused):
    """Arguments that cannot make a volume (a format we do not make, no capacity, ...);
    nothing was sent to libvirt."""


class InvalidName(InvalidRequest):
    """A volume or pool name, or a pool path, that is not allowed; nothing was sent to
    libvirt."""


class PoolUnusable(StorageRefused):
    """The pool is inactive, or its definition conflicts with the one wanted."""


class PoolFull(StorageRefused):
    """The pool has no space left for this volume (ENOSPC or not enough available)."""


class ShrinkRefused(StorageRefused):
    """A capacity smaller than the current one: disks grow, never shrink."""


class VolumeConflict(StorageRefused):
    """A volume of that name exists and differs from the one wanted, or is in use."""


class PartialVolume(StorageRefused):
    """The volume is an interrupted write (its partial marker exists)."""


class ChecksumMismatch(StorageRefused):
    """The volume's content does not have the expected sha256."""


class UnsafeImage(StorageRefused):
    """An uploaded qcow2 names a backing file of its own (it could read any host file)."""

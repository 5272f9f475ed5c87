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

Raised by the storage modules of this package (pools, volumes, transfer), which classify
every libvirt error once with `classify_storage` (storage codes first, then
`errors.classify`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import libvirt

from ..errors import HypervisorError, PermanentError
from .errors import classify, code

T = TypeVar("T")


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


_FULL_WORDS = ("no space left on device", "not enough space", "disk quota exceeded",
               "not enough free space")


def classify_storage(exc: libvirt.libvirtError, what: str) -> HypervisorError:
    """A libvirtError from a storage call as one of ours, with a one-line message."""
    number = exc.get_error_code()
    text = (exc.get_error_message() or str(exc)).strip().replace("\n", " ")
    message = f"{what}: {text} (libvirt error {number}, domain {exc.get_error_domain()})"
    lowered = text.lower()
    if number == code("VIR_ERR_NO_STORAGE_POOL"):
        return PoolNotFound(message, code=number, domain=exc.get_error_domain())
    if number == code("VIR_ERR_NO_STORAGE_VOL"):
        return VolumeNotFound(message, code=number, domain=exc.get_error_domain())
    if any(word in lowered for word in _FULL_WORDS):
        return PoolFull(message, code=number, domain=exc.get_error_domain())
    if (number == code("VIR_ERR_STORAGE_VOL_EXIST") or "already in use" in lowered
            or ("storage vol" in lowered and "already exists" in lowered)):
        return VolumeConflict(message, code=number, domain=exc.get_error_domain())
    return classify(exc, what)


@contextlib.contextmanager
def translate_storage(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise classify_storage(exc, what) from exc


#: What libvirt says while it still builds a volume in the pool (a copy, an allocation;
#: perhaps for a client killed meanwhile): that volume cannot be deleted, nor the pool
#: refreshed, until the build is done.
_BUILDING_WORDS = ("is still being allocated", "has asynchronous jobs running")


def when_built(call: Callable[[], T], what: str, *, patience: float = 600.0) -> T:
    """`call()`, a libvirt call on a pool or volume, retried while libvirt builds a volume
    in that pool (a copy of a large image takes minutes), at most `patience` seconds;
    any other error is classified at once."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return call()
        except libvirt.libvirtError as exc:
            text = (exc.get_error_message() or str(exc)).lower()
            if not any(word in text for word in _BUILDING_WORDS) or time.monotonic() > deadline:
                raise classify_storage(exc, what) from exc
        time.sleep(delay)
        delay = min(2 * delay, 1.0)

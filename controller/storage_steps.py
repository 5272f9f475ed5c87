"""Runs the storage steps of a plan on a host: import-image, create-volume, grow-volume,
delete-volume; and those of a move between two hosts: copy-volume, a migrate that copies
disks. Called by the executor, under the lock of the VM (or image) the steps
belong to; each step is safe to repeat after a kill -9 (the partial rule of
controller/virt/volumes.py: an interrupted write is made again, never used).

An image import downloads the image into the local cache (controller/images/,
verified by sha256), then uploads it through a libvirt stream, hashing what it sends
and comparing again: what lands in the pool is what was verified.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import HypervisorError, PermanentError, TransientError
from .model import Action, Step
from .virt import Hypervisor

#: A progress callback for one download: (bytes done, total or None).
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class StepContext:
    """What storage steps need beyond the host: where images are cached, and (on a
    terminal) a progress line per download."""

    images_dir: Path | None = None
    progress: Callable[[str], Progress | None] | None = None
    download_timeout: float = 60.0  # no byte for this long: the download fails


def run_storage_step(hypervisor: Hypervisor, name: str, step: Step,
                     context: StepContext) -> None:
    storage = hypervisor.storage
    want = step.volume
    if step.action is Action.IMPORT_IMAGE:
        _import(hypervisor, step, context)
    elif step.action is Action.CREATE_VOLUME:
        assert want is not None
        storage.require_pool(want.pool)
        if want.finish:
            storage.clear_partial(want.pool, want.name)
        elif want.copy_of is not None:
            storage.copy(want.pool, want.name, source_pool=want.copy_of[0],
                         source_name=want.copy_of[1], capacity=want.capacity,
                         format=want.format)
        else:
            storage.create(want.pool, want.name, capacity=want.capacity, format=want.format,
                           backing=want.backing)
    elif step.action is Action.GROW_VOLUME:
        assert want is not None and want.capacity is not None
        if want.live and want.target:
            storage.grow_live(name, want.target, want.capacity)
        else:
            storage.grow(want.pool, want.name, want.capacity)
    elif step.action is Action.CREATE_SEED:
        _seed(hypervisor, step)
    elif step.action is Action.DELETE_VOLUME:
        assert want is not None
        storage.delete(want.pool, want.name)
    else:  # pragma: no cover - the executor sends only storage actions here
        raise AssertionError(step.action)


def _import(hypervisor: Hypervisor, step: Step, context: StepContext) -> None:
    from .images import FetchError, fetch_image  # a pass without imports never loads it
    from .virt.storage import Check

    image = step.image
    assert image is not None
    if context.images_dir is None:
        raise PermanentError(f"image {image.name}: no folder to download images into "
                             "(--state-dir)")
    progress = context.progress(image.name) if context.progress else None
    try:
        fetched = fetch_image(url=image.url, sha256=image.sha256, cache_dir=context.images_dir,
                              progress=progress, stall_timeout=context.download_timeout)
    except FetchError as error:
        _close(progress)
        # A download that may work later is retried by the next pass (or the service's
        # backoff), not here: a stalled one would hold the image's lock for minutes.
        raise PermanentError(f"image {image.name}: {error}") from error
    except OSError as error:
        _close(progress)
        raise TransientError(f"image {image.name}: {error}") from error
    _close(progress)
    hypervisor.storage.require_pool(image.pool)
    hypervisor.storage.upload(image.pool, image.volume, path=str(fetched.path),
                              format=image.format, sha256=image.sha256, check=Check.SENT)


def _seed(hypervisor: Hypervisor, step: Step) -> None:
    """Build the NoCloud ISO in memory (pure Python, deterministic) and upload it, readable
    by root only where the pool allows it: user data may hold secrets."""
    import json
    import tempfile

    from .cloudinit import SeedError, build_seed
    from .virt.storage import Check

    want = step.seed
    assert want is not None
    try:
        seed = build_seed(user_data=want.user_data, meta_data=json.loads(want.meta_data),
                          network_config=json.loads(want.network_config)
                          if want.network_config else None)
    except SeedError as error:
        raise PermanentError(f"seed {want.volume}: {error}") from error
    hypervisor.storage.require_pool(want.pool)
    with tempfile.NamedTemporaryFile(prefix="reconcile-seed-", suffix=".iso") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(seed.data)
        file.flush()
        hypervisor.storage.upload(want.pool, want.volume, path=file.name, format="raw",
                                  sha256=seed.sha256, check=Check.SENT, mode=0o600)


def _close(progress: Progress | None) -> None:
    """End a progress line (ProgressLine.close) once its download is over."""
    close = getattr(progress, "close", None)
    if callable(close):
        close()


def copy_to(source: Hypervisor, target: Hypervisor, step: Step) -> None:
    """copy-volume of a cold move: the source's volume on the target, verified."""
    want = step.volume
    assert want is not None
    target.storage.require_pool(want.pool)
    source.storage.carry_to(target.storage, want.pool, want.name,
                            where=f"host {step.to_host or '(-c)'}")


def migrate_with_volumes(source: Hypervisor, target: Hypervisor, name: str,
                         step: Step) -> None:
    """A live move whose disks libvirt copies: their volumes are made on the target
    first (partial until the migration is done), then the domain migrates."""
    assert step.xml is not None
    for pool in dict.fromkeys(want.pool for want in step.volumes):
        target.storage.require_pool(pool)
    disks = [want.target for want in step.volumes if want.target]
    with target.storage.receiving(step.volumes) as keep:
        try:
            source.steps.migrate(name, target.connection, persist_xml=step.xml, disks=disks)
        except HypervisorError:
            if _arrived(target, name):  # failed after the switch-over: the guest runs there
                keep()
            raise


def _arrived(target: Hypervisor, name: str) -> bool:
    try:
        seen = target.domains.observe(name)
    except HypervisorError:
        return False
    return seen.exists and seen.persistent and seen.power.active

"""Putting a run together from its settings: the hosts, the locks, the reconciler.

Used by the CLI's commands (`--once`, `status`) and the service, so every mode
builds the same parts the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .executor import RetryPolicy, StepObserver
from .hosts import Hosts, MakeHypervisor
from .inventory import Inventory, default_state_dir
from .locks import VMLocks, default_lock_dir
from .reconciler import ManifestSource, Reconciler
from .settings import Settings
from .storage_steps import Progress, StepContext
from .virt import Hypervisor, connections_for

#: Keepalive (interval s, count) on remote hosts: one that stops answering fails calls
#: after about 20 s instead of TCP's minutes.
KEEPALIVE = (5, 3)


def locks_for(settings: Settings) -> VMLocks:
    return VMLocks(settings.lock_dir or default_lock_dir(), timeout=settings.lock_timeout)


def make_hosts(settings: Settings, *, readonly: bool,
               make_hypervisor: MakeHypervisor | None = None) -> Hosts:
    """The hosts of a run (none connected yet; `set_hosts` with the load's hosts next)."""
    def plain(_name: str, uri: str | None) -> Hypervisor:
        return Hypervisor.open(uri, readonly=readonly, keepalive=KEEPALIVE,
                               connections=connections_for(settings.workers))

    return Hosts(default_uri=settings.connect, make_hypervisor=make_hypervisor or plain,
                 inventory=Inventory(settings.state_dir or default_state_dir(),
                                     writable=not readonly),
                 connect_timeout=settings.connect_timeout,
                 explicit_default=settings.connect is not None)


def make_reconciler(settings: Settings, hosts: Hosts, manifests: ManifestSource, *,
                    dry_run: bool, scope: Callable[[], set[str]],
                    observer: StepObserver | None = None, recover_inline: bool = True,
                    prune: bool | None = None, max_prune: int | None = None,
                    retry: RetryPolicy | None = None,
                    progress: Callable[[str], Progress | None] | None = None) -> Reconciler:
    images_dir = Path(settings.state_dir or default_state_dir()) / "images"
    return Reconciler(
        hosts=hosts, manifests=manifests, locks=None if dry_run else locks_for(settings),
        scope=scope, dry_run=dry_run, retry=retry or RetryPolicy(), observer=observer,
        prune=settings.prune if prune is None else prune,
        max_prune=settings.max_prune if max_prune is None else max_prune,
        recover_inline=recover_inline,
        step_context=StepContext(images_dir=images_dir, progress=progress,
                                 download_timeout=settings.download_timeout))

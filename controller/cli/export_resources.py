"""`reconcile export --network NAME --pool NAME` and `export --all --kind network|pool`:
the documents of existing networks and storage pools (controller/export_resources.py),
read through libvirt. Called by `commands.cmd_export`, which prints them before the
domains' (the order a pass creates them in).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..export_resources import NotExportable, network_manifest, pool_manifest
from ..settings import Settings
from ..virt import Hypervisor

log = logging.getLogger("controller")

#: What `export --all --kind` exports.
KINDS = ("vm", "network", "pool", "all")


def export_resources(hypervisor: Hypervisor, settings: Settings, *, networks: Sequence[str],
                     pools: Sequence[str], every: str | None
                     ) -> tuple[list[dict[str, Any]], bool]:
    """The documents of the named networks and pools (with `every` "network", "pool"
    or "all": all of that kind on the host), pools first; and whether any failed."""
    wanted_pools = list(pools)
    wanted_networks = list(networks)
    if every in ("pool", "all"):
        wanted_pools = hypervisor.pools.names()
    if every in ("network", "all"):
        wanted_networks = hypervisor.networks.names()
    documents: list[dict[str, Any]] = []
    failed = False
    def pool(name: str) -> tuple[dict[str, Any], list[str]]:
        return pool_manifest(hypervisor.pools.state(name), disk_roots=settings.disk_roots)

    def network(name: str) -> tuple[dict[str, Any], list[str]]:
        return network_manifest(hypervisor.networks.state(name),
                                disk_roots=settings.disk_roots)

    readers: tuple[tuple[list[str], Callable[[str], tuple[dict[str, Any], list[str]]]], ...]
    readers = ((wanted_pools, pool), (wanted_networks, network))
    for names, to_manifest in readers:
        for name in names:
            try:
                document, warnings = to_manifest(name)
            except NotExportable as error:
                failed = _fail(error)
                continue
            documents.append(document)
            for warning in warnings:
                log.warning("%s", warning)
    return documents, failed


def _fail(error: NotExportable) -> bool:
    for line in str(error).splitlines():
        sys.stderr.write(f"reconcile: error: {line}\n")
    return True

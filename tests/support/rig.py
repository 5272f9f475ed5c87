"""A run assembled the way the CLI assembles one (controller.assemble), over hypervisors
the test holds, so that a test can look at and change the same libvirt state.

libvirt's test driver gives each connection its own in-memory hypervisor: a test that
wants to see what a pass did must read through the pass's own connection, which a rig
keeps open across passes (`rig.hosts[name].hypervisor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.executor import RetryPolicy, StepObserver
from controller.hosts import Hosts
from controller.inventory import Inventory
from controller.locks import VMLocks
from controller.manifests import LoadResult
from controller.model import Outcome, VMSpec
from controller.passes import PassReport, run_pass
from controller.reconciler import FixedManifests, Reconciler
from controller.virt import Hypervisor

FAST_RETRY = RetryPolicy(attempts=2, first_wait=0.01)


@dataclass
class Rig:
    """Hosts kept across passes, and a reconciler made afresh for each pass."""

    hosts: Hosts
    locks: VMLocks | None
    dry_run: bool = False
    workers: int = 4
    retry: RetryPolicy = FAST_RETRY
    observer: StepObserver | None = None
    only_host: str | None = None
    loads: list[LoadResult] = field(default_factory=list)

    @classmethod
    def single(cls, hypervisor: Hypervisor, locks: VMLocks | None, **options: object) -> Rig:
        """One host, the -c connection: `hypervisor`."""
        hosts = Hosts(default_uri=hypervisor.uri, make_hypervisor=lambda _n, _u: hypervisor,
                      inventory=Inventory("/nonexistent", writable=False))
        hosts.set_hosts({})
        return cls(hosts, locks, **options)  # type: ignore[arg-type]

    @classmethod
    def fleet(cls, hosts: dict[str, str], *, state: Path, locks: VMLocks | None,
              default_uri: str | None = None, dry_run: bool = False,
              connect_timeout: float = 5.0,
              make_hypervisor: Callable[[str, str | None], Hypervisor] | None = None,
              **options: object) -> Rig:
        """Several hosts, as hosts.yaml names them."""
        def plain(_name: str, uri: str | None) -> Hypervisor:
            return Hypervisor.open(uri, readonly=dry_run, keepalive=(5, 3))

        made = Hosts(default_uri=default_uri, make_hypervisor=make_hypervisor or plain,
                     inventory=Inventory(str(state), writable=not dry_run),
                     connect_timeout=connect_timeout, explicit_default=default_uri is not None)
        made.set_hosts(hosts)
        return cls(made, locks, dry_run=dry_run, **options)  # type: ignore[arg-type]

    def reconciler(self, load: LoadResult, *, prune: bool = False,
                   max_prune: int = 5) -> Reconciler:
        self.hosts.set_hosts(load.hosts)
        return Reconciler(hosts=self.hosts, manifests=FixedManifests(load), locks=self.locks,
                          scope=lambda: self.hosts.scope(load, self.only_host),
                          dry_run=self.dry_run, retry=self.retry, observer=self.observer,
                          prune=prune, max_prune=max_prune,
                          recover_inline=not self.hosts.several)

    def run_pass(self, load: LoadResult, *, prune: bool = False, max_prune: int = 5,
                 only_host: str | None = None) -> PassReport:
        self.only_host = only_host
        reconciler = self.reconciler(load, prune=prune, max_prune=max_prune)
        return run_pass(reconciler, load, workers=self.workers, only_host=only_host)

    def reconcile(self, spec: VMSpec, load: LoadResult | None = None) -> Outcome:
        """One VM, outside a pass (no listing), as a service's worker reconciles it."""
        if load is None:
            load = LoadResult(directory="", specs={spec.name: spec}, documents=1)
        return self.reconciler(load).reconcile_spec(spec)

    def close(self) -> None:
        self.hosts.close()

"""The service's triggers: what turns changes into names on the work queue. They never
decide what to do with a name; the workers reconcile it.

- a manifest change (watch.py): the names the changed files define now or before, and
  the Images changed or named by those VMs' disks (a VM placed on a new host needs its
  image there first);
- a libvirt lifecycle event: the domain's name (a network's or pool's: its key,
  "network:lab", "pool:vmstore");
- a resync (periodic, SIGHUP, after a (re)connect): every manifest's name and every
  managed domain no manifest names, each host listed in a thread of its own; and the
  key of every declared network and pool and of every managed one found. The listing
  is lent to the reconcile of each VM after it (virt/lent.py), in place of a lookup;
  an event spoils it for its VM.

Keys of networks and pools go first, then images, then VMs: the workers take them in
about that order, so that VMs mostly find what they need (those that do not are
failed and retried, and looked at again once it is there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConnectionLost, HypervisorError
from ..hosts import Host, Hosts
from ..images_reconcile import KEY_PREFIX as IMAGE_KEY
from ..manifests import LoadResult
from ..resourcekinds import KINDS
from ..virt import LentListing, Listing, Marker
from ..watch import ManifestSet
from ..workqueue import WorkQueue
from .states import FAILED, VMStates

log = logging.getLogger("controller.service")


class Triggers:
    """Names onto the queue, with what queued them (for the log)."""

    def __init__(self, *, queue: WorkQueue, manifests: ManifestSet, hosts: Hosts,
                 states: VMStates, why: dict[str, str], scope: Callable[[], set[str]],
                 prune: bool, want_resync: Callable[[str], None],
                 wake: Callable[[], None]):
        self.queue = queue
        self.manifests = manifests
        self.hosts = hosts
        self.states = states
        self.why = why
        self._scope = scope
        self._prune = prune
        self._want_resync = want_resync
        self._wake = wake

    def enqueue(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self.why[name] = why
            self.queue.add(name)

    def on_event(self, host: str, name: str, event: str) -> None:
        # In libvirt's event thread: only say which name to look at, and that the last
        # resync's listing no longer stands in for looking it up (virt/lent.py).
        log.debug("libvirt event on %s: %s %s", host or "default", name, event)
        found = self.hosts.get(host)
        lent = found.lent if found is not None else None
        if lent is not None:
            lent.spoil(name)
        self.enqueue([name], f"libvirt event '{event}'")

    def on_manifest_change(self, touched: set[str]) -> None:
        load, names, before = self.manifests.reload(touched)
        if load.hosts != before.hosts:
            self._want_resync("hosts changed")
        self.note_invalid(load)
        for kind in KINDS:
            after_specs, before_specs = kind.specs(load), kind.specs(before)
            changed = {name for name in set(after_specs) | set(before_specs)
                       if after_specs.get(name) != before_specs.get(name)}
            self.enqueue([kind.key(name) for name in sorted(changed)], "manifest change")
        images = {name for name in set(load.images) | set(before.images)
                  if load.images.get(name) != before.images.get(name)}
        # a VM new on a host (created or moved there) may need an image that host lacks
        images |= {disk.image for name in names if name in load.specs
                   for disk in load.specs[name].disks
                   if disk.image is not None and disk.image in load.images}
        self.enqueue([IMAGE_KEY + image for image in sorted(images)], "manifest change")
        self.enqueue(sorted(names), "manifest change")
        if load.prune_safe and not before.prune_safe and self._prune:
            # Orphans left alone while the manifests were incomplete: look at them again.
            self._want_resync("manifests complete again")
        self._wake()

    def note_invalid(self, load: LoadResult) -> None:
        for name in load.invalid_names:
            self.states.put(name, FAILED)

    # --- resync ------------------------------------------------------------------------

    def resync(self, reason: str, load: LoadResult, hosts: list[Host], *,
               on_silent: Callable[[Host], None], on_lost: Callable[[Host], None],
               ) -> set[str] | None:
        """Queue every manifest's name and every unnamed managed domain of the connected
        `hosts`; return the names queued (None when no host could be listed)."""
        started = time.monotonic()
        self.note_invalid(load)
        named = frozenset(load.specs)
        unnamed: set[str] = set()
        resources: set[str] = set()  # keys of the managed networks and pools found
        listed = False
        for host, listing in self._list(hosts, named):
            if listing is None:
                log.warning("resync (%s): no answer from %s within %gs", reason, host.label,
                            self.hosts.connect_timeout)
                host.hypervisor.connection.give_up()
                on_silent(host)
                continue
            if isinstance(listing, ConnectionLost):
                log.warning("resync (%s) cannot list the domains of %s: %s", reason,
                            host.label, listing)
                on_lost(host)
                continue
            if isinstance(listing, HypervisorError):
                log.warning("resync (%s): orphans on %s unknown: %s", reason, host.label,
                            listing)
                listed = True
                continue
            names, marks, found = listing
            listed = True
            unnamed |= set(marks)
            resources |= found
            self.hosts.inventory.record(host.name, (set(names) & named) | set(marks))
        if not listed:
            return None
        scope = self._scope()
        placed = {name: self.hosts.host_of(spec) for name, spec in load.specs.items()
                  if self.hosts.host_of(spec) in scope}
        # A VM of an unreachable host is failed by the caller, not queued: the resync
        # after its host connects queues it.
        names = {name for name, host in placed.items() if self.hosts[host].up} | unnamed
        declared = {kind.key(name) for kind in KINDS for name in kind.specs(load)}
        self.states.keep_only(set(placed) | unnamed | load.invalid_names | declared | resources)
        self.enqueue(sorted(declared | resources), f"resync ({reason})")
        self.enqueue([IMAGE_KEY + image for image in sorted(load.images)], f"resync ({reason})")
        self.enqueue(sorted(names), f"resync ({reason})")
        level = logging.DEBUG if reason == "periodic" else logging.INFO
        log.log(level, "resync (%s): %d VMs, %d managed domains without a manifest queued "
                "(%.0f ms)", reason, len(load.specs), len(unnamed),
                (time.monotonic() - started) * 1000)
        return names

    def _list(self, hosts: list[Host], named: frozenset[str]) -> list[tuple[Host, Any]]:
        """Each connected host's domain names, unnamed managed domains and the keys of its
        managed networks and pools, read in parallel: (names, marks, keys), the
        HypervisorError, or None when the host stopped
        answering. A call to a host cut off mid-call can wait far longer than keepalive
        promises (libvirt 9.0, seen in tests/multihost), and the loop must go on."""
        results: dict[str, Any] = {}

        def list_host(host: Host) -> None:
            # in place before the listing is taken: an event delivered meanwhile spoils it
            lent = host.lent = LentListing(still_valid=host.hypervisor.domains.holds)
            try:
                listing: Listing = host.hypervisor.domains.list_all()
                lent.lend(listing)
                marks: dict[str, Marker] = host.hypervisor.domains.managed(listing, skip=named)
                found = {kind.key(name) for kind in KINDS
                         for name in kind.managed(host.hypervisor)}
                results[host.name] = (listing.names, marks, found)
            except HypervisorError as error:
                results[host.name] = error

        started: list[tuple[Host, threading.Thread]] = []
        for host in hosts:
            if not host.up:
                continue
            if host.lister is not None and host.lister.is_alive():
                started.append((host, host.lister))  # the last listing has no answer yet
                continue
            host.lister = threading.Thread(target=list_host, args=(host,), daemon=True,
                                           name=f"list-{host.label}")
            host.lister.start()
            started.append((host, host.lister))
        # A host is given up when none of its calls started for a whole connect timeout:
        # a long listing of a slow host is progress, not silence.
        calls = {host.name: host.hypervisor.calls for host, _ in started}
        waiting = started
        while waiting:
            deadline = time.monotonic() + self.hosts.connect_timeout
            for _, thread in waiting:
                thread.join(max(0.0, deadline - time.monotonic()))
            moving = []
            for host, thread in waiting:
                if thread.is_alive() and host.hypervisor.calls != calls[host.name]:
                    calls[host.name] = host.hypervisor.calls
                    moving.append((host, thread))
            waiting = moving
        return [(host, results.get(host.name)) for host, _ in started]

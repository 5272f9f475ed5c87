"""The hosts of one manifest tree, and everything known of each: the one owner of per-host
state (its connection, reachable or not and why, its listing in this pass, reconnect
backoff), for one host and for many alike: one host is a set of one.

Used by the reconciler (which host a VM lives on, is it usable, the listing that may
stand in for a lookup), by `passes.run_pass` (connect and list the hosts in parallel,
within the connect deadline) and by the service's connection supervisor, which
drives the same `Host` state from its main loop.

A host that does not answer within the deadline, or whose listing fails, is
unreachable: its VMs are failed (unknown, never absent) and nothing on it is pruned.
Each complete listing is recorded in the inventory, so a VM that an unreachable host
last held is never created elsewhere meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ConnectionLost, HypervisorError
from .inventory import Inventory
from .locks import Held, VMLocks
from .manifests import LoadResult
from .model import VMSpec
from .planner.placement import host_label
from .virt import Hypervisor, LentListing, Listing, Marker

log = logging.getLogger(__name__)

#: The key of the host behind `-c` (VMs without spec.host).
DEFAULT_HOST = ""
#: Reconnecting inline (a VM found the connection lost): tries, and the first pause.
RECONNECTS = 3
RECONNECT_WAIT = 0.5
#: After a failed inline reconnect, how long other VMs fail at once instead of trying again.
GIVE_UP_FOR = 5.0


@dataclass(frozen=True)
class HostListing:
    """One host's domains at the start of a pass: the listing, the managed domains among
    those no manifest names (with their marks), and the VMs whose lock was held then."""

    listing: Listing
    unnamed: Mapping[str, Marker]
    busy: frozenset[str]


@dataclass
class Host:
    """One libvirt host and what is known of it now."""

    name: str  # "" for the -c connection
    uri: str | None  # as configured (None: libvirt's default)
    hypervisor: Hypervisor
    error: str | None = None  # why it is unreachable now; None: reachable as far as we know
    lost_error: str | None = None  # the last lost connection's error (inline reconnects)
    listed: HostListing | None = None  # its listing in this pass
    opening: threading.Thread | None = None  # an open past its deadline, still running
    # reconnecting inline (--once): serialised, and given up for a while after a failure
    _recovering: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _gave_up_at: float = field(default=-1e9, repr=False)
    # the service's view of the connection, kept by its supervisor (service/connections.py)
    up: bool = False  # connected, as far as the close callback has said
    lost: str | None = None  # set by the close callback, read by the main loop
    opener: threading.Thread | None = None  # a connect in flight
    open_error: ConnectionLost | None = None
    opened_at: float = 0.0  # when that connect started
    up_since: float = 0.0
    next_connect: float = 0.0
    delay: float = RECONNECT_WAIT  # the reconnect backoff
    said_unreachable: bool = False
    lister: threading.Thread | None = None  # the last resync's listing of this host
    lent: LentListing | None = None  # that listing, lent once per VM (the service)

    @property
    def label(self) -> str:
        return host_label(self.name)

    @property
    def usable(self) -> bool:
        """Reachable as far as we know: listed in this pass, or (the service) connected."""
        return self.error is None and self.hypervisor.connection.connected

    @property
    def is_listed(self) -> bool:
        return self.error is None and self.listed is not None

    def listing_for(self, name: str, held: Held | None) -> Listing | None:
        """This pass's listing, if it may stand in for a lookup of `name`: no run held the
        VM's lock when it was taken (`busy`), nor took or released it since (`held`, the
        lock as the caller got it; None in a dry run, which takes no locks). The service
        has no pass: its last resync's listing, lent once per VM (virt/lent.py), under
        the same rule about the lock."""
        listed = self.listed
        if listed is None:
            lent = self.lent.take(name) if self.lent is not None else None
            if lent is None or held is None or not held.untouched_since(lent.started_ns):
                return None
            return lent
        if name in listed.busy:
            return None
        if held is not None and not held.untouched_since(listed.listing.started_ns):
            return None
        return listed.listing

    def recover(self, error: ConnectionLost, *, who: str, wait: float = RECONNECT_WAIT,
                tries: int = RECONNECTS) -> bool:
        """After a call found the connection lost: reconnect with backoff, once for all the
        threads that found it (the others wait for that answer; `who` names the VM that
        found it, for the log). Once it has failed, the
        host is given up for GIVE_UP_FOR seconds: a dead daemon must not cost every VM
        its own backoff."""
        failed = self.hypervisor.connection.current()
        with self._recovering:
            connection = self.hypervisor.connection
            if connection.current() is not failed and connection.alive():
                return True  # another thread reconnected meanwhile
            if time.monotonic() - self._gave_up_at < GIVE_UP_FOR:
                return False
            log.warning("%s: lost the libvirt connection (%s); reconnecting", who, error)
            self.lost_error = str(error)
            for attempt in range(tries):
                time.sleep(wait * (2 ** attempt))
                try:
                    connection.reconnect(failed)
                except ConnectionLost as again:
                    log.warning("reconnect failed: %s", again)
                    self.lost_error = str(again)
                else:
                    self.error = self.lost_error = None
                    return True
            self._gave_up_at = time.monotonic()
            return False


MakeHypervisor = Callable[[str, str | None], Hypervisor]


class Hosts:
    """The hosts of one manifest tree: hosts.yaml and --host NAME=URI, and the -c
    connection for the VMs without spec.host."""

    def __init__(self, *, default_uri: str | None, make_hypervisor: MakeHypervisor,
                 inventory: Inventory, connect_timeout: float = 10.0,
                 explicit_default: bool = False):
        self.default_uri = default_uri
        self.explicit_default = explicit_default  # -c given: its host is in scope anyway
        self.make_hypervisor = make_hypervisor
        self.inventory = inventory
        self.connect_timeout = connect_timeout
        self.named: dict[str, str] = {}  # hosts.yaml (and --host): name → URI
        self.by_name: dict[str, Host] = {}
        self.default_name = DEFAULT_HOST

    @property
    def several(self) -> bool:
        """Whether the manifest tree names hosts: then output says which host a VM is on."""
        return bool(self.named)

    def set_hosts(self, hosts: Mapping[str, str]) -> list[Host]:
        """Take a new hosts.yaml: hosts for new or re-pointed names; return the hosts
        dropped (the caller closes them)."""
        self.named = dict(hosts)
        self.default_name = next((name for name, uri in self.named.items()
                                  if self.default_uri is not None and uri == self.default_uri),
                                 DEFAULT_HOST)
        wanted: dict[str, str | None] = dict(self.named)
        if self.default_name == DEFAULT_HOST:
            wanted[DEFAULT_HOST] = self.default_uri
        dropped = [host for name, host in self.by_name.items()
                   if name not in wanted or host.uri != wanted[name]]
        for host in dropped:
            del self.by_name[host.name]
        for name, uri in wanted.items():
            if name not in self.by_name:
                self.by_name[name] = Host(name, uri, self.make_hypervisor(name, uri))
        self.inventory.tracking = bool(self.named)  # one host: nothing can be elsewhere
        return dropped

    def __getitem__(self, name: str) -> Host:
        return self.by_name[name]

    def get(self, name: str) -> Host | None:
        return self.by_name.get(name)

    def all(self) -> list[Host]:
        return list(self.by_name.values())

    def host_of(self, spec: VMSpec) -> str:
        return spec.host if spec.host is not None else self.default_name

    def scope(self, load: LoadResult, only_host: str | None) -> set[str]:
        """The hosts whose VMs and orphans this run handles."""
        if only_host is not None:
            return {only_host}
        names = set(self.named) | {self.host_of(spec) for spec in load.specs.values()}
        if self.explicit_default or not self.named:
            names.add(self.default_name)
        return names & set(self.by_name)

    def unknown_holders(self, name: str, target: str) -> list[str]:
        """The hosts other than `target` that held `name` at their last listing and cannot
        be asked now: while one may run it, the VM is unknown."""
        unknown = [host.label for host in self.by_name.values()
                   if host.name != target and host.error is not None
                   and self.inventory.held(host.name, name)]
        unknown += [f"{host_label(holder)} (no longer in hosts.yaml)"
                    for holder in self.inventory.holders(name) if holder not in self.by_name]
        return unknown

    # --- connecting and listing, for a pass ----------------------------------------------

    def forget_listings(self) -> None:
        for host in self.by_name.values():
            host.listed = None

    def open(self, names: Iterable[str], *, named: frozenset[str],
             locks: VMLocks | None, placed: Mapping[str, list[str]]) -> None:
        """Connect (in parallel, within the deadline) and list the hosts `names` that are
        not listed yet in this pass; record each complete listing in the inventory.
        `named`: the names the valid manifests define: not read in the listing (the
        domains of the others are, to tell those left as they are from orphans).
        `placed`: per host, the VMs placed there, whose locks are probed."""
        hosts = [self.by_name[name] for name in names if self.by_name[name].listed is None]
        if not hosts:
            return
        if self.several:
            from .virt.events import start_event_loop  # multi-host only

            start_event_loop()  # keepalive: a host that stops answering fails calls in ~20 s
        threads = []
        for host in hosts:
            if host.opening is not None and host.opening.is_alive():
                host.error = "still connecting from an earlier attempt"
                continue
            host.error = None
            thread = threading.Thread(
                target=self._open_one, args=(host, named, locks, placed.get(host.name, [])),
                daemon=True, name=f"open-{host.label}")
            thread.start()
            threads.append((host, thread))
        deadline = time.monotonic() + self.connect_timeout
        for host, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                host.opening = thread
                host.listed = None
                host.error = (f"no answer from {host.hypervisor.uri or 'libvirt'} within "
                              f"{self.connect_timeout:g}s")
                log.info("host %s is unreachable: %s", host.label, host.error)

    def _open_one(self, host: Host, named: frozenset[str], locks: VMLocks | None,
                  placed: list[str]) -> None:
        try:
            connection = host.hypervisor.connection
            if not connection.alive():
                connection.reconnect()
            # the lock probe first: a VM whose lock is held now may change under the listing
            busy = frozenset(locks.held_now(sorted(placed))) if locks else frozenset()
            listing = host.hypervisor.domains.list_all()
            unnamed = host.hypervisor.domains.managed(listing, skip=named)
        except HypervisorError as error:
            host.error = str(error)
            log.info("host %s is unreachable: %s", host.label, error)
            return
        if host.opening is not None and host.opening is threading.current_thread():
            return  # past the deadline: the pass has already given up on this host
        host.listed = HostListing(listing, unnamed, busy)
        self.inventory.record(host.name, (set(listing.names) & named) | set(unnamed))

    def close(self) -> None:
        for host in self.by_name.values():
            if host.opening is None or not host.opening.is_alive():
                host.hypervisor.connection.close()  # an open in flight holds its lock

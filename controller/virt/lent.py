"""A resync's listing, lent to the first reconcile of each domain after it.

The service's resync lists every domain of a host (three bulk calls) to find the
managed ones no manifest names. `LentListing` lets that listing stand in for the
per-VM lookup (`lookupByName`, `state`, `isPersistent`, `autostart`) of the reconcile
the resync queues, as a `--once` pass's listing does (`Host.listing_for`); the
definitions themselves are always read afresh.

Made by `service/triggers.py` (`resync`), held by `Host.lent`, taken by
`Host.listing_for` under the VM's lock. It is lent at most once per name, and never:

- for a name a lifecycle event was delivered for since it was taken (`spoil`, called
  before the event queues the name): the domain may have changed since;
- once its connection was reset or two newer listings were taken (the handles behind
  it are gone: `still_valid`);
- after `LEND_SECONDS`: a listing is a moment, not a state.

The caller also checks the VM's lock (`Held.untouched_since`), so a reconcile that
changed the VM since the listing (of this process or another: it stamps the lock before
its first step) makes later ones look the domain up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .listing import Listing

#: How long after it was taken a listing may still be lent.
LEND_SECONDS = 120.0


class LentListing:
    """One host's resync listing, lent once per name (see the module). Made before the
    listing is taken and put where the events find it, so that an event delivered while
    the listing is taken spoils its name too; `lend` then gives it the listing."""

    def __init__(self, *, still_valid: Callable[[Listing], bool],
                 clock: Callable[[], float] = time.monotonic,
                 lend_for: float = LEND_SECONDS):
        self.listing: Listing | None = None
        self._still_valid = still_valid
        self._clock = clock
        self._lend_for = lend_for
        self._until = 0.0
        self._gone: set[str] = set()  # names lent already, or spoiled by an event
        self._lock = threading.Lock()

    def lend(self, listing: Listing) -> None:
        """The listing taken after this was put in place: lend it from now on."""
        with self._lock:
            self.listing = listing
            self._until = self._clock() + self._lend_for

    def take(self, name: str) -> Listing | None:
        """The listing, for the first reconcile of `name` since it was taken; else None."""
        with self._lock:
            listing = self.listing
            if listing is None or name in self._gone:
                return None
            self._gone.add(name)
            if self._clock() > self._until:
                return None
        return listing if self._still_valid(listing) else None

    def spoil(self, name: str) -> None:
        """`name` may have changed since the listing (an event came): never lend it."""
        with self._lock:
            self._gone.add(name)

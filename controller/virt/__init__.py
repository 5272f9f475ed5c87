"""The libvirt edge: the only package that imports libvirt.

    errors.py       libvirt's errors → ours, classified once
    lines.py        the calls in flight per connection, and extra connections
    connection.py   one host's connection: open, reconnect, give up, call slots
    events.py       the event loop, and connections that deliver lifecycle events
    listing.py      value types of what a host lists (no libvirt handles)
    lent.py         a resync's listing, lent once per domain to the reconciles after it
    domains.py      reading domains
    steps.py        the domain steps, each tolerating being already done
    guest.py        a running guest from outside: addresses (leases, agent), agent ping
    hypervisor.py   `Hypervisor`: one host's connection with its reads and steps
    fingerprint.py  the no-op proof's read of a host (controller/proof.py): libvirt only

Nothing above this package sees a libvirt handle: listings and observations are
values, and steps are called by domain name.

The names below are imported when first used (PEP 562), so that `fingerprint`, which
`reconcile --once` may use on its own, does not pay for the rest of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection
    from .hypervisor import Hypervisor
    from .lent import LentListing
    from .lines import CALLS_PER_CONNECTION, connections_for
    from .listing import Listing, Marker


def __getattr__(name: str) -> Any:
    if name == "Connection":
        from .connection import Connection
        return Connection
    if name == "Hypervisor":
        from .hypervisor import Hypervisor
        return Hypervisor
    if name == "LentListing":
        from .lent import LentListing
        return LentListing
    if name in ("CALLS_PER_CONNECTION", "connections_for"):
        from . import lines
        return getattr(lines, name)
    if name in ("Listing", "Marker"):
        from . import listing
        return getattr(listing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CALLS_PER_CONNECTION", "Connection", "Hypervisor", "LentListing", "Listing",
           "Marker", "connections_for"]

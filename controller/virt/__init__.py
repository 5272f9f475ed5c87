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

Nothing above this package sees a libvirt handle: listings and observations are
values, and steps are called by domain name.
"""

from .connection import Connection
from .hypervisor import Hypervisor
from .lent import LentListing
from .lines import CALLS_PER_CONNECTION, connections_for
from .listing import Listing, Marker

__all__ = ["CALLS_PER_CONNECTION", "Connection", "Hypervisor", "LentListing", "Listing",
           "Marker", "connections_for"]

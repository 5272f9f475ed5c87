"""What a host lists, as values: no libvirt handle leaves this package.

A `Listing` is every domain of one host at one moment (three bulk calls). The
handles behind it stay in `domains.Domains`, which uses them, while the listing
is the newest, to read a domain without looking it up by name again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Listing:
    """All domains of a host at one moment."""

    started_ns: int  # time.time_ns() before the first listing call
    names: frozenset[str]
    autostart: frozenset[str]
    persistent: frozenset[str]
    token: int = 0  # which handles `Domains` keeps for it


@dataclass(frozen=True)
class Marker:
    """reconcile's ownership mark on a managed domain: the host that owns it (with
    several hosts) and the manifest file it was defined from."""

    host: str | None = None
    source: str | None = None

"""The no-op proof's read of one host: what a no-op `--once` pass reads from libvirt,
read afresh with the same calls and flags, folded into one digest.

Called by `controller/proof.py`: by the fast path of `reconcile --once`, and around a
pass that planned nothing, to record the proof. It imports libvirt and nothing of ours
(the fast path must not pay for the rest of the package; see `__init__`), opens its own
connection and closes it again.

What a pass reads, and so what the digest covers: the URI libvirt connected to; the
three listings (every domain, the autostarted ones, the persistent ones); for each
domain a manifest names, its current definition (`XMLDesc`, with `SECURE` on a
read-write connection, as `Domains.observe` reads it) and, for a running one, its state
and saved definition too; for every other domain its saved definition (`XMLDesc
(INACTIVE)`, where `Domains.managed` finds reconcile's mark); and every network and
storage pool: its name, whether it is active and its saved definition (where
`Networks.managed`/`Pools.managed` find reconcile's mark, and what `brief` tells a VM
whose interface names a network), a pool's without its sizes (capacity, allocation,
available: they move with every write to its disk, and no pass that may record a proof
reads them; proof_record refuses volume disks). Any libvirt error (a domain that
vanished between two calls, a connection refused) means no digest.
"""

from __future__ import annotations

import re
from _blake2 import blake2b  # hashlib's own, without importing OpenSSL's (~12 M instructions)
from collections.abc import Collection
from typing import Any

import libvirt

#: A pool definition's sizes (see the docstring).
_POOL_SIZES = re.compile(r"<(capacity|allocation|available)\b[^>]*>[^<]*</\1>")


def read_host(uri: str | None, *, readonly: bool, named: Collection[str]) -> str | None:
    """The digest of host `uri` as a pass with `named` manifests reads it (`readonly`:
    a dry run's read-only connection), or None when a read failed."""
    libvirt.registerErrorHandler(_quiet, None)
    try:
        conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
    except libvirt.libvirtError:
        return None
    try:
        return _digest(conn, readonly=readonly, named=frozenset(named))
    except libvirt.libvirtError:
        return None
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def _quiet(_context: object, _error: object) -> None:
    """libvirt prints every error on stderr unless a handler takes it."""


def _digest(conn: Any, *, readonly: bool, named: frozenset[str]) -> str:
    digest = blake2b(digest_size=32)

    def put(*texts: str) -> None:
        for text in texts:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)

    put("uri", conn.getURI())
    domains = conn.listAllDomains(0)
    autostart = {dom.name() for dom in conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
    persistent = {dom.name() for dom in conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)}
    secure = 0 if readonly else libvirt.VIR_DOMAIN_XML_SECURE
    for name, dom in sorted((dom.name(), dom) for dom in domains):
        put("domain", name, "autostart" if name in autostart else "-",
            "persistent" if name in persistent else "-")
        if name in named:
            current = dom.XMLDesc(secure)
            put(current)
            if maybe_active(current):
                put(str(dom.state()[0]), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | secure))
        else:
            put(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for name, network in sorted((network.name(), network)
                                for network in conn.listAllNetworks(0)):
        put("network", name, str(network.isActive()),
            _saved(network, libvirt.VIR_NETWORK_XML_INACTIVE))
    for name, pool in sorted((pool.name(), pool) for pool in conn.listAllStoragePools(0)):
        put("pool", name, str(pool.isActive()),
            _POOL_SIZES.sub("", _saved(pool, libvirt.VIR_STORAGE_XML_INACTIVE)))
    return digest.hexdigest()


def _saved(thing: Any, inactive: int) -> str:
    """A network's or pool's saved definition; its only one where the driver has no
    INACTIVE flag (the test driver), as networks.py and pools.py read it."""
    try:
        return str(thing.XMLDesc(inactive))
    except libvirt.libvirtError:
        return "live " + str(thing.XMLDesc(0))


def maybe_active(xml: str) -> bool:
    """Whether a definition may be a running domain's: its root element has an id
    (parse_domain calls it active unless the id is -1; erring towards reading more)."""
    end = xml.find(">")
    return " id=" in (xml[:end] if end >= 0 else xml)

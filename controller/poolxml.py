"""Storage pool XML for declared pools: a `PoolSpec` to libvirt's pool XML and back,
with reconcile's ownership mark. Pure.

Called by the pool planner (controller/planner/pools.py), which builds the XML to
define, and by the libvirt edge (controller/virt/pools.py), which parses what a host
reports.

The ownership mark. Pool XML has no `<metadata>` (libvirt 9.0 drops it, seen on
qemu:///system and test:///default), so the mark lives in the one free-form part a
`dir` pool keeps verbatim and never uses: `<source><vendor name='reconcile'/>
<product name='source=FILE&host=HOST'/></source>` (vendor and product describe a
SCSI device for other pool types; the dir backend ignores them, and libvirt's
duplicate-pool checks for dir pools compare target paths only). It is part of the
pool's own definition, so every controller sees it (unlike a file of ours on one
machine), `virsh pool-dumpxml` shows it, it survives libvirtd restarts and
`pool-dumpxml | pool-define` elsewhere, and it takes no volume (a marker volume
would show in every listing, could be deleted as junk, and would make an empty pool
look used). An active pool's redefinition takes effect in its saved definition at
once (read with VIR_STORAGE_XML_INACTIVE), without a restart.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlencode

from .domainxml.xmlutil import child, text_of
from .resourcemodel import Mark, PoolConfig, PoolSpec

#: <source><vendor name=MARK_VENDOR/> says: reconcile manages this pool.
MARK_VENDOR = "reconcile"

__all__ = ["MARK_VENDOR", "build_pool", "parse_pool_config"]


def parse_pool_config(xml: str) -> PoolConfig:
    root = ET.fromstring(xml)
    vendor = root.find("source/vendor")
    mark = None
    if vendor is not None and vendor.get("name") == MARK_VENDOR:
        product = root.find("source/product")
        fields = parse_qs(product.get("name", "") if product is not None else "")
        mark = Mark(host=fields["host"][0] if fields.get("host") else None,
                    source=fields["source"][0] if fields.get("source") else None)
    path = root.find("target/path")
    return PoolConfig(name=text_of(root.find("name")), uuid=text_of(root.find("uuid")).lower(),
                      type=root.get("type", ""),
                      path=(path.text or "").strip() or None if path is not None else None,
                      mark=mark)


def build_pool(spec: PoolSpec, base_xml: str | None = None) -> str:
    """The XML to define for `spec`: `base_xml` (the saved definition) with the mark and
    the path, or a new dir pool."""
    if base_xml:
        root = ET.fromstring(base_xml)
        for tag in ("capacity", "allocation", "available"):  # sizes libvirt reports
            found = root.find(tag)
            if found is not None:
                root.remove(found)
    else:
        root = ET.Element("pool", type=spec.type)
        ET.SubElement(root, "name").text = spec.name
    child(root, "name").text = spec.name
    source = root.find("source")
    if source is None:
        source = ET.Element("source")
        target = root.find("target")
        root.insert(list(root).index(target) if target is not None else len(root), source)
    for tag in ("vendor", "product"):
        found = source.find(tag)
        if found is not None:
            source.remove(found)
    marked = {key: value for key, value in (("source", spec.source), ("host", spec.host))
              if value}
    ET.SubElement(source, "vendor", name=MARK_VENDOR)
    ET.SubElement(source, "product", name=urlencode(marked))
    child(child(root, "target"), "path").text = spec.path
    return ET.tostring(root, encoding="unicode")

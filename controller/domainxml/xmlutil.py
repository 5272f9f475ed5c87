"""Small ElementTree helpers shared by the domain XML modules, and the ownership mark."""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET

#: Namespace of the ownership marker in <metadata>.
MANAGED_NS = "urn:reconcile-libvirt:managed:1"
MANAGED_TAG = f"{{{MANAGED_NS}}}managed"
#: A volume reconcile created for the domain, inside the mark: <reconcile:volume pool name/>.
VOLUME_TAG = f"{{{MANAGED_NS}}}volume"

ET.register_namespace("reconcile", MANAGED_NS)
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")


def text_of(element: ET.Element | None) -> str:
    """As Element.findtext(tag, default=""): the text, "" when empty or absent."""
    return (element.text or "") if element is not None else ""


def child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    return found if found is not None else ET.SubElement(parent, tag)


def created_volumes(mark: ET.Element | None) -> tuple[tuple[str, str], ...]:
    """The (pool, name) of the volumes the mark says reconcile created."""
    if mark is None:
        return ()
    return tuple((element.get("pool", ""), element.get("name", ""))
                 for element in mark.iterfind(VOLUME_TAG))


def mark_managed(root: ET.Element, host: str | None, source: str | None,
                 created: tuple[tuple[str, str], ...] = ()) -> None:
    """The ownership mark: the manifest file the domain comes from and, with several
    hosts, the host that owns the VM now."""
    metadata = child(root, "metadata")
    mark = metadata.find(MANAGED_TAG)
    if mark is None:
        mark = ET.SubElement(metadata, MANAGED_TAG)
    for key, value in (("host", host), ("source", source)):
        if value:
            mark.set(key, value)
        else:
            mark.attrib.pop(key, None)
    recorded = set(created_volumes(mark))
    for pool, name in created:
        if (pool, name) not in recorded:
            ET.SubElement(mark, VOLUME_TAG, pool=pool, name=name)
            recorded.add((pool, name))


# --- namespaces: prefixes survive a redefinition ------------------------------------

_PREFIX_LOCK = threading.Lock()
_DECLARATION = re.compile(r"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_GENERATED_PREFIX = re.compile(r"ns\d+\Z")


def serialize(root: ET.Element, source: str | None) -> str:
    """`root` as text, with the namespace prefixes `source` declared ("nova:", "qemu:").

    ElementTree forgets prefixes when it parses, and writes `ns0:` for a namespace
    no prefix is registered for (globally, in its private `_namespace_map`); libvirt
    keeps metadata as written, so a redefinition would rename `nova:instance` to
    `ns0:instance`. The document's own prefixes are registered for the one write,
    under a lock, and the registry is put back as it was.
    """
    if not source or "xmlns:" not in source:
        return ET.tostring(root, encoding="unicode")
    import html  # html.entities' table: only for documents with namespace prefixes

    declared = {}
    for prefix, double, single in _DECLARATION.findall(source):
        if prefix != "xml" and not _GENERATED_PREFIX.match(prefix):
            declared[html.unescape(double or single)] = prefix
    registry: dict[str, str] = getattr(ET, "_namespace_map")  # noqa: B009
    with _PREFIX_LOCK:
        if all(registry.get(uri) == prefix for uri, prefix in declared.items()):
            return ET.tostring(root, encoding="unicode")
        before = dict(registry)
        try:
            for uri, prefix in declared.items():
                ET.register_namespace(prefix, uri)
            return ET.tostring(root, encoding="unicode")
        finally:
            registry.clear()
            registry.update(before)

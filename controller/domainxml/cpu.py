"""The `<cpu>` element of section 8: mode, model and topology. Reading it, and editing only
what differs; features, NUMA cells, cache, `check` and `match` stay as they are unless the
mode changes. Pure.

Called by `document.parse_domain` / `build_domain`.

- Mode is `cpu mode=...`; a `<cpu>` with a `<model>` and no mode is `custom`, as libvirt
  reads it. libvirt itself writes `<cpu mode='custom'><model>qemu64</model>` into a new
  `type='qemu'` domain, and runs a `host-model` CPU as the `custom` CPU it expanded
  (with `check='full'` and its features): the planner allows for that.
- A change of mode drops the model, vendor and features (they belong to the old mode);
  a change of model keeps the features.
- Topology is sockets, cores and threads; one with dies or clusters other than 1 has
  none a manifest can describe, until the manifest sets one (which drops them).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..hardware import CPU
from .xmlutil import text_of

#: Children of <cpu> in libvirt's order.
CPU_ORDER = ("model", "vendor", "topology", "cache", "maxphysaddr", "feature", "numa")


def read_cpu(element: ET.Element | None) -> CPU | None:
    if element is None:
        return None
    model = text_of(element.find("model")).strip() or None
    mode = element.get("mode") or ("custom" if model else None)
    sockets = cores = threads = None
    topology = element.find("topology")
    if topology is not None:
        values = {key: _number(topology.get(key)) for key in
                  ("sockets", "dies", "clusters", "cores", "threads")}
        if values["dies"] in (None, 1) and values["clusters"] in (None, 1):
            sockets, cores, threads = values["sockets"], values["cores"], values["threads"]
            if None in (sockets, cores, threads):
                sockets = cores = threads = None
    return CPU(mode=mode, model=model if mode == "custom" else None, sockets=sockets,
               cores=cores, threads=threads)


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else None


def wanted_mode(wanted: CPU) -> str | None:
    """The mode a manifest's CPU means: a model alone is a custom CPU."""
    return wanted.mode or ("custom" if wanted.model else None)


def apply_cpu(root: ET.Element, wanted: CPU | None) -> None:
    """Make the CPU's mode, model and topology those of `wanted` where it sets them."""
    if wanted is None:
        return
    element = root.find("cpu")
    have = read_cpu(element) or CPU()
    mode = wanted_mode(wanted)
    mode_changes = mode is not None and mode != have.mode
    model_changes = mode == "custom" and wanted.model is not None and wanted.model != have.model
    topology_changes = wanted.topology is not None and wanted.topology != have.topology
    if not (mode_changes or model_changes or topology_changes):
        return
    if element is None:
        element = ET.Element("cpu")
        _insert_cpu(root, element)
    if mode_changes:
        assert mode is not None
        element.set("mode", mode)
        for key in ("match", "check"):
            element.attrib.pop(key, None)
        for tag in ("model", "vendor", "feature"):
            for old in element.findall(tag):
                element.remove(old)
    if mode == "custom" and wanted.model is not None and (mode_changes or model_changes):
        model = element.find("model")
        if model is None:
            model = ET.Element("model")
            _insert_child(element, model)
        model.text = wanted.model
    if topology_changes:
        assert wanted.topology is not None
        topology = element.find("topology")
        if topology is None:
            topology = ET.Element("topology")
            _insert_child(element, topology)
        for key in ("dies", "clusters"):
            topology.attrib.pop(key, None)
        for key, value in zip(("sockets", "cores", "threads"), wanted.topology, strict=True):
            topology.set(key, str(value))


def _insert_child(cpu: ET.Element, element: ET.Element) -> None:
    rank = CPU_ORDER.index(element.tag)
    position = 0
    for index, existing in enumerate(cpu):
        if existing.tag in CPU_ORDER and CPU_ORDER.index(existing.tag) <= rank:
            position = index + 1
    cpu.insert(position, element)


#: Elements of <domain> that libvirt writes before <cpu>.
_BEFORE_CPU = ("name", "uuid", "genid", "title", "description", "metadata", "maxMemory",
               "memory", "currentMemory", "blkiotune", "memtune", "memoryBacking", "vcpu",
               "vcpus", "iothreads", "iothreadids", "cputune", "numatune", "resource",
               "sysinfo", "bootloader", "bootloader_args", "os", "idmap", "features")


def _insert_cpu(root: ET.Element, element: ET.Element) -> None:
    position = 0
    for index, existing in enumerate(root):
        if existing.tag in _BEFORE_CPU:
            position = index + 1
    root.insert(position, element)

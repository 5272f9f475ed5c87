"""The fidelity pipeline over the corpus, on a real libvirtd, driven through the CLI.

Used by tests/fidelity/test_corpus_adoption.py (which asserts that every definition
passes) and scripts/fidelity.py (which prints the figures). For each corpus definition,
under one unique name prefix:

  define → `reconcile export` → `reconcile validate` (must validate) → `reconcile --once`
  (adopt: one define step) → the saved XML is unchanged but for the ownership marker →
  the manifest's memory doubled → `reconcile --once` → the saved XML differs only in
  memory, currentMemory and NUMA cell sizes, and <memory> is the new size → the next
  `reconcile --once --dry-run` plans nothing.

Everything defined is undefined afterwards (keeping NVRAM), pass or fail. Nothing is
started. A disk that is a pool volume is pointed at a volume of the run's own dir pool
(created for it, deleted afterwards), so that export reads its capacity and writes it as
a `volume:` disk, as it does for volumes that exist. Manifests go into as few
directories as possible: two domains whose exported manifests name the same image file
would make both invalid in one directory (a cross-document rule), so they go into
different ones.

XML is compared in canonical form (C14N 2.0: attribute order and whitespace between
elements ignored), with namespace prefixes as libvirt wrote them.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import yaml

from controller.units import parse_memory_kib
from tests.fidelity.build_corpus import CORPUS, FAMILIES, for_libvirt, fresh_uuid
from tests.support.command import REPO
from tests.support.domains import remove_domains
from tests.support.libvirtd import SYSTEM_URI
from tests.support.prefix import unique_prefix

URI = SYSTEM_URI
XML_FLAGS = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
STAGES = ("define", "export", "validate", "adopt", "adopt-xml", "memory", "memory-xml",
          "dry-run")


@dataclass
class Case:
    """One corpus definition on its way through the pipeline."""

    family: str
    slug: str
    name: str
    xml: str
    failed: str | None = None  # the first stage that failed
    detail: str = ""
    notes: list[str] = field(default_factory=list)  # export's "kept as it is" warnings
    document: dict[str, Any] | None = None
    saved: list[str] = field(default_factory=list)  # saved XML: defined, adopted, memory
    memory_kib: int = 0  # the new memory, when the change was made
    group: int = 0

    def fail(self, stage: str, detail: str) -> None:
        if self.failed is None:
            self.failed, self.detail = stage, detail

    @property
    def ok(self) -> bool:
        return self.failed is None


@dataclass
class Report:
    cases: list[Case]
    seconds: float
    groups: int

    def passed(self, family: str | None = None) -> list[Case]:
        return [c for c in self.cases if c.ok and (family is None or c.family == family)]

    def failures(self) -> list[Case]:
        return [c for c in self.cases if not c.ok]


def corpus_files(families: Sequence[str] = FAMILIES) -> list[tuple[str, Path]]:
    return [(family, path) for family in families
            for path in sorted((CORPUS / family).glob("*.xml"))]


def run(files: Sequence[tuple[str, Path]], *, uri: str = URI, workers: int = 8) -> Report:
    """The whole pipeline over `files`; always cleans up what it defined."""
    started = time.monotonic()
    prefix = unique_prefix()
    cases = [Case(family, path.stem, f"{prefix}{index}", path.read_text(encoding="utf-8"))
             for index, (family, path) in enumerate(files)]
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(uri)
    groups = 0
    try:
        with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
            work = Path(tmp)
            pool = _own_pool(connection, f"{prefix}pool", work / "pool")
            try:
                groups = _pipeline(cases, connection, pool, uri, work)
            finally:
                remove_domains(connection, prefix)
                _remove_pool(pool)
    finally:
        connection.close()
    return Report(cases, time.monotonic() - started, groups)


def _pipeline(cases: list[Case], connection: libvirt.virConnect, pool: libvirt.virStoragePool,
              uri: str, work: Path) -> int:
    """The stages in order; returns how many manifest directories were used."""
    _define(connection, cases, pool)
    _export(cases, uri, work)
    groups = _group(cases, work)
    live = [c for c in cases if c.ok]
    _validate(live, work, groups)
    _once(live, uri, work, groups, stage="adopt")
    _read_saved(connection, live)
    for case in live:
        if case.ok:
            before = _canonical(case.saved[0])
            after = _without_marker(_canonical(case.saved[1]))
            if before != after:
                case.fail("adopt-xml", _diff(before, after))
    _change_memory(live, work)
    _once(live, uri, work, groups, stage="memory")
    _read_saved(connection, live)
    for case in live:
        if case.ok:
            _check_memory(case)
    _once(live, uri, work, groups, stage="dry-run", dry_run=True)
    return groups


# --- the stages ------------------------------------------------------------------------

def _own_pool(connection: libvirt.virConnect, name: str,
              path: Path) -> libvirt.virStoragePool:
    path.mkdir()
    pool = connection.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>")
    pool.create()
    return pool


def _remove_pool(pool: libvirt.virStoragePool) -> None:
    pool.refresh()
    for volume in pool.listAllVolumes():
        volume.delete()
    pool.destroy()
    pool.undefine()


_VOLUME_DISK = re.compile(r"<disk\b.*?</disk>", re.DOTALL)
_VOLUME_SOURCE = re.compile(r"""pool=(['"])[^'"]*\1(\s+)volume=(['"])([^'"]*)\3""")
_DRIVER_TYPE = re.compile(r"""<driver\b[^>]*\stype=['"](\w+)['"]""")


def _on_own_pool(case: Case, pool: libvirt.virStoragePool) -> str:
    """The case's XML with each volume disk on a volume of `pool`, made for it."""
    def disk(match: re.Match[str]) -> str:
        block = match.group(0)
        source = _VOLUME_SOURCE.search(block)
        if source is None:
            return block
        volume = f"{case.name}-{re.sub(r'[^A-Za-z0-9_.-]', '-', source.group(4))}"
        driver = _DRIVER_TYPE.search(block)
        fmt = driver.group(1) if driver and driver.group(1) in ("raw", "qcow2") else "raw"
        pool.createXML(f"<volume><name>{volume}</name><capacity unit='MiB'>1</capacity>"
                       f"<target><format type='{fmt}'/></target></volume>", 0)
        return block.replace(source.group(0),
                             f"pool='{pool.name()}'{source.group(2)}volume='{volume}'", 1)

    return _VOLUME_DISK.sub(disk, case.xml)


def _define(connection: libvirt.virConnect, cases: list[Case],
            pool: libvirt.virStoragePool) -> None:
    """Define each case, then define its saved XML once more as it is: libvirt's own
    round trip of its own output (it may order auto-added controllers differently the
    second time) is the baseline that adoption must not change."""
    for case in cases:  # one at a time: volumes are made in one pool
        case.xml = _on_own_pool(case, pool)

    def define(case: Case) -> None:
        try:
            dom = connection.defineXML(for_libvirt(case.xml, case.name, fresh_uuid()))
            first = dom.XMLDesc(XML_FLAGS)
            dom = connection.defineXML(first)
            case.saved.append(dom.XMLDesc(XML_FLAGS))
        except libvirt.libvirtError as error:
            case.fail("define", str(error))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(define, cases))


def reconcile(*argv: str) -> subprocess.CompletedProcess[str]:
    """The installed package's command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "controller", *argv], capture_output=True,
                          text=True, timeout=900, check=False, cwd=REPO)


def _export(cases: list[Case], uri: str, work: Path) -> None:
    live = [c for c in cases if c.ok]
    by_name = {c.name: c for c in live}
    for chunk in _chunks(live, 300):
        result = reconcile("export", "-c", uri, "--disk-root", "/", *(c.name for c in chunk))
        for document in yaml.safe_load_all(result.stdout):
            if isinstance(document, dict):
                by_name[document["metadata"]["name"]].document = document
        for line in result.stderr.splitlines():
            match = re.search(r"(t-[0-9a-f]{8}-\d+)", line)
            case = by_name.get(match.group(1)) if match else None
            if case is None:
                continue
            if "error:" in line:
                case.fail("export", line.split("error: ", 1)[1])
            elif "kept as it is" in line:
                case.notes.append(line.split(f"{case.name}: ", 1)[-1])
        for case in chunk:
            if case.ok and case.document is None:
                case.fail("export", f"no manifest (exit {result.returncode})")


def _group(cases: list[Case], work: Path) -> int:
    """Put each manifest into the first directory where no other names its images."""
    used: list[set[str]] = []
    for case in cases:
        if not case.ok or case.document is None:
            continue
        sources = {disk.get("source") or f"{disk['pool']}/{disk['volume']}"
                   for disk in case.document["spec"].get("disks", [])}
        for index, taken in enumerate(used):  # noqa: B007 - index is used after the loop
            if not sources & taken:
                break
        else:
            used.append(set())
            index = len(used) - 1
        used[index] |= sources
        case.group = index
        _write(case, work)
    return len(used)


def _write(case: Case, work: Path) -> None:
    folder = work / f"group-{case.group}"
    folder.mkdir(exist_ok=True)
    (folder / f"{case.name}.yaml").write_text(
        yaml.safe_dump(case.document, sort_keys=False), encoding="utf-8")


def _validate(cases: list[Case], work: Path, groups: int) -> None:
    by_file = {f"{c.name}.yaml": c for c in cases}
    for group in range(groups):
        result = reconcile("validate", "-m", str(work / f"group-{group}"), "--disk-root", "/",
                           "-o", "json")
        report = _json(result)
        for entry in report.get("invalid", []):
            case = by_file.get(entry.get("file", ""))
            if case is not None:
                case.fail("validate", f"{entry.get('path')}: {entry.get('error')}")
        if result.returncode not in (0, 2) or "invalid" not in report:
            for case in cases:
                if case.group == group:
                    case.fail("validate", f"exit {result.returncode}: {result.stderr[-300:]}")


def _once(cases: list[Case], uri: str, work: Path, groups: int, *, stage: str,
          dry_run: bool = False) -> None:
    for group in range(groups):
        members = {c.name: c for c in cases if c.group == group and c.ok}
        if not members:
            continue
        argv = ["--once", "-m", str(work / f"group-{group}"), "-c", uri, "--disk-root", "/",
                "-o", "json", "--lock-dir", str(work / "locks"),
                "--state-dir", str(work / "state")]
        result = reconcile(*argv, *(["--dry-run"] if dry_run else []))
        vms = {vm["name"]: vm for vm in _json(result).get("vms", [])}
        for name, case in members.items():
            vm = vms.get(name)
            if vm is None:
                invalid = [f"{entry.get('path')}: {entry.get('error')}"
                           for entry in _json(result).get("invalid", [])
                           if entry.get("file") == f"{name}.yaml"]
                case.fail(stage, f"not in the report (exit {result.returncode}): "
                                 f"{invalid or result.stderr.strip()[-300:]}")
                continue
            actions = [step["action"] for step in vm["steps"]]
            want = ("unchanged", []) if dry_run else ("converged", ["define"])
            if (vm["result"], actions) != want:
                case.fail(stage, f"{vm['result']} {actions}: {vm.get('error')}; steps "
                                 f"{[step['reason'] for step in vm['steps']]}")


def _read_saved(connection: libvirt.virConnect, cases: list[Case]) -> None:
    for case in cases:
        if case.ok:
            try:
                case.saved.append(connection.lookupByName(case.name).XMLDesc(XML_FLAGS))
            except libvirt.libvirtError as error:
                case.fail("adopt-xml" if len(case.saved) == 1 else "memory-xml", str(error))


def _change_memory(cases: list[Case], work: Path) -> None:
    for case in cases:
        if not case.ok or case.document is None:
            continue
        memory = _memory_kib(case.saved[-1])
        ceiling = _memory_kib(case.saved[-1], "maxMemory")
        # double it; halve it where <maxMemory> (the hot-plug ceiling) leaves no room
        case.memory_kib = 2 * memory if not ceiling or 2 * memory <= ceiling else memory // 2
        spec = case.document["spec"]
        spec["memory"] = f"{case.memory_kib}KiB"
        if "currentMemory" in spec and parse_memory_kib(spec["currentMemory"]) > case.memory_kib:
            del spec["currentMemory"]  # as a user halving the memory would: no more than it
        _write(case, work)


def _check_memory(case: Case) -> None:
    adopted, changed = case.saved[1], case.saved[2]
    landed = _memory_kib(changed)
    if landed != case.memory_kib:
        case.fail("memory-xml", f"memory {_memory_kib(adopted)} KiB → asked "
                                f"{case.memory_kib} KiB, libvirt kept {landed} KiB")
        return
    before = _without_memory(_canonical(adopted))
    after = _without_memory(_canonical(changed))
    if before != after:
        case.fail("memory-xml", _diff(before, after))


# --- XML comparison --------------------------------------------------------------------

_MARKER = re.compile(r'<(\w+):managed xmlns:\1="urn:reconcile-libvirt:managed:1"[^>]*>'
                     r"</\1:managed>")


def _without_marker(canonical: str) -> str:
    """A canonical form without the ownership marker (nor the <metadata> it alone filled)."""
    return _MARKER.sub("", canonical).replace("<metadata></metadata>", "")


def _without_memory(canonical: str) -> str:
    """A canonical form with the sizes of <memory>, <currentMemory> and NUMA cells blanked."""
    canonical = re.sub(r"(<(?:memory|currentMemory)\b[^>]*>)\d+(</)", r"\1N\2", canonical)
    return re.sub(r'(<cell\b[^>]*? memory=")\d+(")', r"\1N\2", canonical)


def _memory_kib(xml: str, tag: str = "memory") -> int:
    """<memory> (or `tag`) of libvirt's saved XML, in KiB as libvirt writes it."""
    match = re.search(rf"<{tag} (?:[^>]*\s)?unit='KiB'[^>]*>(\d+)</{tag}>", xml)
    return int(match.group(1)) if match else 0


def _canonical(xml: str) -> str:
    return ET.canonicalize(xml_data=xml, strip_text=True)


def _diff(before: str, after: str) -> str:
    """The first lines of a diff of two canonical forms, one element per line."""
    lines = list(difflib.unified_diff(_lines(before), _lines(after), "before", "after",
                                      lineterm="", n=1))
    return "\n".join(lines[2:40])


def _lines(canonical: str) -> list[str]:
    return re.sub(r"(</[^>]+>)", r"\1\n", re.sub(r">\s*<(?!/)", ">\n<", canonical)).split("\n")


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        loaded = json.loads(result.stdout)
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _chunks(items: Sequence[Case], size: int) -> Iterable[Sequence[Case]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- figures ---------------------------------------------------------------------------

def figures(report: Report) -> str:
    """The table of docs/RELIABILITY.md's Fidelity section, and the failures."""
    rows = [("| family | definitions | exported and validated | adopted, zero XML change "
            "| memory change landed, only memory changed | dry run clean |"),
            "| --- | --- | --- | --- | --- | --- |"]
    order = STAGES.index
    for family in [*FAMILIES, None]:
        cases = [c for c in report.cases if family is None or c.family == family]
        if not cases:
            continue

        def reached(stage: str, cases: list[Case] = cases) -> int:
            return sum(1 for c in cases if c.failed is None or order(c.failed) > order(stage))

        rows.append(f"| {family or '**all**'} | {len(cases)} | {reached('validate')} | "
                    f"{reached('adopt-xml')} | {reached('memory-xml')} | {reached('dry-run')} |")
    lines = rows + [
        "",
        (f"{len(report.passed())} of {len(report.cases)} passed every stage in "
        f"{report.seconds:.0f} s ({report.groups} manifest directories)."),
    ]
    numa = [c for c in report.cases if c.saved and re.search(r"<cell [^>]*memory=", c.saved[0])]
    lines.append(f"{len(numa)} definitions have NUMA cells with sizes; the memory change "
                 f"landed in {sum(1 for c in numa if c.ok)} of them.")
    kept = sum(len(c.notes) for c in report.cases)
    lines.append(f"export left {kept} devices out of the manifests as kept-as-they-are, in "
                 f"{sum(1 for c in report.cases if c.notes)} definitions.")
    for case in report.failures():
        lines.append(f"FAILED {case.family}/{case.slug} at {case.failed}: "
                     + case.detail.replace("\n", "\n    "))
    return "\n".join(lines)

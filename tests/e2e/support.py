"""Helpers of the end-to-end tests: running the installed `reconcile`, writing manifests,
reading libvirt state back, waiting on conditions. The fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from controller.domainxml import MANAGED_NS
from tests.waiting import wait_until

URI = "qemu:///system"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RECONCILE = Path(sys.executable).parent / "reconcile"
IMAGES = Path("/var/lib/libvirt/images")
MIB = 1024  # KiB



# --- waiting -------------------------------------------------------------------------



# --- domains of one test -------------------------------------------------------------

def _error_code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code())


def _remove_domain(connection: libvirt.virConnect, name: str) -> None:
    """Destroy and undefine `name`, tolerating every 'already done' and a busy domain
    (after a kill -9 of a client, libvirtd may still hold the domain's job lock)."""
    last: list[str] = []

    def gone() -> bool:
        try:
            dom = connection.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            connection.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return True
            last[:] = [str(exc)]
        return False

    try:
        wait_until(gone, timeout=60, interval=0.2, what=f"domain {name} to be removed")
    except AssertionError as error:
        raise AssertionError(f"{error}; last libvirt error: {last}") from None


def remove_domains(connection: libvirt.virConnect, prefix: str) -> None:
    """Destroy and undefine every domain whose name starts with `prefix`, in parallel
    (a hard destroy of a tiny guest takes ~2 s)."""
    names = [name for name in domain_names(connection) if name.startswith(prefix)]
    if names:
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(lambda name: _remove_domain(connection, name), names))
    left = [name for name in domain_names(connection) if name.startswith(prefix)]
    assert not left, f"domains left behind: {left}"


def domain_names(connection: libvirt.virConnect) -> list[str]:
    names = []
    for dom in connection.listAllDomains(0):
        try:
            names.append(dom.name())
        except libvirt.libvirtError:
            continue
    return names


def qcow2(path: Path, size: str = "16M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size],
                   check=True, capture_output=True, text=True, timeout=60)
    return path


# --- manifests -----------------------------------------------------------------------

Document = dict[str, Any]


class Manifests:
    """A manifest directory; `write` takes documents (dicts) or raw YAML text."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, filename: str, *documents: Document | str) -> Path:
        parts = [doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
                 for doc in documents]
        target = self.path / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("---\n".join(parts))
        return target

    def remove(self, filename: str) -> None:
        (self.path / filename).unlink()


VMBuilder = Callable[..., Document]


# --- running the command -------------------------------------------------------------

@dataclass
class Pass:
    """One `reconcile --once -o json` run: the process and its parsed report."""

    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]

    @property
    def code(self) -> int:
        return self.proc.returncode

    @property
    def vms(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry for entry in self.report["vms"]}

    def result(self, name: str) -> str:
        return str(self.vms[name]["result"])

    def actions(self, name: str) -> list[str]:
        return [step["action"] for step in self.vms[name]["steps"]]

    def orphans(self, prefix: str) -> list[str]:
        """The orphans this test owns (other managed domains may live on the host)."""
        return [name for name in self.report["orphans"] if name.startswith(prefix)]

    def skip_if_foreign_orphans(self, prefix: str) -> None:
        """A --prune run would remove managed domains of others: do not run one."""
        foreign = [name for name in self.report["orphans"] if not name.startswith(prefix)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            pytest.skip(f"{len(foreign)} managed domain(s) of others on this host ({shown}) "
                        "would be orphans here, and --prune would remove them")


Runner = Callable[..., "subprocess.CompletedProcess[str]"]
OnceRunner = Callable[..., Pass]


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"$ {' '.join(map(str, proc.args))}\nexit {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")


def command(args: tuple[str, ...], *, manifests: Path, lock_dir: Path) -> list[str]:
    """The full argv of `reconcile ARGS` with this test's defaults for -m, -c, --lock-dir."""
    argv = [str(RECONCILE), *args]
    if args[:1] in (("validate",), ("schema",)):
        return argv
    if args[:1] == ("export",):
        return argv if {"-c", "--connect"} & set(args) else [*argv, "-c", URI]
    if not {"-m", "--manifests"} & set(args):
        argv += ["-m", str(manifests)]
    if not {"-c", "--connect"} & set(args):
        argv += ["-c", URI]
    if "--lock-dir" not in args and args[:1] != ("status",):  # status takes no locks
        argv += ["--lock-dir", str(lock_dir)]
    return argv


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("LIBVIRT_DEFAULT_URI", "RECONCILE_MANIFESTS", "RECONCILE_LOCK_DIR")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parse_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout\n{describe(proc)}"
    report = json.loads(lines[0])
    assert isinstance(report, dict), describe(proc)
    return report


# --- reading libvirt back ------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """What a test checks of one domain definition."""

    uuid: str
    memory_kib: int
    current_memory_kib: int
    vcpus: int
    managed: bool
    disks: tuple[str, ...]


def parse_config(xml: str) -> Config:
    root = ET.fromstring(xml)

    def kib(tag: str) -> int:
        element = root.find(tag)
        assert element is not None and element.get("unit", "KiB") == "KiB", xml
        return int((element.text or "0").strip())

    metadata = root.find("metadata")
    managed = metadata is not None and metadata.find(f"{{{MANAGED_NS}}}managed") is not None
    disks = tuple(source.get("file", "") for source in root.findall("devices/disk/source"))
    return Config(uuid=root.findtext("uuid", "").strip(), memory_kib=kib("memory"),
                  current_memory_kib=kib("currentMemory"),
                  vcpus=int((root.findtext("vcpu") or "").strip()), managed=managed,
                  disks=disks)


@dataclass(frozen=True)
class Domain:
    """One domain as libvirt reports it at one moment."""

    name: str
    uuid: str
    id: int  # -1 when not running
    state: int  # libvirt.VIR_DOMAIN_*
    persistent: bool
    autostart: bool
    saved_xml: str
    live_xml: str | None

    @property
    def running(self) -> bool:
        return self.state == int(libvirt.VIR_DOMAIN_RUNNING)

    @property
    def shut_off(self) -> bool:
        return self.state == int(libvirt.VIR_DOMAIN_SHUTOFF)

    @property
    def saved(self) -> Config:
        return parse_config(self.saved_xml)

    @property
    def live(self) -> Config:
        assert self.live_xml is not None, f"{self.name} is not running"
        return parse_config(self.live_xml)


def read_domain(connection: libvirt.virConnect, name: str) -> Domain | None:
    """The domain `name` now, or None when it does not exist."""
    try:
        dom = connection.lookupByName(name)
        state = dom.state()[0]
        active = bool(dom.isActive())
        persistent = bool(dom.isPersistent())
        return Domain(
            name=name,
            uuid=dom.UUIDString(),
            id=dom.ID() if active else -1,
            state=state,
            persistent=persistent,
            autostart=bool(dom.autostart()) if persistent else False,
            saved_xml=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
            live_xml=dom.XMLDesc(0) if active else None,
        )
    except libvirt.libvirtError as exc:
        if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def must_read(connection: libvirt.virConnect, name: str) -> Domain:
    found = read_domain(connection, name)
    assert found is not None, f"domain {name} does not exist"
    return found


def snapshot(connection: libvirt.virConnect, prefix: str) -> dict[str, Domain]:
    """Every domain of this test, to compare before and after a run that must change
    nothing."""
    snap = {}
    for name in domain_names(connection):
        if name.startswith(prefix):
            snap[name] = must_read(connection, name)
    return snap


def define_unmanaged(connection: libvirt.virConnect, name: str, virt_type: str, *,
                     memory_mib: int = 64, start: bool = False) -> Domain:
    """Define (and maybe start) a tiny domain the way an operator would: no reconcile
    marker in it."""
    root = ET.Element("domain", type=virt_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    devices = ET.SubElement(root, "devices")
    ET.SubElement(devices, "console", type="pty")
    dom = connection.defineXML(ET.tostring(root, encoding="unicode"))
    if start:
        dom.create()
    return must_read(connection, name)

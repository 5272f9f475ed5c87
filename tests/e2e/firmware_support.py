"""What the section 8 end-to-end tests share: where libvirt keeps a domain's NVRAM and TPM
state on this host, reading a domain's firmware from its XML, and removing every file a
test's EFI and TPM domains left behind (reconcile never deletes them, by design).

Used by test_firmware_e2e.py, test_firmware_guest.py and test_virt_install_adoption.py.
Only files named by the test's own prefix, or by the UUIDs its domains had, are removed.
"""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest

from ..support.domains import domain_names, remove_domain

NVRAM_DIR = Path("/var/lib/libvirt/qemu/nvram")
SWTPM_DIR = Path("/var/lib/libvirt/swtpm")
LOG_DIRS = (Path("/var/log/libvirt/qemu"), Path("/var/log/swtpm/libvirt/qemu"))
#: undefine for the cleanup: this test's NVRAM and TPM state go too
REMOVE_STATE = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM


def nvram_path(name: str) -> Path:
    """Where libvirt's firmware auto-selection puts a domain's variable store."""
    return NVRAM_DIR / f"{name}_VARS.fd"


def tpm_state(uuid: str) -> Path:
    """swtpm's state file of an emulated TPM 2.0 (libvirt: per domain UUID)."""
    return SWTPM_DIR / uuid.lower() / "tpm2" / "tpm2-00.permall"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def live_loader(xml: str) -> tuple[str, str | None, str]:
    """(loader path, its secure attribute, NVRAM path) of a running EFI domain."""
    root = ET.fromstring(xml)
    loader = root.find("os/loader")
    nvram = root.find("os/nvram")
    assert loader is not None and nvram is not None, xml
    return (loader.text or "").strip(), loader.get("secure"), (nvram.text or "").strip()


@dataclass
class FirmwareState:
    """The UUIDs a test's domains had (their TPM state is per UUID)."""

    conn: libvirt.virConnect
    prefix: str
    uuids: set[str] = field(default_factory=set)

    def remember(self, name: str) -> str:
        uuid = str(self.conn.lookupByName(name).UUIDString()).lower()
        self.uuids.add(uuid)
        return uuid

    def cleanup(self) -> list[str]:
        problems = []
        for name in domain_names(self.conn):
            if name.startswith(self.prefix):
                try:
                    self.uuids.add(str(self.conn.lookupByName(name).UUIDString()).lower())
                    remove_domain(self.conn, name, flags=REMOVE_STATE)
                except (AssertionError, libvirt.libvirtError) as exc:
                    problems.append(f"{name}: {exc}")
        for path in NVRAM_DIR.glob("*"):
            if path.name.startswith(self.prefix):
                path.unlink(missing_ok=True)
        for uuid in self.uuids:
            if uuid and (SWTPM_DIR / uuid).is_dir():
                shutil.rmtree(SWTPM_DIR / uuid, ignore_errors=True)
        for folder in LOG_DIRS:
            for path in folder.glob("*"):
                if path.name.startswith(self.prefix):
                    path.unlink(missing_ok=True)
        return problems


@pytest.fixture
def firmware_state(conn: libvirt.virConnect, prefix: str) -> Iterator[FirmwareState]:
    """Removes, after the test, its domains with their NVRAM and TPM state, and the
    files of those state that reconcile kept (NVRAM named by the prefix, TPM state of
    every UUID remembered or found)."""
    state = FirmwareState(conn=conn, prefix=prefix)
    yield state
    problems = state.cleanup()
    assert not problems, problems

"""The real Debian 12 cloud guest (scripts/guest-image.sh) boots under plain libvirt in
every way the project needs, and the guest harness (tests/support/guest.py) sees it:

- SeaBIOS on `pc`, the NoCloud seed on an IDE cdrom;
- UEFI with Secure Boot (OVMF with Microsoft's keys enrolled, SMM, `q35`) and a TPM 2.0
  (swtpm), the seed on virtio-scsi (the cloud kernel has no AHCI driver);
- plain UEFI (OVMF without Secure Boot): only up to the kernel, to show the same signed
  shim and GRUB chain boots there too.

The two long guests boot at the same time (one vCPU each, TCG on this project's
machines: 85 s quiet, 3-5 min loaded) and every check shares them. Everything lives
under one prefix: a transient dir pool in /var/lib/libvirt/images/<prefix>guest with
the overlays (made with libvirt's storage API), seeds, serial logs and NVRAM files, and
the domains <prefix>bios, <prefix>sb, <prefix>uefi. All of it is removed at the end,
pass or fail, and the boot times are printed.
"""

from __future__ import annotations

import secrets
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import libvirt
import pytest

from tests.support.domains import remove_domain
from tests.support.guest import (
    agent_command,
    guest_exec,
    guest_file,
    guest_file_bytes,
    guest_image,
    make_seed_iso,
    real_guest_type,
    wait_for_agent,
    wait_for_serial,
)
from tests.support.prefix import unique_prefix

pytestmark = [pytest.mark.guest]

IMAGES = Path("/var/lib/libvirt/images")
OVMF = Path("/usr/share/OVMF")
BOOT_TIMEOUT = 900.0          # a deadline, not a wait: a quiet boot takes ~90 s
GIB = 1024 ** 3
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
Firmware = Literal["bios", "uefi", "secureboot"]


# --- the domain definition -------------------------------------------------------------

@dataclass(frozen=True)
class GuestSpec:
    """One test guest: what domain_xml needs."""

    name: str
    firmware: Firmware
    virt_type: str
    disk: Path
    serial: Path
    seed: Path | None = None
    nvram: Path | None = None
    tpm: bool = False


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def domain_xml(spec: GuestSpec) -> str:
    """512 MiB, one vCPU, the overlay on virtio, the seed as a cdrom on the bus this
    firmware and kernel can see, serial and console to a file, the guest agent channel,
    a virtio balloon; for Secure Boot also SMM and OVMF's Microsoft-enrolled pair."""
    domain = ET.Element("domain", type=spec.virt_type)
    _sub(domain, "name", spec.name)
    _sub(domain, "memory", "512", unit="MiB")
    _sub(domain, "vcpu", "1")
    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64",
         machine="q35" if spec.firmware == "secureboot" else "pc")
    if spec.firmware != "bios":
        assert spec.nvram is not None
        secure = spec.firmware == "secureboot"
        code, variables = (("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd") if secure
                           else ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"))
        _sub(os_el, "loader", str(OVMF / code), readonly="yes", type="pflash",
             secure="yes" if secure else "no")
        _sub(os_el, "nvram", str(spec.nvram), template=str(OVMF / variables))
    _sub(os_el, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.firmware == "secureboot":
        _sub(features, "smm", state="on")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2")
    _sub(disk, "source", file=str(spec.disk))
    _sub(disk, "target", dev="vda", bus="virtio")
    if spec.seed is not None:
        # SeaBIOS on pc: IDE. UEFI: OVMF leaves the PIIX IDE channels off, and the cloud
        # kernel has no AHCI (SATA on q35) driver, so virtio-scsi (LIBVIRT-HOST.md).
        ide = spec.firmware == "bios"
        if not ide:
            _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        cdrom = _sub(devices, "disk", type="file", device="cdrom")
        _sub(cdrom, "driver", name="qemu", type="raw")
        _sub(cdrom, "source", file=str(spec.seed))
        _sub(cdrom, "target", dev="hdc" if ide else "sda", bus="ide" if ide else "scsi")
        _sub(cdrom, "readonly")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(spec.serial))
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="file")
    _sub(console, "source", path=str(spec.serial))
    _sub(console, "target", type="serial", port="0")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if spec.tpm:
        tpm = _sub(devices, "tpm", model="tpm-crb")
        _sub(tpm, "backend", type="emulator", version="2.0")
    _sub(devices, "memballoon", model="virtio")
    return ET.tostring(domain, encoding="unicode")


def volume_xml(*, name: str, backing: Path, capacity_gib: int) -> str:
    """A qcow2 overlay volume on top of the base image."""
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(capacity_gib), unit="GiB")
    target = _sub(volume, "target")
    _sub(target, "format", type="qcow2")
    backing_store = _sub(volume, "backingStore")
    _sub(backing_store, "path", str(backing))
    _sub(backing_store, "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")


def pool_xml(*, name: str, path: Path) -> str:
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", name)
    target = _sub(pool, "target")
    _sub(target, "path", str(path))
    return ET.tostring(pool, encoding="unicode")


# --- the lab: one prefix, one pool, its domains; all removed at the end ---------------

@dataclass
class Booted:
    """A started guest and when it started (time.monotonic())."""

    name: str
    dom: Any
    serial: Path
    started: float
    marker: str
    boot_seconds: float | None = None


@dataclass
class Lab:
    conn: Any
    prefix: str
    directory: Path
    pool: Any
    base: Path
    virt_type: str
    token: str
    domains: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def overlay(self, short: str) -> Path:
        vol = self.pool.createXML(volume_xml(name=f"{short}.qcow2", backing=self.base,
                                             capacity_gib=4), 0)
        return Path(vol.path())

    def seed(self, short: str) -> Path:
        name = self.prefix + short
        user_data = "\n".join([
            "#cloud-config",
            f"hostname: {name}",
            "ssh_genkeytypes: [ed25519]",   # one host key: ~30 s less of a TCG boot
            "runcmd:",
            "  - [ sh, -c, 'echo \"" + self.token + " host=$(hostname)\" > /dev/ttyS0' ]",
            "",
        ])
        path = make_seed_iso(self.directory / f"{short}-seed.iso", user_data=user_data,
                             meta_data=f"instance-id: {name}\nlocal-hostname: {name}\n")
        self.pool.refresh(0)
        return path

    def start(self, short: str, firmware: Firmware, *, seed: bool = True,
              tpm: bool = False) -> Booted:
        name = self.prefix + short
        spec = GuestSpec(
            name=name, firmware=firmware, virt_type=self.virt_type,
            disk=self.overlay(short), serial=self.directory / f"{short}-serial.log",
            seed=self.seed(short) if seed else None,
            nvram=None if firmware == "bios" else self.directory / f"{short}_VARS.fd",
            tpm=tpm)
        self.domains.append(name)
        dom = self.conn.defineXML(domain_xml(spec))
        started = time.monotonic()
        try:
            dom.create()
        except libvirt.libvirtError as error:  # say what swtpm said: CI shows only this
            log = Path("/var/log/swtpm/libvirt/qemu") / f"{name}-swtpm.log"
            said = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise AssertionError(f"{name} did not start: {error}\n{log}:\n{said}") from None
        return Booted(name=name, dom=dom, serial=spec.serial, started=started,
                      marker=f"{self.token} host={name}")


def _remove_domain(conn: Any, name: str) -> None:
    """Destroy and undefine `name` with its NVRAM and TPM state."""
    remove_domain(conn, name,
                  flags=libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)
    # libvirt leaves its own logs of a domain behind; these are this test's domains
    for log in (Path("/var/log/libvirt/qemu") / f"{name}.log",
                Path("/var/log/swtpm/libvirt/qemu") / f"{name}-swtpm.log"):
        log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def lab(conn: Any, request: pytest.FixtureRequest) -> Iterator[Lab]:
    base = guest_image()
    prefix = unique_prefix()
    directory = IMAGES / f"{prefix}guest"
    directory.mkdir(mode=0o755)
    module_start = time.monotonic()
    pool = None
    the_lab: Lab | None = None
    try:
        pool = conn.storagePoolCreateXML(pool_xml(name=f"{prefix}guest", path=directory), 0)
        the_lab = Lab(conn=conn, prefix=prefix, directory=directory, pool=pool, base=base,
                      virt_type=real_guest_type(), token=f"GUEST-READY-{secrets.token_hex(4)}")
        yield the_lab
    finally:
        errors: list[str] = []
        for name in the_lab.domains if the_lab else []:
            try:
                _remove_domain(conn, name)
            except AssertionError as exc:
                errors.append(str(exc))
        if pool is not None:
            try:
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            except libvirt.libvirtError as exc:
                errors.append(f"pool {prefix}guest: {exc}")
        shutil.rmtree(directory, ignore_errors=True)
        if the_lab is not None:
            the_lab.timings["module"] = time.monotonic() - module_start
            _report(request, the_lab)
        assert not errors, errors
        assert not directory.exists(), f"{directory} left behind"


def _report(request: pytest.FixtureRequest, the_lab: Lab) -> None:
    """Print the measured times past pytest's output capture."""
    text = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in the_lab.timings.items())
    line = f"guest image ({the_lab.virt_type}): {text}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def started(lab: Lab) -> dict[str, Booted]:
    """Both long guests, started together."""
    return {
        "bios": lab.start("bios", "bios"),
        "secureboot": lab.start("sb", "secureboot", tpm=True),
    }


def _ready(lab: Lab, guest: Booted) -> Booted:
    """Wait (once) until `guest` has printed the cloud-init runcmd marker and its agent
    answers; record the boot time."""
    if guest.boot_seconds is None:
        wait_for_serial(guest.serial, guest.marker, timeout=BOOT_TIMEOUT, dom=guest.dom)
        guest.boot_seconds = time.monotonic() - guest.started
        lab.timings[f"{guest.name.removeprefix(lab.prefix)} boot to marker"] = \
            guest.boot_seconds
        wait_for_agent(guest.dom, timeout=120)
    return guest


@pytest.fixture(scope="module")
def bios(lab: Lab, started: dict[str, Booted]) -> Booted:
    return _ready(lab, started["bios"])


@pytest.fixture(scope="module")
def secureboot(lab: Lab, started: dict[str, Booted]) -> Booted:
    return _ready(lab, started["secureboot"])


@pytest.fixture(params=["bios", "secureboot"])
def booted(request: pytest.FixtureRequest) -> Booted:
    guest: Booted = request.getfixturevalue(request.param)
    return guest


def _boot_errors(text: str) -> list[str]:
    """GRUB's (and shim's) error lines before the kernel's banner. "no suitable video
    mode found" is expected: these domains have no display, and GRUB then boots Linux
    "in blind mode" (UEFI without a GOP)."""
    before_kernel = text.partition("Linux version")[0].replace("\r", "\n")
    return [line.strip() for line in before_kernel.split("\n")
            if "error:" in line and "no suitable video mode found" not in line]


# --- the checks ------------------------------------------------------------------------

def test_plain_uefi_boots_the_signed_chain_to_the_kernel(
        lab: Lab, started: dict[str, Booted]) -> None:
    """OVMF without Secure Boot: shim -> signed GRUB -> kernel, which sees SB off."""
    guest = lab.start("uefi", "uefi", seed=False)
    text = wait_for_serial(guest.serial, "secureboot: Secure boot disabled",
                           timeout=BOOT_TIMEOUT, dom=guest.dom)
    lab.timings["uefi to kernel"] = time.monotonic() - guest.started
    assert "Booting `Debian GNU/Linux 12" in text
    assert "Linux version 6.1" in text
    assert _boot_errors(text) == []
    _remove_domain(lab.conn, guest.name)


def test_the_guest_prints_the_marker(booted: Booted) -> None:
    text = wait_for_serial(booted.serial, booted.marker, timeout=1)
    assert "Linux version 6.1" in text
    assert _boot_errors(text) == []


def test_the_guest_agent_answers(booted: Booted) -> None:
    assert agent_command(booted.dom, {"execute": "guest-ping"}) == {}
    assert agent_command(booted.dom, {"execute": "guest-get-host-name"}) == \
        {"host-name": booted.name}
    result = guest_exec(booted.dom, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result == (3, "out\n", "err\n")


def test_cloud_init_grew_the_root_fs(booted: Booted) -> None:
    filesystems = agent_command(booted.dom, {"execute": "guest-get-fsinfo"})
    root = next(fs for fs in filesystems if fs["mountpoint"] == "/")
    # a 4 GiB overlay on a 2 GiB image: growpart + resize2fs on first boot
    assert root["total-bytes"] > 3.5 * GIB, root


def test_bios_guest_booted_without_uefi(bios: Booted) -> None:
    code, _out, _err = guest_exec(bios.dom, ["/usr/bin/test", "-d", "/sys/firmware/efi"])
    assert code == 1, "the SeaBIOS guest has /sys/firmware/efi"
    assert "secureboot:" not in wait_for_serial(bios.serial, bios.marker, timeout=1)


def test_secure_boot_is_on_in_the_guest(secureboot: Booted) -> None:
    text = wait_for_serial(secureboot.serial, secureboot.marker, timeout=1)
    assert "secureboot: Secure boot enabled" in text
    assert "Kernel is locked down from EFI Secure Boot" in text
    code, out, err = guest_exec(secureboot.dom, ["/usr/bin/mokutil", "--sb-state"])
    assert (code, out.strip()) == (0, "SecureBoot enabled"), err
    # efivarfs: 4 bytes of attributes, then the value
    assert guest_file_bytes(secureboot.dom, SECURE_BOOT_VAR)[4:] == b"\x01"


def test_the_secure_boot_guest_has_a_tpm2(secureboot: Booted) -> None:
    assert guest_file(secureboot.dom, "/sys/class/tpm/tpm0/tpm_version_major") == "2\n"
    code, out, err = guest_exec(secureboot.dom, [
        "/bin/sh", "-c", "test -c /dev/tpm0 && readlink /sys/class/tpm/tpm0/device/driver"])
    assert code == 0, err
    assert out.strip().endswith("/tpm_crb"), out

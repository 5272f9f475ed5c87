"""Section 8 in domain XML: firmware and Secure Boot, TPM, CPU, boot order, direct kernel
boot, graphics and the serial console; read from real shapes (libvirt 9.0's saved and
live XML, virt-install's), written only where they differ, kept where the manifest says
nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from controller.domainxml import build_domain, parse_domain
from controller.model import CPU, NO_KERNEL, Kernel
from tests.unit.test_planner import spec, xml

OS_EFI_AUTO = """<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  <firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='yes'
  name='secure-boot'/></firmware><boot dev='hd'/></os>"""
# what the running domain of OS_EFI_AUTO shows (libvirt 9.0, seen on this host)
OS_EFI_LIVE = """<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  <firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='yes'
  name='secure-boot'/></firmware>
  <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
  <nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'
  >/var/lib/libvirt/qemu/nvram/vm_VARS.fd</nvram>
  <boot dev='hd'/></os>"""
# virt-install --boot loader=...,nvram.template=... (explicit paths, no auto-selection)
OS_EFI_EXPLICIT = """<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
  <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/vm_VARS.fd</nvram>
  <boot dev='hd'/></os>"""
OS_EFI_NOTHING = """<os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  <boot dev='hd'/></os>"""


def domain(os_el: str = "", cpu: str = "", devices: str = "", features: str = "") -> str:
    """xml() with the <os>, <cpu>, <features> and devices given."""
    base = xml(devices=devices)
    if os_el:
        start, end = base.index("<os>"), base.index("</os>") + len("</os>")
        base = base[:start] + os_el + base[end:]
    extra = (f"<features>{features}</features>" if features else "") + cpu
    return base.replace("<devices>", extra + "<devices>", 1)


def root_of(text: str) -> ET.Element:
    return ET.fromstring(text)


# --- firmware ---------------------------------------------------------------------------

@pytest.mark.parametrize(("os_el", "expected"), [
    ("", ("bios", False)),
    (OS_EFI_AUTO, ("efi", True)),
    (OS_EFI_LIVE, ("efi", True)),
    (OS_EFI_EXPLICIT, ("efi", False)),
    (OS_EFI_NOTHING, ("efi", None)),
    ("<os><type>hvm</type><loader>/usr/share/seabios/bios.bin</loader></os>", ("bios", False)),
    ("<os firmware='bios'><type>hvm</type></os>", ("bios", False)),
    ("<os><type>hvm</type><loader readonly='yes' secure='yes' type='pflash'>/x.fd</loader>"
     "</os>", ("efi", True)),
    ("<os firmware='efi'><type>hvm</type><firmware><feature enabled='no' "
     "name='secure-boot'/></firmware></os>", ("efi", False)),
])
def test_firmware_is_read_from_every_shape(os_el: str, expected: tuple[str, bool | None]) -> None:
    config = parse_domain(domain(os_el))
    assert (config.firmware, config.secure_boot) == expected


def test_a_new_efi_domain_uses_auto_selection_on_q35() -> None:
    built = root_of(build_domain(spec(name="n", firmware="efi")))
    os_el = built.find("os")
    assert os_el is not None and os_el.get("firmware") == "efi"
    assert built.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    assert [(f.get("name"), f.get("enabled")) for f in built.iterfind("os/firmware/feature")
            ] == [("secure-boot", "no")]
    assert built.find("os/loader") is None and built.find("os/nvram") is None
    assert built.find("features/smm") is None


def test_a_new_secure_boot_domain_has_the_keys_and_smm() -> None:
    built = root_of(build_domain(spec(name="n", firmware="efi", secure_boot=True)))
    assert {(f.get("name"), f.get("enabled")) for f in built.iterfind("os/firmware/feature")
            } == {("secure-boot", "yes"), ("enrolled-keys", "yes")}
    assert built.find("features/smm").get("state") == "on"  # type: ignore[union-attr]
    assert parse_domain(ET.tostring(built, encoding="unicode")).secure_boot is True


def test_a_machine_given_wins_over_the_efi_default() -> None:
    built = root_of(build_domain(spec(name="n", firmware="efi", machine="pc")))
    assert built.find("os/type").get("machine") == "pc"  # type: ignore[union-attr]


def test_bios_to_efi_and_back_keeps_the_nvram_file_named_nowhere_else() -> None:
    efi = build_domain(spec(firmware="efi"), domain())
    assert parse_domain(efi).firmware == "efi"
    assert root_of(efi).find("os/type").get("machine") == "pc-i440fx-7.2"  # type: ignore[union-attr]
    bios = build_domain(spec(firmware="bios"), domain(OS_EFI_EXPLICIT))
    os_el = root_of(bios).find("os")
    assert os_el is not None
    assert [child.tag for child in os_el] == ["type", "boot"]
    assert parse_domain(bios).firmware == "bios"


def test_turning_secure_boot_on_switches_an_explicit_loader_to_auto_selection() -> None:
    built = build_domain(spec(firmware="efi", secure_boot=True, machine="q35"),
                         domain(OS_EFI_EXPLICIT))
    os_el = root_of(built).find("os")
    assert os_el is not None and os_el.get("firmware") == "efi"
    assert os_el.find("loader") is None
    nvram = os_el.find("nvram")  # the variable store in use stays; the template must go
    assert nvram is not None and nvram.text == "/var/lib/libvirt/qemu/nvram/vm_VARS.fd"
    assert nvram.get("template") is None
    assert parse_domain(built).secure_boot is True


def test_turning_secure_boot_off_drops_the_enrolled_keys() -> None:
    built = build_domain(spec(secure_boot=False), domain(OS_EFI_AUTO, features="<smm/>"))
    assert [(f.get("name"), f.get("enabled")) for f in root_of(built).iterfind(
        "os/firmware/feature")] == [("secure-boot", "no")]
    assert parse_domain(built).secure_boot is False


@pytest.mark.parametrize("os_el", [OS_EFI_AUTO, OS_EFI_EXPLICIT, OS_EFI_NOTHING, OS_EFI_LIVE])
def test_what_the_domain_has_is_not_touched(os_el: str) -> None:
    base = domain(os_el, features="<acpi/><smm state='on'/>")
    config = parse_domain(base)
    same = spec(firmware=config.firmware, secure_boot=config.secure_boot)
    assert build_domain(same, base) == build_domain(spec(), base)


# --- TPM, serial, graphics --------------------------------------------------------------

TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
VNC = ("<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>"
       "<listen type='address' address='127.0.0.1'/></graphics>")
SPICE_OPEN = ("<graphics type='spice' autoport='yes' listen='0.0.0.0'>"
              "<listen type='address' address='0.0.0.0'/></graphics>")


def test_tpm_is_added_and_removed() -> None:
    assert parse_domain(domain(devices=TPM)).tpm is True
    added = build_domain(spec(tpm=True), domain())
    [tpm] = root_of(added).findall("devices/tpm")
    assert tpm.find("backend").attrib == {"type": "emulator", "version": "2.0"}  # type: ignore[union-attr]
    assert parse_domain(build_domain(spec(tpm=False), domain(devices=TPM))).tpm is False
    assert build_domain(spec(tpm=True), domain(devices=TPM)) == build_domain(
        spec(), domain(devices=TPM))


@pytest.mark.parametrize(("devices", "expected"), [
    ("", ("none", None, False)),
    (VNC, ("vnc", "127.0.0.1", False)),
    (SPICE_OPEN, ("spice", "0.0.0.0", True)),
    ("<graphics type='vnc' port='-1'/>", ("vnc", None, False)),
    ("<graphics type='vnc' listen='::'/>", ("vnc", "::", True)),
    ("<graphics type='vnc'><listen type='network' network='default'/></graphics>",
     ("vnc", None, True)),
    ("<graphics type='spice'><listen type='socket'/></graphics>", ("spice", None, False)),
    ("<graphics type='sdl'/>", (None, None, False)),
    (VNC + "<graphics type='egl-headless'/>", (None, None, False)),
    (SPICE_OPEN + "<graphics type='egl-headless'/>", (None, None, True)),
])
def test_graphics_are_read(devices: str, expected: tuple[str | None, str | None, bool]) -> None:
    config = parse_domain(domain(devices=devices))
    assert (config.graphics, config.graphics_listen, config.graphics_exposed) == expected


def test_a_display_reconcile_adds_listens_on_loopback() -> None:
    built = root_of(build_domain(spec(graphics="vnc"), domain()))
    [graphics] = built.findall("devices/graphics")
    assert graphics.get("type") == "vnc" and graphics.get("listen") == "127.0.0.1"
    assert [listen.attrib for listen in graphics.findall("listen")] == [
        {"type": "address", "address": "127.0.0.1"}]
    spice = parse_domain(build_domain(spec(graphics="spice", graphics_listen="0.0.0.0"),
                                      domain(devices=VNC)))
    assert (spice.graphics, spice.graphics_listen, spice.graphics_exposed) == (
        "spice", "0.0.0.0", True)
    assert parse_domain(build_domain(spec(graphics="none"), domain(devices=VNC))).graphics \
        == "none"


def test_a_listen_change_keeps_the_rest_of_the_display() -> None:
    base = domain(devices=VNC.replace("autoport='yes'", "autoport='yes' passwd='s3cret'"))
    built = root_of(build_domain(spec(graphics="vnc", graphics_listen="192.0.2.1"), base))
    [graphics] = built.findall("devices/graphics")
    assert graphics.get("passwd") == "s3cret" and graphics.get("listen") == "192.0.2.1"


def test_displays_a_manifest_cannot_describe_are_kept_while_graphics_is_left_out() -> None:
    base = domain(devices=VNC + "<graphics type='egl-headless'/>")
    assert build_domain(spec(), base) == build_domain(spec(graphics=None), base)


@pytest.mark.parametrize(("devices", "expected"), [
    ("", False),
    ("<serial type='pty'><target port='0'/></serial>", True),
    ("<console type='pty'><target type='serial' port='0'/></console>", True),
    ("<console type='pty'/>", True),
    ("<console type='pty'><target type='virtio' port='0'/></console>", False),
    ("<serial type='file'><source path='/var/log/x.log'/></serial>", True),
])
def test_serial_is_read(devices: str, expected: bool) -> None:
    assert parse_domain(_only(devices)).serial is expected


def _only(devices: str) -> str:
    """A domain whose devices are exactly `devices`."""
    base = xml()
    start = base.index("<devices>") + len("<devices>")
    end = base.index("</devices>")
    return base[:start] + devices + base[end:]


def test_serial_false_removes_serial_ports_and_consoles_but_not_virtio_consoles() -> None:
    base = _only("<serial type='pty'><target port='0'/></serial>"
                 "<console type='pty'><target type='serial' port='0'/></console>"
                 "<console type='pty'><target type='virtio' port='1'/></console>")
    built = root_of(build_domain(spec(serial=False), base))
    assert built.findall("devices/serial") == []
    assert [c.find("target").get("type") for c in built.findall("devices/console")  # type: ignore[union-attr]
            ] == ["virtio"]
    again = build_domain(spec(serial=True), ET.tostring(built, encoding="unicode"))
    assert parse_domain(again).serial is True
    assert [(e.tag, e.find("target").get("type"))  # type: ignore[union-attr]
            for e in root_of(again).find("devices")  # type: ignore[union-attr]
            if e.tag in ("serial", "console")] == [
        ("serial", None), ("console", "serial"), ("console", "virtio")]


# --- CPU --------------------------------------------------------------------------------

@pytest.mark.parametrize(("cpu", "expected"), [
    ("", None),
    ("<cpu mode='host-passthrough' check='none' migratable='on'/>", CPU("host-passthrough")),
    ("<cpu mode='host-model' check='partial'><topology sockets='1' dies='1' cores='2' "
     "threads='1'/></cpu>", CPU("host-model", None, 1, 2, 1)),
    ("<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model>"
     "</cpu>", CPU("custom", "qemu64")),
    ("<cpu><model>Skylake-Client</model><feature policy='require' name='vmx'/></cpu>",
     CPU("custom", "Skylake-Client")),
    ("<cpu><topology sockets='2' dies='2' cores='1' threads='1'/></cpu>", CPU()),
    ("<cpu mode='maximum'/>", CPU("maximum")),
])
def test_cpu_is_read(cpu: str, expected: CPU | None) -> None:
    assert parse_domain(domain(cpu=cpu)).cpu == expected


def test_a_mode_change_drops_the_old_mode_s_model_and_features() -> None:
    base = domain(cpu="<cpu mode='custom' match='exact' check='full'><model fallback='forbid'>"
                      "Skylake-Client</model><vendor>Intel</vendor><topology sockets='1' "
                      "cores='1' threads='1'/><feature policy='require' name='vmx'/>"
                      "<numa><cell id='0' cpus='0' memory='65536' unit='KiB'/></numa></cpu>")
    built = root_of(build_domain(spec(cpu=CPU("host-passthrough")), base))
    cpu = built.find("cpu")
    assert cpu is not None and cpu.attrib == {"mode": "host-passthrough"}
    assert [child.tag for child in cpu] == ["topology", "numa"]


def test_a_model_change_keeps_features_and_a_topology_change_drops_dies() -> None:
    base = domain(cpu="<cpu mode='custom' match='exact'><model fallback='allow'>qemu64"
                      "</model><topology sockets='1' dies='1' cores='1' threads='1'/>"
                      "<feature policy='disable' name='svm'/></cpu>")
    built = root_of(build_domain(
        spec(vcpus=4, cpu=CPU("custom", "Haswell", 2, 2, 1)), base))
    cpu = built.find("cpu")
    assert cpu is not None and cpu.get("match") == "exact"
    assert cpu.findtext("model") == "Haswell"
    assert cpu.find("model").get("fallback") == "allow"  # type: ignore[union-attr]
    assert cpu.find("topology").attrib == {  # type: ignore[union-attr]
        "sockets": "2", "cores": "2", "threads": "1"}
    assert cpu.find("feature") is not None
    assert parse_domain(ET.tostring(built, encoding="unicode")).cpu == CPU(
        "custom", "Haswell", 2, 2, 1)


def test_a_cpu_is_added_after_the_features() -> None:
    built = root_of(build_domain(spec(vcpus=2, cpu=CPU("host-model", None, 1, 2, 1)), domain()))
    tags = [child.tag for child in built]
    assert tags.index("cpu") == tags.index("os") + 1
    assert parse_domain(ET.tostring(built, encoding="unicode")).cpu == CPU("host-model", None,
                                                                          1, 2, 1)


# --- boot order and kernel ----------------------------------------------------------------

def test_boot_order_is_read_and_written() -> None:
    assert parse_domain(domain()).boot == ("hd",)
    built = build_domain(spec(boot=("cdrom", "network", "hd")), domain())
    assert [b.get("dev") for b in root_of(built).iterfind("os/boot")] == [
        "cdrom", "network", "hd"]
    assert parse_domain(built).boot == ("cdrom", "network", "hd")


def test_a_boot_order_replaces_per_device_ones() -> None:
    base = _only("<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a'/>"
                 "<target dev='vda' bus='virtio'/><boot order='1'/></disk>").replace(
        "<boot dev='hd'/>", "")
    assert parse_domain(base).boot is None
    built = build_domain(spec(boot=("hd",)), base)
    assert root_of(built).find("devices/disk/boot") is None
    assert parse_domain(built).boot == ("hd",)


def test_kernel_is_read_written_and_removed() -> None:
    kernel = Kernel("/var/lib/libvirt/boot/vmlinuz", "/var/lib/libvirt/boot/initrd.img",
                    "console=ttyS0 root=/dev/vda1")
    built = build_domain(spec(kernel=kernel), domain())
    assert parse_domain(built).kernel == kernel
    assert [child.tag for child in root_of(built).find("os")  # type: ignore[union-attr]
            ] == ["type", "kernel", "initrd", "cmdline", "boot"]
    assert build_domain(spec(kernel=kernel), built) == build_domain(spec(), built)
    shorter = build_domain(spec(kernel=Kernel(kernel.path)), built)
    assert parse_domain(shorter).kernel == Kernel(kernel.path)
    gone = build_domain(spec(kernel=NO_KERNEL), built)
    assert parse_domain(gone).kernel == NO_KERNEL
    assert [child.tag for child in root_of(gone).find("os")] == [  # type: ignore[union-attr]
        "type", "boot"]


# --- a new domain's defaults ----------------------------------------------------------------

def test_a_new_domain_gets_the_defaults() -> None:
    config = parse_domain(build_domain(spec(name="n")))
    assert (config.firmware, config.tpm, config.graphics, config.serial, config.guest_agent,
            config.boot, config.kernel, config.cpu) == (
        "bios", False, "none", True, False, ("hd",), NO_KERNEL, None)
    quiet = parse_domain(build_domain(spec(name="n", serial=False)))
    assert quiet.serial is False

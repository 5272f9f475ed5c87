"""Section 8 on the real libvirtd with tiny guests (no operating system: OVMF or SeaBIOS
sits at its boot menu, under TCG): UEFI with Secure Boot and a TPM from a manifest, the
firmware libvirt chose, no false changes from what it fills in, NVRAM and TPM state
files kept by every redefinition and undefine (prune, state: absent, a replaced UUID),
CPU modes, and each bad input refused in one line with nothing touched.

The real guest OS (EFI, Secure Boot and the TPM seen from inside, the agent answering) is
in test_firmware_guest.py.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from controller.locks import VMLocks
from controller.manifests import load_directory
from controller.virt import Hypervisor

from ..support.command import OnceRunner, Runner
from ..support.domains import must_read, snapshot
from ..support.libvirtd import SYSTEM_URI
from ..support.manifests import Manifests, VMBuilder
from ..support.rig import Rig
from .firmware_support import FirmwareState, digest, live_loader, nvram_path, tpm_state

OVMF_SECURE = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
OVMF_PLAIN = "/usr/share/OVMF/OVMF_CODE_4M.fd"


def _root(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_an_efi_secure_boot_tpm_guest_and_its_state_files_survive_everything(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, firmware_state: FirmwareState,
) -> None:
    name = prefix + "sb"
    wanted = {"type": "qemu", "firmware": "efi", "secureBoot": True, "tpm": True,
              "vcpus": 2, "cpu": {"sockets": 1, "cores": 2, "threads": 1},
              "graphics": "vnc", "guestAgent": True}
    manifests.write("sb.yaml", vm("sb", **wanted))
    first = once(check_exit=0)
    assert first.actions(name) == ["define", "start"]
    first_uuid = firmware_state.remember(name)
    booted = must_read(conn, name)
    saved = _root(booted.saved_xml)
    assert saved.find("os").get("firmware") == "efi"  # type: ignore[union-attr]
    assert saved.find("os/type").get("machine", "").startswith("pc-q35")  # type: ignore[union-attr]
    assert saved.find("features/smm").get("state") == "on"  # type: ignore[union-attr]
    assert saved.find("devices/tpm/backend").attrib == {  # type: ignore[union-attr]
        "type": "emulator", "version": "2.0"}
    assert saved.find("cpu/topology").get("cores") == "2"  # type: ignore[union-attr]
    assert booted.live_xml is not None
    loader, secure, nvram = live_loader(booted.live_xml)
    assert (loader, secure, nvram) == (OVMF_SECURE, "yes", str(nvram_path(name)))
    graphics = _root(booted.live_xml).find("devices/graphics")
    assert graphics is not None and graphics.get("listen") == "127.0.0.1"
    assert nvram_path(name).is_file() and tpm_state(first_uuid).is_file()

    # libvirt filled in the loader, the NVRAM, CPU features, addresses: nothing to do
    assert once(check_exit=0).result(name) == "unchanged"
    assert once("--dry-run", check_exit=0).result(name) == "unchanged"

    # a running restart for memory: the same NVRAM file, the same TPM state
    manifests.write("sb.yaml", vm("sb", **wanted, memory="80MiB"))
    nvram_before = digest(nvram_path(name))
    assert once(check_exit=0).actions(name) == ["destroy", "define", "start"]
    restarted = must_read(conn, name)
    assert restarted.live_xml is not None
    assert live_loader(restarted.live_xml)[2] == str(nvram_path(name))
    assert digest(nvram_path(name)) == nvram_before  # OVMF writes it on the first boot only
    assert tpm_state(first_uuid).is_file()

    # stopped, a firmware-unrelated redefinition touches neither file
    manifests.write("sb.yaml", vm("sb", **wanted, memory="80MiB", state="stopped"))
    assert once(check_exit=0).actions(name) == ["destroy"]
    files = {nvram_path(name): digest(nvram_path(name)),
             tpm_state(first_uuid): digest(tpm_state(first_uuid))}
    manifests.write("sb.yaml", vm("sb", **wanted, memory="96MiB", state="stopped"))
    assert once(check_exit=0).actions(name) == ["define"]
    assert {path: digest(path) for path in files} == files

    # a replaced UUID: undefine (keeping both), define; the old TPM state stays on disk
    new_uuid = str(uuid.uuid4())
    manifests.write("sb.yaml", vm("sb", **wanted, memory="96MiB", state="stopped",
                                  uuid=new_uuid))
    assert once(check_exit=0).actions(name) == ["undefine", "define"]
    assert firmware_state.remember(name) == new_uuid
    assert {path: digest(path) for path in files} == files

    # state: absent: undefined, both files kept
    manifests.write("sb.yaml", vm("sb", state="absent", uuid=new_uuid))
    assert once(check_exit=0).actions(name) == ["undefine"]
    assert conn.listDefinedDomains().count(name) == 0
    assert {path: digest(path) for path in files} == files


def test_prune_keeps_nvram_and_tpm_state(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, firmware_state: FirmwareState, tmp_path: Path,
) -> None:
    """Prune goes through the orphan path of one name (the host may hold other sessions'
    managed domains, which a --prune pass would remove: this prunes only ours)."""
    name = prefix + "orphan"
    manifests.write("o.yaml", vm("orphan", type="qemu", firmware="efi", tpm=True))
    once(check_exit=0)
    state = tpm_state(firmware_state.remember(name))
    assert nvram_path(name).is_file() and state.is_file()
    manifests.write("o.yaml", vm("other", state="absent"))  # a directory that is not empty
    load = load_directory(str(manifests.path))
    assert load.prune_safe and name not in load.specs
    hypervisor = Hypervisor.open(SYSTEM_URI)
    hypervisor.connection.connect()
    try:
        locks = VMLocks(str(tmp_path / "locks"), timeout=10)
        reconciler = Rig.single(hypervisor, locks).reconciler(load, prune=True)
        reconciler.orphans_in_pass = 1  # only ours counts: the others are not touched
        outcome = reconciler.reconcile(name)
    finally:
        hypervisor.connection.close()
    assert (outcome.result.value, [s.action.value for s in outcome.steps]) == (
        "pruned", ["destroy", "undefine"]), outcome
    assert name not in [dom.name() for dom in conn.listAllDomains(0)]
    assert nvram_path(name).is_file() and state.is_file()


def test_cpu_modes_on_tcg(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    """host-model runs under TCG (libvirt runs it as the custom CPU it expands to, which is
    no change); host-passthrough cannot start under TCG here, so only its XML is checked."""
    name = prefix + "cpu"
    manifests.write("c.yaml", vm("cpu", type="qemu", cpu={"mode": "host-model"}))
    assert once(check_exit=0).actions(name) == ["define", "start"]
    running = must_read(conn, name)
    assert running.live_xml is not None
    assert _root(running.saved_xml).find("cpu").get("mode") == "host-model"  # type: ignore[union-attr]
    assert _root(running.live_xml).find("cpu").get("mode") == "custom"  # type: ignore[union-attr]
    assert once(check_exit=0).result(name) == "unchanged"

    manifests.write("c.yaml", vm("cpu", type="qemu", cpu={"mode": "custom", "model": "qemu64"}))
    changed = once(check_exit=0)
    assert changed.actions(name) == ["destroy", "define", "start"]
    assert _root(must_read(conn, name).saved_xml).findtext("cpu/model") == "qemu64"
    assert once(check_exit=0).result(name) == "unchanged"

    other = prefix + "pt"
    manifests.write("p.yaml", vm("pt", type="kvm", state="stopped",
                                 cpu={"mode": "host-passthrough"}))
    assert once(check_exit=0).actions(other) == ["define"]
    assert _root(must_read(conn, other).saved_xml).find("cpu").get(  # type: ignore[union-attr]
        "mode") == "host-passthrough"
    assert once(check_exit=0).result(other) == "unchanged"


def test_boot_order_kernel_serial_and_bios_back(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, image_dir: Path, run: Runner, firmware_state: FirmwareState,
) -> None:
    name = prefix + "k"
    kernel, initrd = image_dir / "vmlinuz", image_dir / "initrd.img"
    kernel.write_bytes(b"not a kernel: this domain stays stopped")
    initrd.write_bytes(b"")
    spec = {"type": "qemu", "state": "stopped", "boot": ["cdrom", "hd"], "serial": False,
            "kernel": {"path": str(kernel), "initrd": str(initrd), "cmdline": "console=ttyS0"}}
    manifests.write("k.yaml", vm("k", **spec))  # image_dir is inside the default disk root
    assert run("validate", "-m", str(manifests.path)).returncode == 0
    assert once(check_exit=0).actions(name) == ["define"]
    saved = _root(must_read(conn, name).saved_xml)
    assert [b.get("dev") for b in saved.iterfind("os/boot")] == ["cdrom", "hd"]
    assert (saved.findtext("os/kernel"), saved.findtext("os/initrd"),
            saved.findtext("os/cmdline")) == (str(kernel), str(initrd), "console=ttyS0")
    assert saved.find("devices/serial") is None and saved.find("devices/console") is None
    assert once(check_exit=0).result(name) == "unchanged"

    document = vm("k", type="qemu", state="stopped", serial=True, firmware="efi")
    document["spec"]["kernel"] = None  # kernel: null removes the direct kernel boot
    manifests.write("k.yaml", document)
    assert once(check_exit=0).actions(name) == ["define"]
    saved = _root(must_read(conn, name).saved_xml)
    assert saved.find("os/kernel") is None and saved.find("devices/serial") is not None
    assert saved.find("os").get("firmware") == "efi"  # type: ignore[union-attr]
    manifests.write("k.yaml", vm("k", type="qemu", state="stopped", firmware="bios"))
    assert once(check_exit=0).actions(name) == ["define"]
    assert _root(must_read(conn, name).saved_xml).find("os").get("firmware") is None  # type: ignore[union-attr]
    assert once(check_exit=0).result(name) == "unchanged"


# --- bad input: one line, its exit code, nothing touched ------------------------------------

@pytest.mark.parametrize(("spec", "line"), [
    ({"secureBoot": True}, "spec.secureBoot: secureBoot needs firmware: efi"),
    ({"vcpus": 2, "cpu": {"sockets": 1, "cores": 1, "threads": 1}},
     "spec.cpu: sockets 1 × cores 1 × threads 1 = 1, but vcpus is 2"),
    ({"kernel": {"path": "/boot/vmlinuz"}}, "spec.kernel.path: /boot/vmlinuz is outside the "
                                            "allowed roots"),
    ({"graphicsListen": "0.0.0.0"}, "spec.graphicsListen: graphicsListen needs graphics: "
                                    "vnc or spice"),
], ids=["secure-boot-without-efi", "topology", "kernel-outside", "listen-without-graphics"])
def test_invalid_manifests_exit_2_and_touch_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, run: Runner,
    spec: dict[str, object], line: str,
) -> None:
    name = prefix + "bad"
    manifests.write("ok.yaml", vm("ok", state="stopped"))
    manifests.write("bad.yaml", vm("bad", **spec))
    validate = run("validate", "-m", str(manifests.path))
    assert validate.returncode == 2
    proc = run("--once", check_exit=2)
    errors = [text for text in proc.stderr.splitlines() + proc.stdout.splitlines()
              if line in text]
    assert len(errors) == 1 and "bad.yaml" in errors[0], proc.stdout + proc.stderr
    assert line in validate.stdout + validate.stderr
    assert name not in [dom.name() for dom in conn.listAllDomains(0)]
    assert prefix + "ok" in [dom.name() for dom in conn.listAllDomains(0)]


def test_an_unknown_cpu_model_fails_the_vm_in_one_line_and_touches_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    name, new = prefix + "m", prefix + "n"
    manifests.write("m.yaml", vm("m", type="qemu"))
    once(check_exit=0)
    before = snapshot(conn, prefix)
    manifests.write("m.yaml", vm("m", type="qemu", cpu={"model": "Nehalem-Turbo-9000"}),
                    vm("n", type="qemu", cpu={"model": "Nehalem-Turbo-9000"}))
    result = once(check_exit=1)
    for vm_name in (name, new):
        entry = result.vms[vm_name]
        assert (entry["result"], entry["steps"]) == ("failed", [])
        assert entry["error"].startswith("cpu: model 'Nehalem-Turbo-9000' is unknown to this "
                                         "host's libvirt (qemu, ")
        assert "\n" not in entry["error"]
    after = snapshot(conn, prefix)
    assert after.keys() == before.keys() == {name}
    assert (after[name].id, after[name].saved_xml) == (before[name].id, before[name].saved_xml)


def test_a_display_beyond_loopback_needs_graphics_listen(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    name = prefix + "vnc"
    conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        "<graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0'>"
        "<listen type='address' address='0.0.0.0'/></graphics></devices></domain>")
    before = snapshot(conn, prefix)
    manifests.write("v.yaml", vm("vnc", type="qemu", state="stopped", adopt=True,
                                 graphics="vnc"))
    refused = once(check_exit=1)
    entry = refused.vms[name]
    assert (entry["result"], entry["steps"]) == ("failed", [])
    assert entry["error"] == ("graphics: the domain's vnc listens on 0.0.0.0, beyond "
                              "127.0.0.1, and the manifest has no graphicsListen: set "
                              "graphicsListen: 0.0.0.0 to keep that, or graphicsListen: "
                              "127.0.0.1")
    assert snapshot(conn, prefix) == before

    manifests.write("v.yaml", vm("vnc", type="qemu", state="stopped", adopt=True,
                                 graphics="vnc", graphicsListen="127.0.0.1"))
    moved = once(check_exit=0)
    assert moved.actions(name) == ["define"]
    graphics = _root(must_read(conn, name).saved_xml).find("devices/graphics")
    assert graphics is not None and graphics.get("listen") == "127.0.0.1"

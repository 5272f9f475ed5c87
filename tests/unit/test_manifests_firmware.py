"""Section 8 in manifests: the fields to a VMSpec (left out: None, keep the domain's), and
each bad input as one Invalid with the field's path and a reason of one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.manifests import check_document, load_directory
from controller.model import CPU, NO_KERNEL, Kernel
from tests.unit.test_manifests import vm, write


def spec_of(tmp_path: Path, roots: list[Path] | None = None, **fields: Any) -> Any:
    write(tmp_path / "m", "vm.yaml", vm("web-1", **fields))
    load = load_directory(str(tmp_path / "m"),
                          disk_roots=[str(root) for root in roots or [tmp_path]])
    assert load.invalid == [], load.invalid
    return load.specs["web-1"]


def invalid(tmp_path: Path, roots: list[Path] | None = None, **fields: Any) -> tuple[str, str]:
    write(tmp_path / "m", "vm.yaml", vm("web-1", **fields))
    load = load_directory(str(tmp_path / "m"),
                          disk_roots=[str(root) for root in roots or [tmp_path]])
    assert load.specs == {}
    [entry] = load.invalid
    assert (entry.file, entry.document) == ("vm.yaml", 0)
    assert "\n" not in entry.error
    return entry.path, entry.error


def test_left_out_is_none_everywhere(tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    assert (spec.firmware, spec.secure_boot, spec.tpm, spec.cpu, spec.boot, spec.kernel,
            spec.graphics, spec.graphics_listen, spec.serial, spec.guest_agent) == (None,) * 10


def test_every_field_reaches_the_spec(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz").write_bytes(b"k")
    (boot / "initrd.img").write_bytes(b"i")
    spec = spec_of(tmp_path, [tmp_path], vcpus=4, firmware="efi", secureBoot=True, tpm=True,
                   machine="q35", cpu={"mode": "host-passthrough", "sockets": 1, "cores": 2,
                                       "threads": 2},
                   boot=["hd", "cdrom"], kernel={"path": str(boot / "vmlinuz"),
                                                 "initrd": str(boot / "initrd.img"),
                                                 "cmdline": "console=ttyS0"},
                   graphics="spice", graphicsListen="0.0.0.0", serial=False, guestAgent=True)
    assert (spec.firmware, spec.secure_boot, spec.tpm, spec.cpu, spec.boot, spec.kernel,
            spec.graphics, spec.graphics_listen, spec.serial, spec.guest_agent) == (
        "efi", True, True, CPU("host-passthrough", None, 1, 2, 2), ("hd", "cdrom"),
        Kernel(str(boot / "vmlinuz"), str(boot / "initrd.img"), "console=ttyS0"),
        "spice", "0.0.0.0", False, True)


def test_a_model_alone_is_custom_and_a_part_of_the_topology_defaults_to_one(
        tmp_path: Path) -> None:
    assert spec_of(tmp_path, cpu={"model": "qemu64"}).cpu == CPU("custom", "qemu64")
    assert spec_of(tmp_path, vcpus=2, cpu={"cores": 2}).cpu == CPU(None, None, 1, 2, 1)


def test_kernel_null_removes_it_and_the_boot_root_is_allowed(tmp_path: Path) -> None:
    assert spec_of(tmp_path, kernel=None).kernel == NO_KERNEL
    inside = spec_of(tmp_path, kernel={"path": "/var/lib/libvirt/boot/vmlinuz"}).kernel
    assert inside == Kernel("/var/lib/libvirt/boot/vmlinuz")


@pytest.mark.parametrize(("fields", "path", "error"), [
    ({"secureBoot": True}, "spec.secureBoot", "secureBoot needs firmware: efi"),
    ({"secureBoot": True, "firmware": "bios"}, "spec.secureBoot",
     "secureBoot needs firmware: efi"),
    ({"secureBoot": True, "firmware": "efi", "machine": "pc"}, "spec.secureBoot",
     "secureBoot needs a q35 machine, not pc"),
    ({"vcpus": 4, "cpu": {"sockets": 1, "cores": 2, "threads": 1}}, "spec.cpu",
     "sockets 1 × cores 2 × threads 1 = 2, but vcpus is 4"),
    ({"cpu": {"mode": "custom"}}, "spec.cpu.model", "mode: custom needs a model"),
    ({"cpu": {"mode": "host-model", "model": "qemu64"}}, "spec.cpu.model",
     "a CPU model goes with mode: custom, not host-model"),
    ({"graphicsListen": "0.0.0.0"}, "spec.graphicsListen",
     "graphicsListen needs graphics: vnc or spice"),
    ({"graphics": "none", "graphicsListen": "0.0.0.0"}, "spec.graphicsListen",
     "graphicsListen needs graphics: vnc or spice"),
    ({"graphics": "vnc", "graphicsListen": "1.2.3"}, "spec.graphicsListen",
     "1.2.3 is not an IP address"),
])
def test_bad_input_is_one_line(tmp_path: Path, fields: dict[str, Any], path: str,
                               error: str) -> None:
    assert invalid(tmp_path, **fields) == (path, error)


def test_a_kernel_outside_the_roots_is_invalid(tmp_path: Path) -> None:
    roots = [tmp_path / "images"]
    roots[0].mkdir()
    path, error = invalid(tmp_path, roots, kernel={"path": "/boot/vmlinuz"})
    assert path == "spec.kernel.path"
    assert error.startswith("/boot/vmlinuz")
    assert "is outside the allowed roots" in error and "/var/lib/libvirt/boot" in error
    link = roots[0] / "vmlinuz"
    link.symlink_to("/etc/hostname")
    path, error = invalid(tmp_path, roots, kernel={"path": str(roots[0] / "k"),
                                                   "initrd": str(link)})
    assert (path, error.split(" (resolves")[0]) == ("spec.kernel.initrd", str(link))


@pytest.mark.parametrize("fields", [
    {"firmware": "uefi"}, {"cpu": {"mode": "maximum"}}, {"cpu": {"sockets": 0}},
    {"boot": []}, {"boot": ["hd", "hd"]}, {"boot": ["fd"]}, {"graphics": "sdl"},
    {"kernel": {"initrd": "/var/lib/libvirt/boot/i"}}, {"kernel": {"path": "relative"}},
    {"kernel": {"path": "/var/lib/libvirt/boot/k", "cmdline": "a\nb"}},
    {"serial": "yes"}, {"tpm": 1}, {"cpu": {"model": "bad model"}},
])
def test_the_schema_refuses(fields: dict[str, Any]) -> None:
    problems = check_document(vm("web-1", **fields))
    assert problems and all(p.path.startswith("spec") for p in problems), problems

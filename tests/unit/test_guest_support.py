"""The parts of the real-guest harness (tests/support/guest.py) that need no guest: the
domain-type rule, the image lookup, and waiting on a serial log."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.guest import guest_image, log_tail, real_guest_type, wait_for_serial

HARDWARE_FLAGS = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx sse2\n"
NO_VIRT_FLAGS = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr sse2 hypervisor\n"


def _host(tmp_path: Path, *, kvm: bool, pvm: bool, flags: str) -> dict[str, Path]:
    dev_kvm = tmp_path / "kvm"
    if kvm:
        dev_kvm.touch()
    modules = tmp_path / "module"
    (modules / "kvm").mkdir(parents=True)
    if pvm:
        (modules / "kvm_pvm" / "parameters").mkdir(parents=True)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(flags)
    return {"dev_kvm": dev_kvm, "sys_module": modules, "cpuinfo": cpuinfo}


@pytest.mark.parametrize(("kvm", "pvm", "flags", "expected"), [
    (True, False, HARDWARE_FLAGS, "kvm"),
    (True, True, NO_VIRT_FLAGS, "qemu"),       # this project's machines: kvm_pvm built in
    (True, True, HARDWARE_FLAGS, "qemu"),      # kvm_pvm wins even with vmx
    (True, False, NO_VIRT_FLAGS, "qemu"),      # /dev/kvm without vmx/svm is not hardware
    (False, False, HARDWARE_FLAGS, "qemu"),    # no /dev/kvm
])
def test_real_guest_type(tmp_path: Path, kvm: bool, pvm: bool, flags: str,
                         expected: str) -> None:
    assert real_guest_type(**_host(tmp_path, kvm=kvm, pvm=pvm, flags=flags)) == expected


def test_real_guest_type_on_this_host() -> None:
    if Path("/sys/module/kvm_pvm").exists() or not Path("/dev/kvm").exists():
        assert real_guest_type() == "qemu"
    else:
        assert real_guest_type() in ("kvm", "qemu")


def test_guest_image_fails_with_the_build_command(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_GUEST_IMAGE", str(tmp_path / "none.qcow2"))
    with pytest.raises(pytest.fail.Exception, match=r"scripts/guest-image\.sh"):
        guest_image()


def test_guest_image_needs_its_checksum(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "half.qcow2"
    image.write_bytes(b"QFI\xfb")
    monkeypatch.setenv("RECONCILE_GUEST_IMAGE", str(image))
    with pytest.raises(pytest.fail.Exception, match="no guest image"):
        guest_image()
    image.with_name("half.qcow2.sha256").write_text("x  half.qcow2\n")
    assert guest_image() == image


def test_wait_for_serial_returns_the_log_once_the_marker_is_there(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"SeaBIOS\r\n")

    def boot() -> None:
        with log.open("ab") as handle:
            handle.write(b"\x1b[0mLinux version 6.1\r\nREADY-1 host=x\r\n")

    timer = threading.Timer(0.3, boot)
    timer.start()
    try:
        text = wait_for_serial(log, "READY-1", timeout=10, interval=0.05)
    finally:
        timer.join()
    assert text.startswith("SeaBIOS") and "READY-1 host=x" in text


def test_wait_for_serial_fails_with_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"".join(b"line %d\r\n" % n for n in range(100)) + b"\x1b[2Jstuck here\n")
    with pytest.raises(pytest.fail.Exception) as failure:
        wait_for_serial(log, "READY", timeout=0.2, interval=0.05)
    message = str(failure.value)
    assert "stuck here" in message and "line 99" in message and "line 10\n" not in message
    assert "\x1b" not in message


def test_wait_for_serial_before_the_file_exists(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="no 'READY'"):
        wait_for_serial(tmp_path / "missing.log", "READY", timeout=0.1, interval=0.05)


def test_log_tail_drops_blank_lines_and_escapes() -> None:
    assert log_tail("a\r\n\r\n\x1b[01;01Hb\n  \nc\n", lines=2) == "b\nc"

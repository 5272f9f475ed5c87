"""The libvirt daemons the tests run against: the system libvirtd's URI (and starting it
when it is down), the guest type this machine can run, readying the machine for QEMU
guests, and what starting a libvirtd of our own takes (the start script that gives it
private folders, and waiting until it answers).

Called by the fixtures of tests/e2e and tests/fidelity (the system libvirtd),
tests/service and tests/reliability (tests/support/sandbox.py's private libvirtd) and
tests/multihost (one libvirtd per network namespace). Stopping a daemon of our own, and
cleaning up after it, stay with its owner.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest

from tests.support.waiting import wait_until

#: The system libvirtd (started by scripts/libvirtd-up.sh).
SYSTEM_URI = "qemu:///system"
#: Starts the system libvirtd when it is not running (also where there is no systemd).
UP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "libvirtd-up.sh"
#: The domain type of the tests' guests: hardware KVM where the machine has it.
VIRT_TYPE = "kvm" if Path("/dev/kvm").exists() else "qemu"

#: Runs inside `unshare --mount`: make the libvirt folders private, then become libvirtd.
#: /etc/libvirt/storage and /etc/libvirt/secrets too: else a pool a daemon of ours defines
#: is written into the real host's /etc/libvirt/storage, and every daemon sees the others'.
START_SCRIPT = r"""#!/bin/sh
# Runs inside `unshare --mount`: make the libvirt folders private, then become libvirtd.
# Usage: start.sh BASE [LIBVIRTD OPTION...]
set -e
base=$1
shift
mount --make-rprivate /
for dir in run var/lib/libvirt var/cache/libvirt var/log/libvirt etc/libvirt/qemu \
           etc/libvirt/storage etc/libvirt/secrets; do
    mkdir -p "$base/root/$dir" "/$dir"
    mount --bind "$base/root/$dir" "/$dir"
done
mkdir -p /run/libvirt/qemu /var/lib/libvirt/qemu /var/lib/libvirt/images \
         /var/cache/libvirt/qemu /var/log/libvirt/qemu
if [ -d "$base/capabilities" ]; then
    cp -a "$base/capabilities" /var/cache/libvirt/qemu/  # spares a QEMU probe of ~4 s
fi
virtlogd &
echo $! > "$base/virtlogd.pid"
exec libvirtd "$@" -f "$base/libvirtd.conf" -p /run/libvirtd.pid
"""


def system_libvirtd_up() -> None:
    """Make sure the system libvirtd runs (UP_SCRIPT); the test fails, with the script's
    error, when it cannot be started."""
    up = subprocess.run(["bash", str(UP_SCRIPT)], capture_output=True, text=True,
                        timeout=120, check=False)
    if up.returncode != 0:
        pytest.fail(f"scripts/libvirtd-up.sh exited {up.returncode}: {up.stderr.strip()}")


def prepare_for_guests() -> None:
    """Ready this process and machine for real guests: libvirt's own error printing off
    (tests read the exceptions), and /dev/kvm usable by QEMU's user when we are root.
    Without the latter, libvirt re-probes QEMU on every define (~40 s each)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    kvm = Path("/dev/kvm")
    if kvm.exists() and os.geteuid() == 0 and kvm.stat().st_mode & 0o006 != 0o006:
        kvm.chmod(0o666)


def write_start_script(base: Path) -> Path:
    """`base`/start.sh, executable: START_SCRIPT, to run under `unshare --mount` with
    `base` as its first argument (it reads base/libvirtd.conf and base/capabilities, and
    writes base/virtlogd.pid)."""
    script = base / "start.sh"
    script.write_text(START_SCRIPT)
    script.chmod(0o755)
    return script


def wait_answering(*, who: str, daemon: subprocess.Popen[bytes] | None, log: Path,
                   answering: Callable[[], bool], timeout: float,
                   interval: float = 0.05) -> None:
    """Wait until `answering()` is true; fail at once, with the tail of `log`, if the
    `daemon` process exits meanwhile, and after `timeout` seconds. `who` names the daemon
    in the messages ("the private libvirtd")."""
    def up() -> bool:
        if daemon is not None and daemon.poll() is not None:
            text = log.read_text(errors="replace")
            raise AssertionError(f"{who} exited {daemon.returncode}:\n{text[-2000:]}")
        return answering()
    wait_until(up, timeout, interval=interval, what=f"{who} to answer")

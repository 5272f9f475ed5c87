"""Section 8 with the real Debian 12 cloud guest (scripts/guest-image.sh), booted from a
manifest: UEFI with Secure Boot and an emulated TPM 2.0, the QEMU guest agent channel, a
volume disk made from an Image document (a file:// URL to the cached image). No seed:
cloud-init finds no datasource and stays out of the way, which is all the agent needs.

One guest, booted twice (TCG: ~100 s on a quiet machine, 3-5 min loaded), checked from
inside through the agent:

- the guest sees EFI (/sys/firmware/efi), Secure Boot on (mokutil), a TPM 2.0 (/dev/tpm0);
- a memory change restarts it (graceful shutdown, define, start), and what the guest wrote
  into its NVRAM (an EFI variable) and its TPM (an NV index, through raw TPM2 commands
  to /dev/tpmrm0) before is still there after: the state files were kept, not recreated;
- a rerun plans nothing.

Everything is named by the test's prefix: the pool (a dir pool under
/var/lib/libvirt/images), the image and root volumes, the domain, its NVRAM and TPM state;
all removed at the end, pass or fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from controller.virt import pools as virt_pools

from ..support.command import Pass, Runner, parse_report
from ..support.disks import IMAGES, remove_pool
from ..support.domains import must_read
from ..support.guest import guest_exec, guest_file, guest_image, wait_for_agent
from ..support.manifests import Manifests, VMBuilder
from .firmware_support import FirmwareState, nvram_path, tpm_state

pytestmark = [pytest.mark.guest]

BOOT_TIMEOUT = 900.0  # a deadline, not a wait
EFI_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"  # EFI_GLOBAL_VARIABLE
MARKER_GUID = "4f1a5e2b-8c3d-4e6f-9a0b-1c2d3e4f5a6b"  # ours, for the test variable

#: Raw TPM 2.0 commands through the kernel's resource manager: define an NV index (owner
#: read/write, empty auth), write to it, read it back. argv: define-write DATA | read.
TPM_SCRIPT = r"""
import os, struct, sys
INDEX, OWNER = 0x01500015, 0x40000001
def cmd(code, handles, params):
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)  # TPM_RS_PW, no nonce, no hmac
    body = b"".join(struct.pack(">I", h) for h in handles)
    body += struct.pack(">I", len(auth)) + auth + params
    fd = os.open("/dev/tpmrm0", os.O_RDWR)
    try:
        os.write(fd, struct.pack(">HII", 0x8002, 10 + len(body), code) + body)
        reply = os.read(fd, 4096)
    finally:
        os.close(fd)
    return struct.unpack(">I", reply[6:10])[0], reply[10:]
if sys.argv[1] == "define-write":
    data = sys.argv[2].encode()
    public = struct.pack(">IHIHH", INDEX, 0x000B, 0x00060006, 0, len(data))
    rc, _ = cmd(0x12A, [OWNER], struct.pack(">H", 0) + struct.pack(">H", len(public)) + public)
    if rc not in (0, 0x14C):  # 0x14C: TPM_RC_NV_DEFINED
        sys.exit("NV_DefineSpace: rc 0x%x" % rc)
    rc, _ = cmd(0x137, [OWNER, INDEX], struct.pack(">H", len(data)) + data + b"\0\0")
    if rc:
        sys.exit("NV_Write: rc 0x%x" % rc)
else:
    rc, rest = cmd(0x14E, [OWNER, INDEX], struct.pack(">HH", int(sys.argv[2]), 0))
    if rc:
        sys.exit("NV_Read: rc 0x%x" % rc)
    size = struct.unpack(">H", rest[4:6])[0]
    sys.stdout.write(rest[6:6 + size].decode())
"""


@pytest.fixture
def pool(conn: libvirt.virConnect, prefix: str,
         firmware_state: FirmwareState) -> Iterator[str]:
    """A dir pool of this test's own; removed with its volumes after the domain."""
    name = prefix + "pool"
    path = IMAGES / name
    virt_pools.ensure_pool(conn, name=name, path=str(path), autostart=False)
    yield name
    firmware_state.cleanup()
    remove_pool(conn, name, path)


def _documents(prefix: str, pool: str, vm: VMBuilder, memory: str) -> list[dict[str, Any]]:
    base = guest_image()
    sha256 = base.with_name(base.name + ".sha256").read_text().split()[0]
    image = {"apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": prefix + "img"},
             "spec": {"url": f"file://{base}", "sha256": sha256, "pool": pool}}
    machine = vm("sb", type="qemu", memory=memory, vcpus=1, stopTimeout=120,
                 firmware="efi", secureBoot=True, tpm=True, guestAgent=True,
                 disks=[{"volume": prefix + "root", "pool": pool, "image": prefix + "img",
                         "size": "4GiB"}])
    return [image, machine]


def _once(run: Runner, state_dir: Path, *args: str, timeout: float = 600) -> Pass:
    proc = run("--once", "-o", "json", "--state-dir", str(state_dir), *args, timeout=timeout)
    return Pass(proc, parse_report(proc))


def _agent_text(dom: Any, argv: list[str]) -> str:
    code, out, err = guest_exec(dom, argv)
    assert code == 0, (argv, code, out, err)
    return out


def test_a_secure_boot_tpm_guest_from_a_manifest(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, run: Runner,
    pool: str, firmware_state: FirmwareState, tmp_path: Path,
) -> None:
    name = prefix + "sb"
    state_dir = tmp_path / "state"
    manifests.write("sb.yaml", *_documents(prefix, pool, vm, "512MiB"))
    started = time.monotonic()
    first = _once(run, state_dir)
    assert first.code == 0, first.proc.stdout + first.proc.stderr
    assert first.actions(name) == ["create-volume", "define", "start"]
    uuid = firmware_state.remember(name)
    dom = conn.lookupByName(name)
    wait_for_agent(dom, timeout=BOOT_TIMEOUT)
    boot_seconds = time.monotonic() - started

    # the guest agent answers (guestAgent: true); the guest booted UEFI, Secure Boot on
    assert _agent_text(dom, ["/usr/bin/test", "-d", "/sys/firmware/efi"]) == ""
    assert _agent_text(dom, ["/usr/bin/mokutil", "--sb-state"]).strip() == "SecureBoot enabled"
    assert guest_file(dom, "/sys/class/tpm/tpm0/tpm_version_major") == "2\n"
    assert _agent_text(dom, ["/bin/sh", "-c", "test -c /dev/tpm0 && echo tpm0"]) == "tpm0\n"

    # what the guest keeps in its NVRAM and TPM
    marker = f"kept-{prefix}"
    variable = f"/sys/firmware/efi/efivars/ReconcileMarker-{MARKER_GUID}"
    _agent_text(dom, ["/bin/sh", "-c",
                      f"printf '\\007\\000\\000\\000{marker}' > {variable}"])
    _agent_text(dom, ["/usr/bin/python3", "-c", TPM_SCRIPT, "define-write", marker])
    assert _agent_text(dom, ["/usr/bin/python3", "-c", TPM_SCRIPT, "read", str(len(marker))]
                       ) == marker
    assert nvram_path(name).is_file() and tpm_state(uuid).is_file()
    before = must_read(conn, name)

    # a memory change: graceful shutdown, define, start; the state files are the same
    manifests.write("sb.yaml", *_documents(prefix, pool, vm, "640MiB"))
    restarted_at = time.monotonic()
    changed = _once(run, state_dir)
    assert changed.code == 0, changed.proc.stdout + changed.proc.stderr
    assert changed.actions(name) == ["shutdown", "define", "start"]
    after = must_read(conn, name)
    assert after.id != before.id and after.live_xml is not None
    assert after.live.memory_kib == 640 * 1024
    wait_for_agent(dom, timeout=BOOT_TIMEOUT)
    reboot_seconds = time.monotonic() - restarted_at
    assert guest_file(dom, variable).endswith(marker)
    assert _agent_text(dom, ["/usr/bin/python3", "-c", TPM_SCRIPT, "read", str(len(marker))]
                       ) == marker
    assert _agent_text(dom, ["/usr/bin/mokutil", "--sb-state"]).strip() == "SecureBoot enabled"
    assert (must_read(conn, name).saved_xml.count("<tpm"), firmware_state.remember(name)) == (
        1, uuid)

    assert _once(run, state_dir).result(name) == "unchanged"
    print(f"\nguest ({name}): boot to agent {boot_seconds:.0f} s, "
          f"memory-change restart to agent {reboot_seconds:.0f} s")

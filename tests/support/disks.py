"""Disk images for the tests' guests: libvirt's image folder (QEMU's user can traverse
it) and small qcow2 images made with qemu-img. Called by tests/e2e and tests/reliability
(and the `image_dir` fixture of tests/support/system.py); `remove_pool` removes a test's
own dir pool with its volumes and folder, pass or fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import libvirt

IMAGES = Path("/var/lib/libvirt/images")


def qcow2(path: Path, size: str = "16M") -> Path:
    """An empty qcow2 image of `size` at `path`."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size],
                   check=True, capture_output=True, text=True, timeout=60)
    return path


def remove_pool(conn: libvirt.virConnect, name: str, path: Path) -> None:
    """The test's pool `name` (if defined), every volume in it, and its folder `path`
    (unmounted first when a test mounted something there)."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        pool = None
    if pool is not None:
        if not pool.isActive():
            pool.create(0)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        pool.undefine()
    if path.is_mount():
        subprocess.run(["umount", str(path)], check=True, timeout=60)
    shutil.rmtree(path, ignore_errors=True)

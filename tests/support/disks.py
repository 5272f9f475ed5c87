"""Disk images for the tests' guests: libvirt's image folder (QEMU's user can traverse
it) and small qcow2 images made with qemu-img. Called by tests/e2e and tests/reliability
(and the `image_dir` fixture of tests/support/system.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

IMAGES = Path("/var/lib/libvirt/images")


def qcow2(path: Path, size: str = "16M") -> Path:
    """An empty qcow2 image of `size` at `path`."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size],
                   check=True, capture_output=True, text=True, timeout=60)
    return path

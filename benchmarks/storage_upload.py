"""Upload throughput of controller.virt.storage next to its floor, `virsh vol-upload`.

    .venv/bin/python benchmarks/storage_upload.py [--size-mib 1024] [--rounds 5] [--file F]

As root, with libvirtd running (qemu:///system). Makes a dir pool of its own
(t-<8 hex>-bench under /var/lib/libvirt/images) and, without --file, a dense qcow2
image of --size-mib MiB of random data under /var/tmp; uploads it in interleaved rounds
with `virsh vol-upload` (the floor: libvirt's own client, into a raw volume of the file's
size made beforehand and not timed) and with `storage.upload_volume` at each `Check`,
plain and sparse; prints the median seconds and the ratio to the floor's median; removes
everything it made. Also times `copy_volume` (createXMLFrom) and `download_volume`.
Results vary with the machine's load: run it on a quiet machine and say what else ran.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.virt import storage

URI = "qemu:///system"


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", URI, *args], check=True, capture_output=True,
                   text=True, timeout=600)


def make_image(folder: Path, size_mib: int) -> Path:
    raw, image = folder / "image.raw", folder / "image.qcow2"
    with open(raw, "wb") as file:
        file.writelines(os.urandom(1 << 20) for _ in range(size_mib))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                   check=True, timeout=600)
    raw.unlink()
    return image


def timed(action: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=True)
    start = time.monotonic()
    action()
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--file", type=Path, help="upload this file instead of a new image")
    args = parser.parse_args()

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    name = f"t-{secrets.token_hex(4)}-bench"
    folder = Path(tempfile.mkdtemp(prefix="storage-bench-", dir="/var/tmp"))
    pool_path = Path("/var/lib/libvirt/images") / name
    try:
        image = args.file or make_image(folder, args.size_mib)
        size = image.stat().st_size
        storage.ensure_pool(conn, name=name, path=str(pool_path), autostart=False)

        def floor(sparse: bool) -> float:
            virsh("vol-create-as", name, "floor", str(size), "--format", "raw",
                  "--allocation", "0")
            try:
                return timed(lambda: virsh("vol-upload", "--pool", name, "floor", str(image),
                                           *(["--sparse"] if sparse else [])))
            finally:
                virsh("vol-delete", "--pool", name, "floor")

        def ours(check: storage.Check, sparse: bool) -> float:
            try:
                return timed(lambda: storage.upload_volume(
                    conn, pool=name, name="ours", path=str(image), check=check,
                    sparse=sparse))
            finally:
                storage.delete_volume(conn, pool=name, name="ours")

        print(f"{image.name}: {size} bytes, {args.rounds} rounds, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        for sparse in (False, True):
            runs: dict[str, list[float]] = {"virsh vol-upload": []}
            for check in storage.Check:
                runs[f"upload_volume {check.name}"] = []
            for _ in range(args.rounds):
                runs["virsh vol-upload"].append(floor(sparse))
                for check in storage.Check:
                    runs[f"upload_volume {check.name}"].append(ours(check, sparse))
            base = statistics.median(runs["virsh vol-upload"])
            for label, seconds in runs.items():
                median = statistics.median(seconds)
                print(f"sparse={sparse!s:5} {label:22} median {median:6.2f} s "
                      f"({size / median / 2**20:5.0f} MiB/s) ratio {median / base:4.2f}  "
                      f"runs {' '.join(f'{s:.2f}' for s in seconds)}")

        storage.upload_volume(conn, pool=name, name="image", path=str(image),
                              check=storage.Check.NONE)
        copies = []
        for _ in range(args.rounds):
            copies.append(timed(lambda: storage.copy_volume(
                conn, pool=name, name="copy", source_pool=name, source_name="image")))
            storage.delete_volume(conn, pool=name, name="copy")
        print(f"copy_volume (createXMLFrom) median {statistics.median(copies):.2f} s  runs "
              f"{' '.join(f'{s:.2f}' for s in copies)}")
        out = folder / "download"
        downloads = [timed(lambda: storage.download_volume(conn, pool=name, name="image",
                                                           path=str(out)))
                     for _ in range(args.rounds)]
        print(f"download_volume median {statistics.median(downloads):.2f} s  runs "
              f"{' '.join(f'{s:.2f}' for s in downloads)}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        try:
            pool = conn.storagePoolLookupByName(name)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
            pool.undefine()
        except libvirt.libvirtError:
            pass
        shutil.rmtree(pool_path, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Floor of the storage benchmark: the volumes, seeds and domains of N guests, with only
the calls and tools any tool must use for them.

    python benchmarks/floors/storage.py URI WORKERS CONNECTIONS PLAN.json

PLAN.json is a list of guests, each {"name", "memory_mib", "virt_type", "start",
"define", "disk": null | {"pool", "volume", "backing", "capacity"}, "seed": null | {"pool",
"volume", "folder"}}. Per guest, in a thread pool of WORKERS (like `reconcile
--workers`) whose threads share CONNECTIONS connections (as reconcile spreads its):

- disk: `createXML` of a qcow2 overlay volume on `backing` (a path) in `pool`, of
  `capacity` bytes (the image's, as reconcile makes it);
- seed: `cloud-localds` of the `user-data`, `meta-data` and (if there) `network-config`
  files in `folder`, then `virsh vol-create-as` (raw, sparse, the ISO's size) and `virsh
  vol-upload` of the ISO into `pool` (the floor issue 14 names);
- `defineXML` of the tiny guest of floors/converge.py with those disks (the overlay as
  virtio `vda`, the seed as a read-only IDE cdrom, both `type='volume'`, as reconcile
  writes them), then `create` when `start`.

Prints the number of guests done. Run by `sections/storage_overlays.py`,
`storage_seeds.py` and `storage_boot.py`, as its own process with the same interpreter
as `reconcile`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from floors.converge import domain_xml, in_pool  # the converge floor's guest and pool


def guest_xml(guest: dict[str, Any]) -> str:
    root = ET.fromstring(domain_xml(guest["name"], memory_mib=guest["memory_mib"],
                                    virt_type=guest["virt_type"]))
    devices = root.find("devices")
    assert devices is not None
    for kind, spec in (("disk", guest.get("disk")), ("cdrom", guest.get("seed"))):
        if not spec:
            continue
        disk = ET.SubElement(devices, "disk", type="volume", device=kind)
        ET.SubElement(disk, "driver", name="qemu", type="qcow2" if kind == "disk" else "raw")
        ET.SubElement(disk, "source", pool=spec["pool"], volume=spec["volume"])
        ET.SubElement(disk, "target", dev="vda" if kind == "disk" else "hdc",
                      bus="virtio" if kind == "disk" else "ide")
        if kind == "cdrom":
            ET.SubElement(disk, "readonly")
    return ET.tostring(root, encoding="unicode")


def overlay_xml(volume: str, backing: str, capacity: int) -> str:
    return (f"<volume><name>{volume}</name><capacity>{capacity}</capacity><target>"
            f"<format type='qcow2'/></target><backingStore><path>{backing}</path>"
            f"<format type='qcow2'/></backingStore></volume>")


def make_seed(uri: str, seed: dict[str, Any]) -> None:
    folder = Path(seed["folder"])
    iso = folder / "seed.iso"
    network = folder / "network-config"
    subprocess.run(["cloud-localds", *(["-N", str(network)] if network.exists() else []),
                    str(iso), str(folder / "user-data"), str(folder / "meta-data")],
                   check=True, capture_output=True)
    virsh = ["virsh", "-q", "-c", uri]
    subprocess.run([*virsh, "vol-create-as", seed["pool"], seed["volume"],
                    str(iso.stat().st_size), "--format", "raw", "--allocation", "0"],
                   check=True, capture_output=True)
    subprocess.run([*virsh, "vol-upload", "--pool", seed["pool"], seed["volume"], str(iso)],
                   check=True, capture_output=True)


def main(argv: list[str]) -> int:
    uri, workers, connections, plan_file = argv
    plan: list[dict[str, Any]] = json.loads(Path(plan_file).read_text())

    def one(conn: Any, guest: dict[str, Any]) -> None:
        disk = guest.get("disk")
        if disk:
            conn.storagePoolLookupByName(disk["pool"]).createXML(
                overlay_xml(disk["volume"], disk["backing"], disk["capacity"]), 0)
        if guest.get("seed"):
            make_seed(uri, guest["seed"])
        if guest.get("define", True):
            dom = conn.defineXML(guest_xml(guest))
            if guest.get("start"):
                dom.create()

    in_pool(uri, workers=int(workers), connections=int(connections), job=one, items=plan)
    print(len(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

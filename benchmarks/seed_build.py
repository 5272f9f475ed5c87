"""How long building NoCloud seeds takes: controller.cloudinit.build_seed in this process,
next to cloud-localds (and genisoimage, which cloud-localds runs) making the same seeds.

    .venv/bin/python benchmarks/seed_build.py [--count 100] [--json]

Each of COUNT seeds has its own VM name and UUID (so no two are alike), a cloud-config
user data and a version 2 network config. build_seed is timed from the values to the ISO
bytes in memory; cloud-localds and genisoimage are timed from writing the three files
into a temporary folder to the ISO file on disk, one process each, as a host without
pycdlib would do it. cloud-localds comes from Debian's cloud-image-utils package,
genisoimage from genisoimage; a tool that is not installed is reported as missing.
Not a test: it prints what it measured and asserts nothing but that each tool
succeeded and that both builders' seeds hold the same files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.cloudinit import build_seed, meta_data_for, seed_content_sha256, seed_files

USER_DATA = """#cloud-config
users:
  - name: ops
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyOnly ops@example]
write_files:
  - path: /etc/motd
    content: "seed {n}\\n"
runcmd:
  - [sh, -c, "echo ready > /dev/ttyS0"]
"""
NETWORK = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}


def inputs(count: int) -> list[dict[str, Any]]:
    namespace = uuid.UUID("6f1c1b8e-3a52-4d8e-9a0b-5e0c2d7f4a11")
    return [
        {
            "user_data": USER_DATA.format(n=n),
            "meta_data": meta_data_for(
                name=f"bench-{n}", uuid=str(uuid.uuid5(namespace, str(n))), overrides={}
            ),
            "network_config": NETWORK,
        }
        for n in range(count)
    ]


def time_each(count: int, build: Callable[[int], None]) -> list[float]:
    seconds = []
    for n in range(count):
        start = time.perf_counter()
        build(n)
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(name: str, seconds: list[float] | None, note: str = "") -> dict[str, Any]:
    if seconds is None:
        return {"builder": name, "missing": True, "note": note}
    return {
        "builder": name,
        "count": len(seconds),
        "total_s": round(sum(seconds), 4),
        "mean_ms": round(statistics.fmean(seconds) * 1000, 3),
        "median_ms": round(statistics.median(seconds) * 1000, 3),
        "max_ms": round(max(seconds) * 1000, 3),
        "note": note,
    }


def external(
    tool: str, argv: Callable[[Path], list[str]], values: list[dict[str, Any]], work: Path
) -> tuple[list[float] | None, list[str]]:
    """Time `tool` making each seed from files; return the times and the content hashes."""
    if shutil.which(tool) is None:
        return None, []
    hashes: list[str] = []

    def build(n: int) -> None:
        folder = work / f"{tool}-{n}"
        folder.mkdir()
        for name, content in seed_files(**values[n]).items():
            (folder / name).write_bytes(content)
        subprocess.run(argv(folder), check=True, capture_output=True, cwd=folder)
        found = seed_content_sha256((folder / "seed.iso").read_bytes())
        hashes.append(found or "unreadable")

    seconds = time_each(len(values), build)
    return seconds, hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    values = inputs(args.count)

    build_seed(**values[0])  # imports and first-call costs are not what is measured
    ours: list[str] = []
    ours_seconds = time_each(
        args.count, lambda n: ours.append(build_seed(**values[n]).content_sha256))

    with tempfile.TemporaryDirectory(prefix="seed-bench-") as tmp:
        work = Path(tmp)
        localds, localds_hashes = external(
            "cloud-localds",
            lambda d: ["cloud-localds", "-N", str(d / "network-config"), str(d / "seed.iso"),
                       str(d / "user-data"), str(d / "meta-data")],
            values, work,
        )
        geniso, geniso_hashes = external(
            "genisoimage",
            lambda d: ["genisoimage", "-quiet", "-output", str(d / "seed.iso"), "-volid",
                       "cidata", "-joliet", "-rock", "user-data", "meta-data", "network-config"],
            values, work,
        )
    for name, hashes in (("cloud-localds", localds_hashes), ("genisoimage", geniso_hashes)):
        if hashes and hashes != ours:
            print(f"{name} made seeds with other content than build_seed", file=sys.stderr)
            return 1

    rows = [
        summary("build_seed (in process)", ours_seconds, "values -> ISO bytes in memory"),
        summary("cloud-localds", localds, "files -> ISO file, one process each"
                if localds is not None else "not installed (cloud-image-utils)"),
        summary("genisoimage", geniso, "files -> ISO file, one process each"
                if geniso is not None else "not installed (genisoimage)"),
    ]
    if args.json:
        print(json.dumps({"count": args.count, "results": rows}, indent=2))
        return 0
    print(f"{args.count} seeds, each with its own content (same files from every builder)")
    print(f"{'builder':<26} {'total s':>8} {'mean ms':>8} {'median ms':>10} {'max ms':>8}  note")
    for row in rows:
        if row.get("missing"):
            print(f"{row['builder']:<26} {'-':>8} {'-':>8} {'-':>10} {'-':>8}  {row['note']}")
            continue
        print(f"{row['builder']:<26} {row['total_s']:>8.3f} {row['mean_ms']:>8.2f} "
              f"{row['median_ms']:>10.2f} {row['max_ms']:>8.2f}  {row['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of controller.images next to `curl -o`, for one file from a local HTTP server.

    .venv/bin/python benchmarks/fetch_throughput.py [--size-mib 1024] [--runs 3] [--dir DIR]

Makes a random file of --size-mib MiB in DIR (default: a temporary folder under /var/tmp),
serves it from tests/support/httpserver.py on 127.0.0.1 (sendfile, no throttle), and times
per run, each into an empty cache on the same filesystem:

  fetch http   fetch_image() of the http URL (stream, sha256, write, fsync, rename)
  fetch file   fetch_image() of the file:// URL (read, sha256, write, fsync, rename)
  curl         curl -s -o FILE URL (no hash, no fsync)
  curl+verify  curl, then fsync and a sha256 of the file (hashlib, as fetch uses): the
               same work as fetch http, one step after the other

The source file stays in the page cache (it is read once before the runs). Prints one line
per method with the median of the runs in MB/s (10^6 bytes per second) and MiB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.images import fetch_image
from tests.support.httpserver import FileServer


def _make(path: Path, size: int) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            hasher.update(block)
            f.write(block)
            left -= len(block)
    return hasher.hexdigest()


def _fsync_and_hash(path: Path) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fetch-bench-", dir=args.dir or "/var/tmp"))
    try:
        www = work / "www"
        www.mkdir()
        size = args.size_mib << 20
        source = www / "disk.img"
        sha = _make(source, size)
        subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)
        times: dict[str, list[float]] = {"fetch http": [], "fetch file": [], "curl": [],
                                         "curl+verify": []}
        with FileServer(www) as server:
            url = server.url("disk.img")
            for run in range(args.runs):
                for method, seconds in times.items():
                    target = work / f"out-{run}-{method.replace(' ', '-')}"
                    began = time.perf_counter()
                    if method == "fetch http":
                        fetch_image(url=url, sha256=sha, cache_dir=target)
                    elif method == "fetch file":
                        fetch_image(url=source.as_uri(), sha256=sha, cache_dir=target)
                    else:
                        subprocess.run(["curl", "-s", "-o", str(target), url], check=True)
                        if method == "curl+verify":
                            _fsync_and_hash(target)
                    seconds.append(time.perf_counter() - began)
                    if target.is_dir():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
        print(f"{args.size_mib} MiB, {args.runs} runs, median; into {work}")
        for method, seconds in times.items():
            median = statistics.median(seconds)
            print(f"  {method:<12} {median:6.2f} s  {size / median / 1e6:7.0f} MB/s  "
                  f"{size / median / (1 << 20):7.0f} MiB/s   (runs: "
                  + ", ".join(f"{s:.2f}" for s in seconds) + " s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

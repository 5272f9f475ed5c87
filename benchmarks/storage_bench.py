"""The storage benchmark of issues 13 and 14: images, overlays, seeds and booted guests,
each measured side by side with its floor.

    .venv/bin/python benchmarks/storage_bench.py [--only import,overlays,seeds,boot]
        [--runs 5] [--size-mib 1024] [--vms 10] [--seeds 100] [--boot-vms 10]
        [--boot-memory 320] [--boot-runs 1] [--boot-timeout 2400] [--kcli PATH]
        [--quick] [--out DIR] [-c URI]

As root, with libvirtd running (`make bench-storage` bootstraps like `make bench`).
Sections (one module each, benchmarks/sections/storage_*.py, whose docstrings say what
is timed and against which floor):

  import    a 1 GiB image imported by `reconcile --once` (cache filled; and with the
            download from 127.0.0.1) vs `virsh vol-create-as` + `virsh vol-upload`
  overlays  --vms VMs made from that image, stopped and running, vs createXML (overlay)
            + defineXML (+ create) with the same parallelism
  seeds     --seeds stopped VMs with cloud-init seeds vs cloud-localds + virsh
            vol-create-as + vol-upload (+ define); and the seeds alone, in process
  boot      --boot-vms real Debian cloud guests (type qemu) from manifest to a console
            that says multi-user and shows the user data's marker, vs the same through
            libvirt-python (and kcli with --kcli)

Writes benchmarks/results/storage.json (sections not run are kept from the previous
file) and, from it, benchmarks/results/STORAGE.md (harness/storage_report.py: each figure,
its floor, the ratio; what ran beside them); what they mean goes by hand into
benchmarks/results/STORAGE-NOTES.md, which STORAGE.md includes (`--render` redraws it).
Everything it makes is named bench-<8 hex>-...: domains, its own dir pools under
/var/lib/libvirt/images, a scratch folder under /var/tmp (which also holds reconcile's
state: RECONCILE_STATE_DIR). All of it is removed at the end, on errors, Ctrl-C, SIGTERM
and SIGHUP (harness/pools.py:clean_up, which then lists anything of the prefix still
there); nothing else is touched. Only SIGKILL leaves things behind: remove them with
`virsh` by the prefix the run printed first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from storage_upload import make_image

from controller.images.cache import hash_file
from controller.virt import storage as virt_storage
from harness import storage_report
from harness.context import Bench
from harness.host import Host, interrupts_raise, new_prefix, prepare_kvm
from harness.machine import code_state, default_workers, machine
from harness.pools import clean_up, make_pool
from harness.runs import RECONCILE, RESULTS, BenchError, Json, cache_bytecode
from harness.storage import Image
from sections import storage_boot, storage_import, storage_overlays, storage_seeds
from tests.support.guest import guest_image_path
from tests.support.httpserver import FileServer

SECTIONS = ("import", "overlays", "seeds", "boot")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="import,overlays,seeds,boot",
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--runs", type=int, default=5, help="rounds of import/overlays/seeds")
    parser.add_argument("--size-mib", type=int, default=1024, help="the image to import")
    parser.add_argument("--vms", type=int, default=10, help="VMs made from the image")
    parser.add_argument("--overlay-states", default="stopped,running",
                        help="the overlays section's VM states")
    parser.add_argument("--seeds", type=int, default=100, help="VMs with cloud-init seeds")
    parser.add_argument("--boot-vms", type=int, default=10)
    parser.add_argument("--boot-memory", type=int, default=320, help="MiB per booted guest")
    parser.add_argument("--boot-runs", type=int, default=1)
    parser.add_argument("--boot-timeout", type=float, default=2400.0,
                        help="seconds for every guest of one side to boot")
    parser.add_argument("--kcli", type=Path, default=None,
                        help="a kcli command (its own venv) to boot the guests with too")
    parser.add_argument("--workers", type=int, default=None,
                        help="reconcile's and the floors' parallelism (default: reconcile's)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 64 MiB, 1 round, 3 VMs, 10 seeds, 2 guests")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true",
                        help="only rewrite STORAGE.md from storage.json (and STORAGE-NOTES.md)")
    parser.add_argument("-c", "--connect", default="qemu:///system")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.size_mib, args.vms, args.seeds, args.boot_vms = 1, 64, 3, 10, 2
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if not args.only or set(args.only) - set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")
    if not RECONCILE.exists():
        parser.error(f"no reconcile next to {sys.executable}: run with .venv/bin/python")
    return args


def _measure(section: str, b: Bench, args: argparse.Namespace, workers: int) -> Json:
    conn = b.host.conn
    if section in ("import", "overlays"):
        www = b.tmp / "www"
        if not (www / "image.qcow2").exists():
            www.mkdir(exist_ok=True)
            b.progress(f"  making a dense {args.size_mib} MiB qcow2 of random data")
            make_image(www, args.size_mib)
        path = www / "image.qcow2"
        image = Image(name=f"{b.prefix}img", path=path, sha256=hash_file(path)[1],
                      pool=_pool(b, "pool"))
        if section == "import":
            with FileServer(www) as server:
                return storage_import.measure(b, image=image, url=server.url(path.name),
                                              runs=args.runs)
        _import(conn, image)
        return storage_overlays.measure(b, image=image, n=args.vms, runs=args.runs,
                                        workers=workers,
                                        states=args.overlay_states.split(","))
    if section == "seeds":
        return storage_seeds.measure(b, pool=_pool(b, "seeds"), n=args.seeds, runs=args.runs,
                                     workers=workers)
    path = guest_image_path()
    checksum = path.with_name(path.name + ".sha256")
    if not checksum.is_file():
        raise BenchError(f"no guest image at {path}: run scripts/guest-image.sh")
    image = Image(name=f"{b.prefix}debian", path=path, sha256=checksum.read_text().split()[0],
                  pool=_pool(b, "boot"))
    _import(conn, image)
    return storage_boot.measure(b, image=image, n=args.boot_vms, runs=args.boot_runs,
                                workers=workers, memory_mib=args.boot_memory,
                                timeout=args.boot_timeout, kcli=args.kcli)


def _pool(b: Bench, suffix: str) -> str:
    name = f"{b.prefix}{suffix}"
    try:
        b.host.conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:  # not there yet
        make_pool(b.host.conn, name)
    return name


def _import(conn: libvirt.virConnect, image: Image) -> None:
    """The image as reconcile imports it (name and all), untimed."""
    virt_storage.upload_volume(conn, pool=image.pool, name=image.volume,
                               path=str(image.path), check=virt_storage.Check.NONE)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if args.render:
        results = json.loads(_results_file(args).read_text())
        print(f"written: {storage_report.write(args.out, results)}")
        return 0
    prefix = new_prefix()
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    # Every reconcile run keeps its state (host listings, the image cache) in `tmp`, not
    # in /var/lib/reconcile; the sections that need a fresh one pass --state-dir.
    os.environ["RECONCILE_STATE_DIR"] = str(tmp / "state")
    bytecode = cache_bytecode(tmp / "pycache")
    host: Host | None = None
    new_sections: Json = {}
    try:
        with interrupts_raise():
            virt_type = prepare_kvm()
            host = Host(args.connect, prefix)
            workers = args.workers or default_workers()
            bench = Bench(args.connect, host, tmp, virt_type, workers, args.out, False)
            print(f"storage benchmark: {', '.join(args.only)}; objects {prefix}*; "
                  f"reconcile {RECONCILE}; --workers {workers}")
            machine_info = machine(host) | {"bytecode": bytecode}
            code = code_state(None)
            for section in args.only:
                print(f"{section}:")
                started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                data = _measure(section, bench, args, workers)
                data.update(when=started, code=code, quick=args.quick)
                new_sections[section] = data
                _write(args, machine_info, new_sections)  # kept if a later section fails
    except BenchError as error:
        print(f"storage benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storage benchmark interrupted", file=sys.stderr)
        return 130
    finally:
        clean_up(host=host, prefix=prefix, tmp=tmp)
    out = _results_file(args)
    print(f"written: {out}, {storage_report.write(out.parent, json.loads(out.read_text()))}")
    _print(new_sections)
    return 0


def _results_file(args: argparse.Namespace) -> Path:
    return Path(args.out) / ("storage-quick.json" if args.quick else "storage.json")


def _write(args: argparse.Namespace, machine_info: Json, new_sections: Json) -> None:
    """results/storage.json: this run's sections over the previous file's."""
    out = _results_file(args)
    if not hasattr(args, "previous"):
        args.previous = json.loads(out.read_text()).get("sections", {}) if out.exists() else {}
    sections = args.previous | new_sections
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info, "sections": {
        k: sections[k] for k in SECTIONS if k in sections}}, indent=1) + "\n")


def _print(sections: Json) -> None:
    for name, data in sections.items():
        for row in data["rows"]:
            label = " ".join(f"{k}={row[k]}" for k in ("case", "state", "side", "n", "workers")
                             if k in row)
            if "sides" in row:
                print(f"{name} {label}: " + "; ".join(
                    f"{side} {m['median']:.2f} s ({m['min']:.2f}-{m['max']:.2f}) "
                    f"{m['ratio']:.2f}x" for side, m in row["sides"].items()))
            else:
                print(f"{name} {label}: command {row['command_s']} s, multi-user "
                      f"{row['multi-user']}, user data {row['user-data']}")


if __name__ == "__main__":
    sys.exit(main())

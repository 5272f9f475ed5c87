"""Storage section `boot` (issues 13 and 14): manifest to booted guest for N real guests.

Run by `storage_bench.py --only boot`. The real Debian 12 cloud guest
(/var/cache/reconcile-test/debian-12-cloud.qcow2, scripts/guest-image.sh), imported into
the pool beforehand (untimed), `type: qemu` (TCG: /dev/kvm here is nested PVM, under
which Linux crawls). Each side starts N guests with an overlay disk on the image and a
cloud-init seed whose user data echoes a marker to the serial console:

  reconcile  `reconcile --once` over the Image and N manifests (`state: running`)
  floor      `floors/storage.py`: per guest `createXML` of the overlay, `cloud-localds`
             + `virsh vol-create-as` + `virsh vol-upload` of the seed, `defineXML` with
             both disks, `create`; a thread pool of --workers
  kcli       optional (`kcli` given): `kcli create vm` of each guest from the same
             image volume (its own seed, made with genisoimage), in parallel

A `ConsoleWatch` (harness/console.py) started just before the side's command reads each
guest's console through libvirt and records the seconds from the command's start to
`Multi-User System` (systemd reached multi-user.target), to the login prompt (getty on
the serial console: the guest is up) and to the marker (cloud-init ran the user data); a
side's wait ends when every guest showed the prompt and the marker. No run so far saw
`Multi-User System` on these consoles (benchmarks/results/STORAGE-NOTES.md); the marker
is the figure for reconcile and the floor, the prompt the one to compare kcli by (its
guests did not run the user data).
Sides run one after another (alternating over --boot-runs), each side's
guests destroyed and their volumes deleted before the next; the load average before and
after each run is recorded: N TCG guests on 2 cores take minutes, and others' work shares
the cores.
"""

from __future__ import annotations

import json
import secrets
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.virt import connections_for
from harness.console import ConsoleWatch
from harness.context import Bench
from harness.pools import delete_volumes, volumes
from harness.runs import FLOORS, PY, BenchError, Json, Run, check_floor, check_once, run_timed
from harness.storage import Image, busy_processes, loadavg, vm_document, write_documents
from sections.storage_seeds import write_seed_files

MULTI_USER = "Multi-User System"
LOGIN = " login: "  # getty's prompt on ttyS0, "<hostname> login: "
#: What each console is watched for, in the order the report shows them.
LABELS = ("user-data", "login", "multi-user")


def user_data(marker: str) -> str:
    return f"#cloud-config\nruncmd:\n  - [sh, -c, \"echo {marker} > /dev/ttyS0\"]\n"


def measure(b: Bench, *, image: Image, n: int, runs: int, workers: int, memory_mib: int,
            timeout: float, kcli: Path | None) -> Json:
    vol = b.host.conn.storagePoolLookupByName(image.pool).storageVolLookupByName(image.volume)
    backing, capacity = vol.path(), int(vol.info()[1])
    marker = f"BENCH-BOOTED-{secrets.token_hex(4)}"
    markers = {"multi-user": MULTI_USER, "login": LOGIN, "user-data": marker}

    def names(side: str, index: int) -> list[str]:
        return [f"{b.prefix}boot-{side[0]}{index}-{i:02d}" for i in range(n)]

    def reset(guests: Sequence[str]) -> None:
        b.host.remove(guests)
        delete_volumes(b.host.conn, image.pool,
                       [v for v in volumes(b.host.conn, image.pool) if v != image.volume])

    def reconcile(guests: list[str]) -> tuple[Run, str | None]:
        manifests = b.tmp / "boot"
        cloud = {"userData": user_data(marker), "pool": image.pool}
        write_documents(manifests, [image.document()] + [
            vm_document(name, state="running", memory_mib=memory_mib, virt_type="qemu",
                        image=image, cloud_init=cloud) for name in guests])
        run = run_timed(b.once(manifests, b.tmp / "locks", "--workers", str(workers),
                               "--state-dir", str(b.tmp / "boot-state")))
        return run, _failure(lambda: check_once(
            run, "boot", n=n, allowed={"converged"},
            steps={"create-volume", "create-seed", "define", "start"}))

    def floor(guests: list[str]) -> tuple[Run, str | None]:
        plan = b.tmp / "boot.json"
        for name in guests:
            folder = b.tmp / "boot-seeds" / name
            write_seed_files(folder, name, user_data=user_data(marker), network_config=None)
        plan.write_text(json.dumps([
            {"name": name, "memory_mib": memory_mib, "virt_type": "qemu", "start": True,
             "disk": {"pool": image.pool, "volume": f"{name}-root", "backing": backing,
                      "capacity": capacity},
             "seed": {"pool": image.pool, "volume": f"{name}.cidata.iso",
                      "folder": str(b.tmp / "boot-seeds" / name)}} for name in guests]))
        run = run_timed([PY, FLOORS / "storage.py", b.uri, str(workers),
                         str(connections_for(workers)), str(plan)])
        return run, _failure(lambda: check_floor(run, "boot floor", at_least=n))

    sides: dict[str, Callable[[list[str]], tuple[Run, str | None]]] = {
        "reconcile": reconcile, "floor": floor}
    if kcli is not None:
        sides["kcli"] = lambda guests: _kcli(b, kcli, guests, image=image, marker=marker,
                                            memory_mib=memory_mib)
    rows = []
    for index in range(runs):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for side in order:
            guests = names(side, index)
            b.progress(f"  {side}: {n} guests, {memory_mib} MiB, type qemu "
                       f"(load {loadavg()[0]:.1f})")
            before = b.host.others() | {"busy": busy_processes()}
            watch = ConsoleWatch(b.uri, guests, markers, until=("login", "user-data"))
            try:
                run, error = sides[side](guests)  # an error is recorded; what started is timed
                if error:
                    b.progress(f"    {side} did not do all its work: {error}"[:300])
                seen = watch.wait(timeout)
            finally:
                watch.stop()
                reset(guests)
            rows.append(_row(side, index, run, seen, before, watch.tails) | {"error": error})
            b.progress(f"    {side}: command {rows[-1]['command_s']} s; "
                       + "; ".join(f"{label} {_fmt(rows[-1][label])}" for label in LABELS))
    return {"rows": rows, "n": n, "memory_mib": memory_mib, "workers": workers,
            "timeout_s": timeout, "markers": {"multi-user": MULTI_USER, "login": LOGIN,
                                              "user-data": "echo MARKER > /dev/ttyS0 (runcmd)"}}


def _failure(check: Callable[[], None]) -> str | None:
    try:
        check()
    except BenchError as error:
        return str(error)[:600]
    return None


def _row(side: str, index: int, run: Run, seen: dict[str, Json], before: Json,
         tails: dict[str, str]) -> Json:
    row: Json = {"side": side, "round": index, "command_s": round(run.seconds, 2),
                 "before": before, "after": {"loadavg": loadavg()}, "guests": seen}
    for label in LABELS:
        times = [guest[label] for guest in seen.values() if guest.get(label) is not None]
        row[label] = {"seen": len(times), "of": len(seen),
                      "median": statistics.median(times) if times else None,
                      "min": min(times) if times else None,
                      "max": max(times) if times else None}
    missing = [name for name, guest in seen.items() if guest.get("user-data") is None]
    if missing:
        row["console_tail_of_first_missing"] = tails.get(missing[0], "")[-600:]
    return row


def _fmt(stats: Json) -> str:
    if not stats["seen"]:
        return f"0 of {stats['of']}"
    return (f"median {stats['median']:.0f} s, max {stats['max']:.0f} s "
            f"({stats['seen']} of {stats['of']})")


def _kcli(b: Bench, kcli: Path, guests: list[str], *, image: Image, marker: str,
          memory_mib: int) -> tuple[Run, str | None]:
    """`kcli create vm` of each guest in parallel (one kcli process each, as a user's
    shell loop with `&` would), from the image volume in the pool, type qemu."""
    home = b.tmp / "kcli-home"
    (home / ".kcli").mkdir(parents=True, exist_ok=True)
    (home / ".kcli" / "config.yml").write_text(
        f"default:\n  client: local\nlocal:\n  type: kvm\n  host: 127.0.0.1\n"
        f"  pool: {image.pool}\n")
    script = " & ".join(
        f"HOME={home} {kcli} create vm {name} -i {image.volume} -P pool={image.pool} "
        f"-P memory={memory_mib} -P numcpus=1 -P virttype=qemu -P nets=[] "
        f"-P cmds=['echo {marker} > /dev/ttyS0'] -P start=true >{home}/{name}.log 2>&1"
        for name in guests) + " & wait"
    run = run_timed(["sh", "-c", script])
    defined = sum(1 for name in guests if name in b.host.names())
    if defined != len(guests):
        logs = "\n".join((home / f"{name}.log").read_text()[-300:] for name in guests[:2])
        return run, f"kcli defined {defined} of {len(guests)} guests:\n{logs}"
    return run, None

"""Storage section `seeds` (issue 14): cloud-init seeds built and uploaded for 100 VMs.

Run by `storage_bench.py --only seeds`. Two comparisons, each with its floor, rounds
alternating:

  reconcile   `reconcile --once` (default --workers) over N stopped VMs with
              `spec.cloudInit` (the user data and network config of seed_build.py): per
              VM a create-seed step (the ISO built in Python, uploaded as a 0600 volume,
              its sha256 checked) and a define; against `floors/storage.py`: per VM
              `cloud-localds` of the same three files + `virsh vol-create-as` + `virsh
              vol-upload`, then `defineXML` of a guest with that cdrom, in a thread pool
              of the same size
  isolated    the seeds alone, one after another: `build_seed` + `upload_volume`
              (Check.SENT, as the create-seed step) in this process, against the floor's
              `cloud-localds` + `vol-create-as` + `vol-upload` per seed without the
              define (its own process: one Python start-up, ~0.1 s, more than ours)

Each run is checked (every VM converged with create-seed and define, or every seed
volume there) and its domains and seed volumes are removed before the next.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from seed_build import NETWORK, USER_DATA

from controller.cloudinit import build_seed, meta_data_for, seed_files
from controller.planner.seed import _UUIDS  # a new VM's UUID: the floor's instance-id too
from controller.virt import connections_for
from controller.virt import storage as virt_storage
from harness.context import Bench
from harness.pools import delete_volumes, volumes
from harness.runs import FLOORS, PY, BenchError, Json, Run, check_floor, check_once, run_timed
from harness.storage import alternate, ratio_row, vm_document, write_documents


def cloud_init(n: int, pool: str) -> Json:
    return {"userData": USER_DATA.format(n=n), "networkConfig": NETWORK, "pool": pool}


def instance_id(name: str) -> str:
    """The UUID reconcile pins for a new VM `name` with a seed (planner/seed.py)."""
    return str(uuid.uuid5(uuid.UUID(str(_UUIDS)), name)).lower()


def write_seed_files(folder: Path, name: str, *, user_data: str,
                     network_config: Json | None) -> None:
    """The files of VM `name`'s seed, as reconcile builds them, for cloud-localds."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = meta_data_for(name=name, uuid=instance_id(name), overrides={})
    files = seed_files(user_data=user_data, meta_data=meta, network_config=network_config)
    for file, content in files.items():
        (folder / file).write_bytes(content)


def measure(b: Bench, *, pool: str, n: int, runs: int, workers: int) -> Json:
    names = [f"{b.prefix}seed-{i:03d}" for i in range(n)]
    files = b.tmp / "seed-files"
    for index, name in enumerate(names):
        write_seed_files(files / name, name, user_data=USER_DATA.format(n=index),
                         network_config=NETWORK)

    def reset() -> None:
        b.host.remove(names)
        delete_volumes(b.host.conn, pool, volumes(b.host.conn, pool))

    def plan(*, define: bool) -> Path:
        path = b.tmp / f"seeds-{define}.json"
        path.write_text(json.dumps([
            {"name": name, "memory_mib": 64, "virt_type": b.virt_type, "start": False,
             "define": define, "seed": {"pool": pool, "volume": f"{name}.cidata.iso",
                                        "folder": str(files / name)}} for name in names]))
        return path

    def reconcile() -> Run:
        manifests = b.tmp / "seeds"
        write_documents(manifests, [
            vm_document(name, state="stopped", memory_mib=64, virt_type=b.virt_type,
                        cloud_init=cloud_init(index, pool)) for index, name in enumerate(names)])
        run = run_timed(b.once(manifests, b.tmp / "locks", "--workers", str(workers)))
        check_once(run, "seeds", n=n, allowed={"converged"}, steps={"create-seed", "define"})
        _check_seeds(b, pool, n)
        reset()
        return run

    def floor(*, define: bool, workers: int) -> Run:
        run = run_timed([PY, FLOORS / "storage.py", b.uri, str(workers),
                         str(connections_for(workers)), str(plan(define=define))])
        check_floor(run, f"seeds floor define={define}", at_least=n)
        _check_seeds(b, pool, n)
        reset()
        return run

    def isolated() -> Run:
        started = time.perf_counter()
        for index, name in enumerate(names):
            meta = meta_data_for(name=name, uuid=instance_id(name), overrides={})
            seed = build_seed(user_data=USER_DATA.format(n=index), meta_data=meta,
                              network_config=NETWORK)
            iso = b.tmp / "seed.iso"
            iso.write_bytes(seed.data)
            virt_storage.upload_volume(b.host.conn, pool=pool, name=f"{name}.cidata.iso",
                                       path=str(iso), format="raw", sha256=seed.sha256,
                                       check=virt_storage.Check.SENT, mode=0o600)
        seconds = time.perf_counter() - started
        _check_seeds(b, pool, n)
        reset()
        return Run(seconds, 0, 0, "", "")

    b.progress(f"  reconcile: {n} stopped VMs with cloudInit, --workers {workers}")
    samples, others = alternate(b, runs, {
        "reconcile": reconcile, "floor": lambda: floor(define=True, workers=workers)},
        settle=reset)
    rows = [ratio_row(samples, "floor", case="reconcile", n=n, workers=workers,
                      others=others)]
    b.progress(f"  isolated: {n} seeds built and uploaded one after another")
    samples, others = alternate(b, runs, {
        "build_seed+upload_volume": isolated,
        "floor": lambda: floor(define=False, workers=1)}, settle=reset)
    rows.append(ratio_row(samples, "floor", case="isolated", n=n, workers=1, others=others))
    return {"rows": rows, "runs": runs,
            "floor": "floors/storage.py: cloud-localds + virsh vol-create-as + virsh "
                     "vol-upload (+ defineXML)"}


def _check_seeds(b: Bench, pool: str, n: int) -> None:
    made = [name for name in volumes(b.host.conn, pool) if ".cidata" in name]
    if len(made) != n:
        raise BenchError(f"seeds: {len(made)} seed volumes in {pool}, want {n}")

"""Storage section `overlays` (issue 13): 10 VMs made from one image, overlays and all.

Run by `storage_bench.py --only overlays`, with the image already imported into the
pool (untimed). `reconcile --once` (default --workers) over the Image and N VM manifests,
each with an overlay volume disk on it, `state: stopped` and then `running` (tiny
guests, as in the converge section), against `floors/storage.py`: per VM `createXML` of
the same qcow2 overlay (backing store: the image volume's path, its capacity) and
`defineXML` (+ `create`) of a guest with that disk, a thread pool of the same size over
as many connections as reconcile opens. Rounds alternate; each run is checked (every VM
`converged` with create-volume and define, and start when running; the guests running)
and its domains and overlays are removed before the next. After each reconcile run, a
second `reconcile --once` over the same manifests (a no-op: every VM `unchanged`; not in
the ratio) gives the pass's fixed cost on this host (start-up, imports, listing
every domain and reading its definition, the manifests), recorded as `reconcile_noop`;
and the reconcile run's --step-log gives the time from its first step's start to its
last step's done (`steps_span`: no start-up; the floor's figure keeps its own).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from controller.virt import connections_for
from harness.context import Bench
from harness.pools import delete_volumes
from harness.runs import (
    FLOORS,
    PY,
    BenchError,
    Json,
    Run,
    check_floor,
    check_once,
    run_timed,
    summary,
)
from harness.storage import Image, alternate, ratio_row, vm_document, write_documents
from sections.storage_import import summary_of


def measure(b: Bench, *, image: Image, n: int, runs: int, workers: int,
            states: Sequence[str] = ("stopped", "running")) -> Json:
    vol = b.host.conn.storagePoolLookupByName(image.pool).storageVolLookupByName(image.volume)
    backing, capacity = vol.path(), int(vol.info()[1])
    rows = []
    for state in states:
        names = [f"{b.prefix}ov-{state[0]}{i:02d}" for i in range(n)]

        def reset(names: list[str] = names) -> None:
            b.host.remove(names)
            delete_volumes(b.host.conn, image.pool, [f"{name}-root" for name in names])

        noop: list[Run] = []
        spans: list[float] = []

        def reconcile(names: list[str] = names, state: str = state,
                      noop: list[Run] = noop, spans: list[float] = spans) -> Run:
            manifests = b.tmp / f"overlays-{state}"
            write_documents(manifests, [image.document()] + [
                vm_document(name, state=state, memory_mib=64, virt_type=b.virt_type,
                            image=image) for name in names])
            steplog = b.tmp / f"overlays-{state}-steps.jsonl"
            steplog.unlink(missing_ok=True)
            run = run_timed(b.once(manifests, b.tmp / "locks", "--workers", str(workers),
                                   "--state-dir", str(b.tmp / "overlays-state"),
                                   "--step-log", str(steplog)))
            spans.append(steps_span(steplog))
            check_once(run, f"overlays {state}", n=len(names), allowed={"converged"},
                       steps={"create-volume", "define"}
                       | ({"start"} if state == "running" else set()))
            _check_running(b, names, state)
            again = run_timed(b.once(manifests, b.tmp / "locks", "--workers", str(workers),
                                     "--state-dir", str(b.tmp / "overlays-state")))
            check_once(again, f"overlays {state} no-op", n=len(names), allowed={"unchanged"})
            noop.append(again)  # the pass's fixed cost: start-up, imports, listing
            reset()
            return run

        def floor(names: list[str] = names, state: str = state) -> Run:
            plan = b.tmp / f"overlays-{state}.json"
            plan.write_text(json.dumps([
                {"name": name, "memory_mib": 64, "virt_type": b.virt_type,
                 "start": state == "running",
                 "disk": {"pool": image.pool, "volume": f"{name}-root", "backing": backing,
                          "capacity": capacity}} for name in names]))
            run = run_timed([PY, FLOORS / "storage.py", b.uri, str(workers),
                             str(connections_for(workers)), str(plan)])
            check_floor(run, f"overlays floor {state}", at_least=len(names))
            _check_running(b, names, state)
            reset()
            return run

        b.progress(f"  {n} VMs with an overlay each, {state}, --workers {workers}")
        samples, others = alternate(b, runs, {"reconcile": reconcile, "floor": floor},
                                    settle=reset)
        rows.append(ratio_row(samples, "floor", state=state, n=n, workers=workers,
                              others=others, reconcile_noop=summary(noop),
                              steps_span=summary_of(spans)))
    return {"rows": rows, "runs": runs,
            "floor": "floors/storage.py: createXML (overlay) + defineXML (+ create)"}


def steps_span(steplog: Path) -> float:
    """From the first step's start to the last step's done in a --step-log file: the
    run's steps with what overlaps them, without its start-up, loading and observing
    before the first step (nor its exit after the last)."""
    starts, dones = [], []
    for line in steplog.read_text().splitlines():
        entry = json.loads(line)
        (starts if entry["phase"] == "start" else dones).append(float(entry["time"]))
    if not starts or not dones:
        raise BenchError(f"{steplog}: no steps")
    return max(dones) - min(starts)


def _check_running(b: Bench, names: list[str], state: str) -> None:
    """Every guest defined with its overlay as vda, and running when it should be."""
    for name in names:
        xml = b.host.conn.lookupByName(name).XMLDesc(0)
        if f"volume='{name}-root'" not in xml:
            raise BenchError(f"overlays {state}: {name} has no disk on {name}-root")
    want = len(names) if state == "running" else 0
    running = b.host.active(names)
    if running != want:
        raise BenchError(f"overlays {state}: {running} of {len(names)} guests running")

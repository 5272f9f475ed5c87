"""Storage section `import` (issue 13): importing a 1 GiB image, next to `virsh vol-upload`.

Run by `storage_bench.py --only import`. What the user runs: `reconcile --once` over an
Image manifest and one stopped VM with an overlay disk on it (an Image is imported only
where a VM needs it), so the run also makes the overlay and defines the VM:

  cached     the image's file:// URL, the download cache (--state-dir/images) already
             filled and stamped: the import step is the upload, hashed on the way
             (Check.SENT) and compared with the manifest's sha256
  download   an http:// URL on the test HTTP server (127.0.0.1), the cache empty: the
             download (hashed, fsynced), then the same upload

against the floor, one shell each: `virsh vol-create-as` (raw, sparse, the file's size)
+ `virsh vol-upload` of the same file into the same pool; for `download`, `curl -s -o`
first, and once more with `sha256sum -c` between (the same verification). Rounds
alternate the order; `sync` before each run; the run's volumes, VM and cache are removed
after it. The import step's own time comes from reconcile's --step-log (start to done);
after each reconcile run, a second one over the same manifests (a no-op; not in the
ratio) gives the pass's fixed cost on this host, recorded as `reconcile_noop`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.context import Bench
from harness.pools import delete_volumes, volumes
from harness.runs import BenchError, Json, Run, check_once, run_timed, summary
from harness.storage import Image, alternate, ratio_row, sync, vm_document, write_documents


def measure(b: Bench, *, image: Image, url: str, runs: int) -> Json:
    vm = f"{b.prefix}import-vm"
    state = b.tmp / "import-state"
    work = b.tmp / "import"
    work.mkdir()
    leftovers = [image.volume, f"{vm}-root", f"{b.prefix}floor.qcow2"]

    def reset() -> None:
        b.host.remove([vm])
        delete_volumes(b.host.conn, image.pool, leftovers)
        sync()

    def reconcile(source: str, *, cached: bool) -> Run:
        manifests = work / f"manifests-{'cached' if cached else 'download'}"
        write_documents(manifests, [image.document(source),
                                    vm_document(vm, state="stopped", memory_mib=64,
                                                virt_type=b.virt_type, image=image)])
        if not cached:
            shutil.rmtree(state / "images", ignore_errors=True)
        steplog = work / "steps.jsonl"
        steplog.unlink(missing_ok=True)
        run = run_timed(b.once(manifests, work / "locks", "--state-dir", str(state),
                               "--step-log", str(steplog)))
        _check(run, vm, image)
        case = "cached" if cached else "download"
        step_seconds.setdefault(case, []).append(_step_seconds(steplog, "import-image"))
        again = run_timed(b.once(manifests, work / "locks", "--state-dir", str(state)))
        check_once(again, f"import {image.name} no-op", n=1, allowed={"unchanged"})
        noop.setdefault(case, []).append(again)
        reset()
        return run

    def floor(*, download: bool, verify: bool) -> Run:
        virsh = f"virsh -q -c {b.uri}"
        source = work / "downloaded.qcow2" if download else image.path
        script = [f"curl -s -f -o {source} {url}"] if download else []
        if verify:
            script.append(f"echo '{image.sha256}  {source}' | sha256sum -c --quiet")
        script += [f"{virsh} vol-create-as {image.pool} {b.prefix}floor.qcow2 "
                   f"{image.path.stat().st_size} --format raw --allocation 0",
                   f"{virsh} vol-upload --pool {image.pool} {b.prefix}floor.qcow2 {source}"]
        run = run_timed(["sh", "-c", " && ".join(script)])
        if run.returncode != 0 or f"{b.prefix}floor.qcow2" not in volumes(b.host.conn,
                                                                           image.pool):
            raise BenchError(f"import floor: exit {run.returncode}: {run.stderr.strip()}")
        if download:
            source.unlink()
        reset()
        return run

    from controller.images import fetch_image  # fill and stamp the cache, untimed
    fetch_image(url=image.path.as_uri(), sha256=image.sha256, cache_dir=state / "images")
    step_seconds: dict[str, list[float]] = {}
    noop: dict[str, list[Run]] = {}
    rows = []
    b.progress("  cached (the import step: upload + sha256 of what is sent)")
    samples, others = alternate(b, runs, {
        "reconcile": lambda: reconcile(image.path.as_uri(), cached=True),
        "floor": lambda: floor(download=False, verify=False)}, settle=reset)
    rows.append(ratio_row(samples, "floor", case="cached", others=others,
                          import_step=summary_of(step_seconds["cached"]),
                          reconcile_noop=summary(noop["cached"])))
    b.progress("  download (http on 127.0.0.1, empty cache)")
    samples, others = alternate(b, runs, {
        "reconcile": lambda: reconcile(url, cached=False),
        "floor": lambda: floor(download=True, verify=False),
        "floor+sha256sum": lambda: floor(download=True, verify=True)}, settle=reset)
    rows.append(ratio_row(samples, "floor", case="download", others=others,
                          import_step=summary_of(step_seconds["download"]),
                          reconcile_noop=summary(noop["download"])))
    shutil.rmtree(state, ignore_errors=True)
    return {"rows": rows, "size_bytes": image.path.stat().st_size, "runs": runs,
            "floor": "virsh vol-create-as + virsh vol-upload (one sh -c)"}


def summary_of(seconds: list[float]) -> Json:
    return {key: value for key, value in summary([Run(s, 0, 0, "", "") for s in seconds])
            .items() if key != "max_rss_kib"}


def _check(run: Run, vm: str, image: Image) -> None:
    check_once(run, f"import {image.name}", n=1, allowed={"converged"},
               steps={"create-volume", "define"})
    report: Json = json.loads(run.stdout)
    images = [(entry["name"], entry["result"], [s["action"] for s in entry["steps"]])
              for entry in report.get("images", [])]
    if images != [(image.name, "converged", ["import-image"])]:
        raise BenchError(f"import {image.name}: images {images}, want one import-image")


def _step_seconds(steplog: Path, action: str) -> float:
    """The time between a step's start and done lines in a --step-log file."""
    times = {}
    for line in steplog.read_text().splitlines():
        entry = json.loads(line)
        if entry["action"] == action:
            times[entry["phase"]] = float(entry["time"])
    if set(times) != {"start", "done"}:
        raise BenchError(f"{steplog}: no start and done of {action}: {times}")
    return times["done"] - times["start"]

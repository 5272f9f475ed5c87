"""Section `validate`: what `reconcile validate` costs over many manifests.

For 1,000 and 10,000 manifests (quick: 1,000), one per file: the whole-process wall time
of `reconcile validate -m DIR`, median of the runs, alternating with
`floors/parse.py` (read and YAML-parse the same files with the C loader: a reference,
not a target: it shows what the schema and the cross-document checks add); a py-spy
profile at the smallest N. Run by `bench.py` (`--only validate`); needs no libvirt.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from harness.context import Bench, ms, write_manifests
from harness.profiles import profile
from harness.runs import (
    FLOORS,
    PY,
    RECONCILE,
    BenchError,
    Json,
    check_floor,
    run_timed,
    summary,
    tail,
)


def measure(b: Bench, *, sizes: Sequence[int], runs: int) -> Json:
    """The section's results: a row per number of manifests, the runs per row."""
    rows = []
    for n in sizes:
        manifests = b.tmp / f"validate-{n}"
        write_manifests(manifests, [f"v{i:05d}" for i in range(n)], state="stopped",
                        memory_mib=64, virt_type=b.virt_type)
        command = [str(RECONCILE), "validate", "-m", str(manifests)]
        warm = run_timed(command)
        if warm.returncode != 0 or f"{n} valid VM manifests" not in warm.stdout:
            raise BenchError(f"validate N={n}: exit {warm.returncode}, "
                             f"{tail(warm.stdout, 2)!r}; stderr:\n{tail(warm.stderr)}")
        parse_runs, reconcile_runs = [], []
        for _ in range(runs):
            parse = run_timed([PY, FLOORS / "parse.py", manifests])
            check_floor(parse, f"parse reference N={n}", at_least=n)
            parse_runs.append(parse)
            run = run_timed(command)
            if run.returncode != 0:
                raise BenchError(f"validate N={n}: exit {run.returncode}")
            reconcile_runs.append(run)
        row: Json = {"n": n, "parse": summary(parse_runs), "reconcile": summary(reconcile_runs)}
        rows.append(row)
        b.progress(f"  validate N={n}: reconcile {ms(row['reconcile']['median'])}, "
                   f"parse only {ms(row['parse']['median'])}")
        if b.profile and n == min(sizes):
            b.profiles[f"validate-{n}"] = profile(
                name=f"validate-{n}", command=command, out=b.out, progress=b.progress)
        shutil.rmtree(manifests)
    return {"rows": rows, "runs": runs}


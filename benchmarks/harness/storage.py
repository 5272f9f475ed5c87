"""What the storage benchmark's sections share: the image under test, the manifests of
Images and of VMs made from them, alternating runs with their floor, and what else ran.

Called by `storage_bench.py` (`image_file`, `import_image`) and by
`sections/storage_import.py`, `storage_overlays.py`, `storage_seeds.py` and
`storage_boot.py` (`Image`, `vm_document`, `write_documents`, `alternate`,
`busy_processes`, `ratio_row`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.context import Bench
from harness.runs import BenchError, Json, Run, summary


@dataclass(frozen=True)
class Image:
    """A qcow2 file, its sha256 and the Image manifest that names it."""

    name: str  # the Image's metadata.name
    path: Path
    sha256: str
    pool: str

    @property
    def volume(self) -> str:
        """The volume reconcile imports it as (docs/MANIFEST.md, kind: Image)."""
        return f"{self.name}.sha256-{self.sha256[:12]}.qcow2"

    def document(self, url: str | None = None) -> Json:
        return {"apiVersion": "reconcile/v1", "kind": "Image",
                "metadata": {"name": self.name},
                "spec": {"url": url or self.path.as_uri(), "sha256": self.sha256,
                         "pool": self.pool}}


def vm_document(name: str, *, state: str, memory_mib: int, virt_type: str,
                image: Image | None = None, cloud_init: Json | None = None) -> Json:
    """A VM like the tiny guests of harness.context, with an overlay disk on `image` and
    a cloud-init seed when given."""
    spec: Json = {"state": state, "memory": f"{memory_mib}MiB", "vcpus": 1,
                  "type": virt_type, "stopTimeout": 0}
    if image is not None:
        spec["disks"] = [{"volume": f"{name}-root", "pool": image.pool, "image": image.name}]
    if cloud_init is not None:
        spec["cloudInit"] = cloud_init
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
            "metadata": {"name": name}, "spec": spec}


def write_documents(directory: Path, documents: Sequence[Json]) -> None:
    """One file per document (`kind-name.yaml`) in `directory`, made fresh."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for document in documents:
        name = f"{document['kind'].lower()}-{document['metadata']['name']}.yaml"
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False))


def alternate(b: Bench, runs: int, sides: Mapping[str, Callable[[], Run]],
              *, settle: Callable[[], None] | None = None,
              attempts: int = 3) -> tuple[dict[str, list[Run]], list[Json]]:
    """`runs` rounds of every side, the order rotating each round so that slow periods
    of the host hit all sides alike; `settle` (untimed) before each run. A run that did
    not do its work (BenchError) is not a sample: it is recorded in the round's
    "failed" list and run again, up to `attempts` times. Returns each side's runs and,
    per round, the host's load, other domains and busiest processes before it."""
    names = list(sides)
    samples: dict[str, list[Run]] = {name: [] for name in names}
    rounds: list[Json] = []
    for index in range(runs):
        this: Json = b.host.others() | {"busy": busy_processes(), "failed": []}
        rounds.append(this)
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            for attempt in range(attempts):
                if settle is not None:
                    settle()
                try:
                    run = sides[name]()
                except BenchError as error:
                    this["failed"].append({"side": name, "error": str(error)[:600]})
                    b.progress(f"    round {index + 1}/{runs} {name}: FAILED ({error})"[:400])
                    if attempt == attempts - 1:
                        raise
                    continue
                samples[name].append(run)
                b.progress(f"    round {index + 1}/{runs} {name}: {run.seconds:.2f} s")
                break
    return samples, rounds


def ratio_row(samples: Mapping[str, Sequence[Run]], floor: str, **extra: Any) -> Json:
    """Each side's summary (median, min, max, the runs), and its ratio to `floor`'s."""
    row: Json = dict(extra)
    base = summary(samples[floor])["median"]
    row["sides"] = {}
    for side, runs in samples.items():
        measured = summary(runs)
        measured["ratio"] = measured["median"] / base
        row["sides"][side] = measured
    return row


def sync() -> None:
    """Write back dirty pages (the last run's upload) before the next run is timed."""
    subprocess.run(["sync"], check=True)


def busy_processes(count: int = 6) -> list[str]:
    """The processes using the most CPU right now (`ps`), as "PCPU% COMMAND": what else
    ran next to the benchmark."""
    done = subprocess.run(["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True,
                          text=True, check=False)
    return [" ".join(line.split()) for line in done.stdout.splitlines()[:count]]


def loadavg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]

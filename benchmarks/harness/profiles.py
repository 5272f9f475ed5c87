"""Where the time goes: py-spy profiles of a `reconcile` command, summarised.

The `noop` and `validate` sections call `profile(...)` once each (at N = 1,000) unless
`--no-profile` or `--quick`: py-spy samples every thread at 1,000 Hz into
`profile-NAME.folded` (raw stacks for flamegraph.pl or speedscope), and
`profile-NAME.txt` gets the shares of samples by what is on the stack (imports, YAML,
jsonschema, libvirt-python, own code) and the top frames. Without py-spy the profile is
recorded as skipped. `report.py` shows the summary in RESULTS.md.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.runs import BIN, Json, run_timed, tail


def _py_spy() -> str | None:
    found = BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile(*, name: str, command: Sequence[str], out: Path,
            progress: Callable[[str], None]) -> Json:
    """Sample every thread of `command` with py-spy (threads it sees idle are left out);
    the raw stacks and the summary go in `out`, the summary is returned."""
    spy = _py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    folded = out / f"profile-{name}.folded"
    run = run_timed([spy, "record", "--rate", "1000", "--format", "raw", "--output",
                     str(folded), "--", *command])
    if not folded.exists():
        return {"skipped": f"py-spy failed (exit {run.returncode}): {tail(run.stderr, 2)}"}
    report = summarise_profile(folded.read_text())
    report["command"] = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
    report["seconds"] = run.seconds
    report["file"] = folded.name
    (out / f"profile-{name}.txt").write_text(render_profile(name, report) + "\n")
    progress(f"  profile {name}: {report['samples']} samples -> profile-{name}.txt")
    return report


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_CATEGORIES = {
    "imports (loading modules)": ("_find_and_load",),
    "libvirt-python": ("libvirt.py", "libvirtmod"),
    "PyYAML": ("yaml/",),
    "jsonschema / referencing": ("jsonschema/", "referencing/"),
    "xml.etree": ("xml/etree",),
    "controller (own code)": ("controller/",),
    "tenacity": ("tenacity/",),
    "argparse": ("argparse.py",),
}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", "controller/"):
        if marker in path:
            path = path[path.index(marker):].removeprefix("site-packages/")
            break
    path = re.sub(r"^/lib/python3\.\d+/", "", path)
    return f"{match['func']} ({path})"


def summarise_profile(raw: str) -> Json:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        self_time[frames[-1]] += count
        for category, markers in _CATEGORIES.items():
            if any(marker in raw_frame for raw_frame in stack.split(";") for marker in markers):
                categories[category] += count

    def top(counter: Counter[str], k: int) -> list[Json]:
        return [{"frame": frame, "samples": count, "share": count / total if total else 0.0}
                for frame, count in counter.most_common(k)]

    return {"samples": total, "top_inclusive": top(inclusive, 25), "top_self": top(self_time, 20),
            "categories": {c: categories[c] / total if total else 0.0 for c in _CATEGORIES}}


def render_profile(name: str, report: Json) -> str:
    lines = [f"# profile {name}: {report['command']}",
             (f"py-spy, 1000 Hz, samples of every thread py-spy did not see idle (a thread "
              f"blocked inside a libvirt C call, waiting for libvirtd's reply, counts as busy: "
              f"that is the floor's share); {report['samples']} samples over "
              f"{report['seconds']:.2f} s wall. "
              f"Raw stacks: {report['file']} (flamegraph.pl / speedscope)."), "",
             "## share of samples by what is on the stack"]
    lines += [f"{share:6.1%}  {category}"
              for category, share in sorted(report["categories"].items(), key=lambda x: -x[1])]
    lines += ["", "## top inclusive (the frame is anywhere on the stack)"]
    lines += [f"{e['share']:6.1%}  {e['frame']}" for e in report["top_inclusive"]]
    lines += ["", "## top self (the frame is the one running)"]
    lines += [f"{e['share']:6.1%}  {e['frame']}" for e in report["top_self"]]
    return "\n".join(lines)


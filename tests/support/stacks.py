"""Every thread's stack of a process the test started, Python and native frames, for the
failure message of a test that timed out waiting on it (a hang is then diagnosable from
the test's output alone). Uses py-spy (the dev extra); used by the service tests that
wait on the service across a cut link."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def dump_stacks(pid: int, *, timeout: float = 30.0) -> str:
    """py-spy's dump of `pid` (with native frames), or one line saying why there is none."""
    tool = _py_spy()
    if tool is None:
        return "(no py-spy to dump the stacks: pip install py-spy)"
    try:
        done = subprocess.run([tool, "dump", "--native", "--pid", str(pid)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"(py-spy dump of {pid} took more than {timeout:g} s)"
    return done.stdout + (f"\n(py-spy: {done.stderr.strip()})" if done.returncode else "")

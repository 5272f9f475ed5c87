"""Running `reconcile` the ways the tests do: the installed console script as a child
process (with an environment of its own, or as a user without the power to read what file
permissions forbid), `controller.cli.main` in-process with pytest's captured output, and
reading back what `reconcile --once -o json` reports.

Called by every suite that runs the command: tests/integration, tests/safety, tests/e2e,
tests/service, tests/reliability and tests/multihost. Assertions about what the command
printed stay in the tests; the helpers here only run it and parse its output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from tests.support.libvirtd import SYSTEM_URI

REPO = Path(__file__).resolve().parents[2]
#: The installed console script, in the venv that runs the tests.
RECONCILE = Path(sys.executable).parent / "reconcile"

#: Variables of the caller's environment that would change what a child `reconcile` does
#: (its defaults, and systemd's notify and journal hand-offs).
_FOREIGN = ("LIBVIRT_DEFAULT_URI", "RECONCILE_MANIFESTS", "RECONCILE_LOCK_DIR",
            "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that would steer a child
    `reconcile` (see _FOREIGN), and with unbuffered Python output."""
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """A finished command for an assertion message: argv, exit code, stdout, stderr."""
    return (f"$ {' '.join(map(str, proc.args))}\nexit {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")


def run_captured(argv: Sequence[str | Path], *, timeout: float = 120,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` to its end with text stdout and stderr captured; the exit code is the
    caller's to check. `env` None: this process's environment, as it is."""
    return subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def run_reconcile(*args: str, timeout: float = 120, env: Mapping[str, str] | None = None,
                  wrapper: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`reconcile ARGS` (the installed command) as a child process, run through
    `wrapper` (e.g. `without_dac_override(...)`) when given; see `run_captured`."""
    return run_captured([*wrapper, str(RECONCILE), *args], timeout=timeout, env=env)


def without_dac_override(what: str) -> list[str]:
    """A command prefix under which a root child obeys file permission bits (root reads
    a chmod 000 file regardless; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in the
    bounding set it does not): empty when we are not root. Skips the test when root has
    no setpriv(1); `what` ends the reason: "cannot make {what} unreadable"."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(f"running as root without setpriv: cannot make {what} unreadable")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`reconcile ARGV` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- reconcile against the system libvirtd, as the e2e fixtures run it -------------------------

def command(args: tuple[str, ...], *, manifests: Path, lock_dir: Path,
            uri: str = SYSTEM_URI) -> list[str]:
    """The full argv of `reconcile ARGS` with a test's defaults for -m, -c, --lock-dir."""
    argv = [str(RECONCILE), *args]
    if args[:1] in (("validate",), ("schema",)):
        return argv
    if args[:1] == ("export",):
        return argv if {"-c", "--connect"} & set(args) else [*argv, "-c", uri]
    if not {"-m", "--manifests"} & set(args):
        argv += ["-m", str(manifests)]
    if not {"-c", "--connect"} & set(args):
        argv += ["-c", uri]
    if "--lock-dir" not in args and args[:1] != ("status",):  # status takes no locks
        argv += ["--lock-dir", str(lock_dir)]
    return argv


def parse_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON line `-o json` prints on stdout."""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout\n{describe(proc)}"
    report = json.loads(lines[0])
    assert isinstance(report, dict), describe(proc)
    return report


@dataclass
class Pass:
    """One `reconcile --once -o json` run: the process and its parsed report."""

    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]

    @property
    def code(self) -> int:
        return self.proc.returncode

    @property
    def vms(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry for entry in self.report["vms"]}

    def result(self, name: str) -> str:
        return str(self.vms[name]["result"])

    def actions(self, name: str) -> list[str]:
        return [step["action"] for step in self.vms[name]["steps"]]

    def orphans(self, prefix: str) -> list[str]:
        """The orphans this test owns (other managed domains may live on the host)."""
        return [name for name in self.report["orphans"] if name.startswith(prefix)]

    def skip_if_foreign_orphans(self, prefix: str) -> None:
        """A --prune run would remove managed domains of others: do not run one."""
        foreign = [name for name in self.report["orphans"] if not name.startswith(prefix)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            pytest.skip(f"{len(foreign)} managed domain(s) of others on this host ({shown}) "
                        "would be orphans here, and --prune would remove them")


#: run(*args, check_exit=None, timeout=120) → the finished `reconcile ARGS`.
Runner = Callable[..., "subprocess.CompletedProcess[str]"]
#: once(*args, check_exit=None) → Pass of `reconcile --once -o json ARGS`.
OnceRunner = Callable[..., Pass]

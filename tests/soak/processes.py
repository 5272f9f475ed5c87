"""The processes of a soak: the service (started, killed with SIGKILL, started again:
each start is one incarnation) and the concurrent `reconcile --once` runs. Every one of
them appends to the same --step-log and uses the same lock folder. Their stderr is kept
for the checks (no traceback, ever). Used by tests/soak/run.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.service.support import ServiceProcess
from tests.support.command import clean_env, command


@dataclass
class Incarnation:
    """One start of the service."""

    process: ServiceProcess
    started: float  # time.time()
    ended: float | None = None
    how: str = ""  # "kill -9", "SIGTERM", or "exited N by itself"
    ready_after: float | None = None  # seconds from start to READY=1

    @property
    def pid(self) -> int:
        return self.process.proc.pid


class Services:
    """The service as the soak keeps it running, incarnation after incarnation."""

    def __init__(self, *, manifests: Path, uri: str, lock_dir: Path, step_log: Path,
                 resync: float):
        self.args = ("--resync", f"{resync:g}", "--prune", "--step-log", str(step_log))
        self.manifests, self.uri, self.lock_dir = manifests, uri, lock_dir
        self.all: list[Incarnation] = []
        self._lock = threading.Lock()

    @property
    def current(self) -> Incarnation:
        return self.all[-1]

    def start(self) -> Incarnation:
        process = ServiceProcess(manifests=self.manifests, uri=self.uri, lock_dir=self.lock_dir,
                                 args=self.args)
        incarnation = Incarnation(process=process, started=time.time())
        with self._lock:
            self.all.append(incarnation)
        threading.Thread(target=self._wait_ready, args=(incarnation,), daemon=True).start()
        return incarnation

    def _wait_ready(self, incarnation: Incarnation) -> None:
        try:
            incarnation.process.wait_ready(timeout=600)
        except AssertionError:
            return  # killed (or exited) before its first pass was done
        incarnation.ready_after = time.time() - incarnation.started

    def kill(self) -> Incarnation:
        """kill -9 the current incarnation and reap it."""
        incarnation = self.current
        incarnation.process.proc.send_signal(signal.SIGKILL)
        incarnation.process.stop()
        incarnation.ended, incarnation.how = time.time(), "kill -9"
        return incarnation

    def reload(self) -> None:
        self.current.process.signal(signal.SIGHUP)

    def exited_by_itself(self) -> Incarnation | None:
        """The current incarnation if it ended without being told to (a crash)."""
        incarnation = self.current
        code = incarnation.process.proc.poll()
        if code is None or incarnation.ended is not None:
            return None
        incarnation.process.stop()
        incarnation.ended, incarnation.how = time.time(), f"exited {code} by itself"
        return incarnation

    def stop(self) -> int:
        """SIGTERM the current incarnation; its exit code."""
        incarnation = self.current
        code = incarnation.process.stop()
        incarnation.ended, incarnation.how = time.time(), "SIGTERM"
        return code

    def lines(self) -> list[tuple[int, str]]:
        """(pid, line) of every incarnation's stderr."""
        return [(incarnation.pid, line) for incarnation in self.all
                for line in list(incarnation.process.lines)]


@dataclass
class OnceRun:
    """One `reconcile --once -o json -v` run, read in a thread of its own."""

    proc: subprocess.Popen[str]
    started: float
    ended: float | None = None
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls, *, manifests: Path, uri: str, lock_dir: Path, step_log: Path) -> OnceRun:
        argv = command(("--once", "-o", "json", "-v", "-c", uri, "--step-log", str(step_log)),
                       manifests=manifests, lock_dir=lock_dir)
        run = cls(proc=subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=clean_env()), started=time.time())
        run._thread = threading.Thread(target=run._read, daemon=True)
        run._thread.start()
        return run

    def _read(self) -> None:
        self.stdout, self.stderr = self.proc.communicate()
        self.ended = time.time()
        try:
            self.report = json.loads(self.stdout)
        except ValueError:
            self.report = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def done(self) -> bool:
        return self.ended is not None

    def wait(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.proc.kill()  # ours, by its PID; reported as a problem by the caller
            self._thread.join(30)

    def problems(self) -> list[str]:
        """What is wrong with a finished run: a traceback, no JSON report, an exit code
        other than 0 (converged), 1 (a VM failed: libvirtd was away) or 2 (an invalid
        manifest)."""
        where = f"--once pid {self.pid} (exit {self.proc.returncode})"
        found = []
        if "Traceback" in self.stderr:
            found.append(f"{where}: a traceback:\n{self.stderr[-3000:]}")
        if self.proc.returncode not in (0, 1, 2):
            found.append(f"{where}: unexpected exit code:\n{self.stderr[-2000:]}")
        elif not self.report:
            found.append(f"{where}: no JSON report on stdout:\n{self.stdout[-500:]}")
        return found

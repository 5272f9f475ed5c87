"""Helpers of the service tests: the service as a subprocess with a NOTIFY_SOCKET of our
own, and virsh. The private libvirtd they run on is tests/support/sandbox.py's; domains,
manifests and waiting are in tests/support/ too.
"""

from __future__ import annotations

import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.command import RECONCILE, clean_env
from tests.support.processes import LineReader


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"virsh {' '.join(args)}: {proc.stderr.strip()}"
    return proc


# --- sd_notify ---------------------------------------------------------------------------------

class NotifySink:
    """A NOTIFY_SOCKET of our own (abstract namespace) that keeps every message."""

    def __init__(self) -> None:
        self.address = f"@reconcile-test-{secrets.token_hex(6)}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.address[1:])
        self._socket.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 30.0,
                 what: str = "a notify message") -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.messages}")
                self._cond.wait(remaining)

    def with_key(self, key: str) -> list[dict[str, str]]:
        with self._cond:
            return [message for message in self.messages if key in message]

    def close(self) -> None:
        self._closed = True
        self._socket.close()


# --- the service as a subprocess ---------------------------------------------------------------

class ServiceProcess:
    """`reconcile` (the service) over one manifest folder, with our NOTIFY_SOCKET."""

    def __init__(self, *, manifests: Path, uri: str, lock_dir: Path, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.notify = NotifySink()
        environment = clean_env()
        environment["NOTIFY_SOCKET"] = self.notify.address
        environment.update(env or {})
        self.argv = [str(RECONCILE), "-m", str(manifests), "-c", uri, "--lock-dir",
                     str(lock_dir), "-v", *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=environment)
        assert self.proc.stderr is not None
        self._stderr = LineReader(self.proc.stderr)

    @property
    def lines(self) -> list[str]:
        """Every stderr line so far."""
        return self._stderr.lines

    @property
    def log(self) -> str:
        return self._stderr.text

    def wait_log(self, pattern: str, timeout: float = 30.0, *, count: int = 1) -> list[str]:
        """Wait until `count` stderr lines match the regex `pattern`; return them."""
        regex = re.compile(pattern)

        def found(lines: list[str]) -> list[str]:
            return [line for line in lines if regex.search(line)]

        if self._stderr.wait_for(lambda lines: len(found(lines)) >= count, timeout,
                                 what=f"/{pattern}/ in the log"):
            return found(self._stderr.lines)
        code = self.proc.wait(timeout=30)
        raise AssertionError(f"the service exited {code} before logging /{pattern}/:\n"
                             f"{self.log}")

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self._stderr.lines if regex.search(line)]

    def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        return self.notify.wait_for(lambda m: m.get("READY") == "1", timeout, "READY=1")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._stderr.join(timeout=5)
            self.notify.close()
        return code

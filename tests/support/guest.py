"""Checking things from inside a real guest: the Debian 12 cloud image that
scripts/guest-image.sh builds, its serial console log and its QEMU guest agent.

Called by the end-to-end tests that boot a real guest operating system
(tests/e2e/test_guest_image.py first). Nothing here defines or starts domains: a test
boots the guest its own way (plain libvirt, or `reconcile` from a manifest) with a
`<serial type='file'>` log and the `org.qemu.guest_agent.0` channel, and then uses:

    guest_image()                        the cached base image (fails with the build command)
    real_guest_type()                    'qemu' (TCG) or 'kvm' for a real guest on this host
    make_seed_iso(path, ...)             a NoCloud seed ISO (cloud-localds)
    wait_for_serial(path, marker, ...)   the console log once it shows `marker`
    wait_for_agent(dom, timeout)         until guest-ping answers
    agent_command(dom, payload, ...)     one agent command, its "return" value
    guest_exec(dom, argv, ...)           run a program in the guest: (exit code, out, err)
    guest_file(dom, path)                a file's text, read through the agent
    ConsoleTap(dom)                      what a pty serial console printed (a domain that
                                         reconcile made has no log file), for failures

Every wait polls a condition against a deadline and fails the test (pytest.fail) with
what it saw last: the serial log's tail, the agent's last error.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import libvirt
import libvirt_qemu
import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_ENV = "RECONCILE_GUEST_IMAGE"
DEFAULT_IMAGE = Path("/var/cache/reconcile-test/debian-12-cloud.qcow2")
BUILD_COMMAND = f"sudo {REPO / 'scripts' / 'guest-image.sh'}"

_ANSI = re.compile(r"\x1b(\[[0-9;?=]*[A-Za-z]|[()][A-Za-z0-9])")


class ExecResult(NamedTuple):
    """What a program run by guest_exec left: unpacks as (exit_code, stdout, stderr).
    A program killed by a signal has exit_code -SIGNAL."""

    exit_code: int
    stdout: str
    stderr: str


# --- the image and the domain type ---------------------------------------------------

def guest_image_path() -> Path:
    """Where the base image is expected: $RECONCILE_GUEST_IMAGE or the default."""
    return Path(os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE)


def guest_image() -> Path:
    """The cached base image (qcow2), complete with its .sha256; fails the test with the
    command that builds it when it is not there."""
    path = guest_image_path()
    checksum = path.with_name(path.name + ".sha256")
    if not path.is_file() or not checksum.is_file():
        pytest.fail(f"no guest image at {path}: build it with `{BUILD_COMMAND}` "
                    f"(make test does; about 90 s, needs the Debian archive)", pytrace=False)
    return path


def real_guest_type(*, dev_kvm: Path = Path("/dev/kvm"), sys_module: Path = Path("/sys/module"),
                    cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The libvirt domain type to boot a real guest OS with: 'kvm' only on hardware KVM,
    'qemu' (TCG) otherwise.

    Hardware KVM means: /dev/kvm exists, there is no kvm_pvm (PVM, software nested
    virtualization, under which a Linux guest crawls and OVMF stops with "emulation
    failure"), and the CPU has vmx or svm. kvm_pvm shows as /sys/module/kvm_pvm, both
    as a loaded module and built in (as on the project's machines, where /proc/modules
    does not exist). The keyword parameters are for tests.
    """
    if not dev_kvm.exists() or (sys_module / "kvm_pvm").exists():
        return "qemu"
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "qemu"
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return "kvm" if flags & {"vmx", "svm"} else "qemu"


def make_seed_iso(path: Path, *, user_data: str, meta_data: str) -> Path:
    """Write a NoCloud seed ISO (ISO9660 labelled "cidata") at `path` with cloud-localds
    (cloud-image-utils). The user-data and meta-data files go beside it and are removed."""
    user_file = path.with_name(path.name + ".user-data")
    meta_file = path.with_name(path.name + ".meta-data")
    try:
        user_file.write_text(user_data, encoding="utf-8")
        meta_file.write_text(meta_data, encoding="utf-8")
        proc = subprocess.run(["cloud-localds", str(path), str(user_file), str(meta_file)],
                              capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        pytest.fail("cloud-localds not found: apt-get install cloud-image-utils "
                    "(scripts/bootstrap.sh test does)", pytrace=False)
    finally:
        user_file.unlink(missing_ok=True)
        meta_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        pytest.fail(f"cloud-localds exited {proc.returncode}: {proc.stderr.strip()}",
                    pytrace=False)
    return path


# --- the serial console --------------------------------------------------------------

def read_serial(path: Path) -> str:
    """The console log so far as text ('' before QEMU has created it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def log_tail(text: str, *, lines: int = 30) -> str:
    """The last `lines` non-blank lines of a console log, without terminal escapes."""
    clean = _ANSI.sub("", text).replace("\r", "")
    kept = [line for line in clean.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def wait_for_serial(path: Path, marker: str, *, timeout: float,
                    dom: Any | None = None, interval: float = 0.5) -> str:
    """Poll the `<serial type='file'>` log at `path` until it contains `marker`; return
    the whole log. Fails with the log's tail after `timeout` seconds, or at once when
    `dom` (a libvirt.virDomain) is given and is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        text = read_serial(path)
        if marker in text:
            return text
        if dom is not None and not _is_running(dom):
            pytest.fail(f"{dom.name()} stopped before {marker!r} appeared on its console "
                        f"({path}); the log ends:\n{log_tail(read_serial(path))}",
                        pytrace=False)
        if time.monotonic() >= deadline:
            pytest.fail(f"no {marker!r} on the console {path} within {timeout:g} s; "
                        f"the log ends:\n{log_tail(text)}", pytrace=False)
        time.sleep(interval)


def _is_running(dom: Any) -> bool:
    try:
        state, _reason = dom.state()
    except libvirt.libvirtError:
        return False
    return bool(state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED))


# --- the guest agent -----------------------------------------------------------------

def agent_command(dom: Any, payload: Mapping[str, Any], *, timeout: float = 10) -> Any:
    """Send one command (`{"execute": ..., "arguments": {...}}`) to the guest agent of
    `dom` (a libvirt.virDomain) and return its "return" value. libvirt.libvirtError
    when the agent is not connected or does not answer within `timeout` seconds."""
    seconds = max(1, math.ceil(timeout))
    reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(dict(payload)), seconds, 0)
    decoded = json.loads(reply)
    if not isinstance(decoded, dict) or "return" not in decoded:
        raise AssertionError(f"unexpected agent reply to {payload.get('execute')}: {reply}")
    return decoded["return"]


def wait_for_agent(dom: Any, timeout: float) -> None:
    """Wait until the guest agent answers guest-ping; fails after `timeout` seconds with
    the last error."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            agent_command(dom, {"execute": "guest-ping"}, timeout=5)
        except libvirt.libvirtError as exc:
            last = str(exc)
        else:
            return
        if not _is_running(dom):
            pytest.fail(f"{dom.name()} stopped while waiting for its guest agent "
                        f"(last error: {last})", pytrace=False)
        if time.monotonic() >= deadline:
            pytest.fail(f"the guest agent of {dom.name()} did not answer guest-ping within "
                        f"{timeout:g} s (last error: {last})", pytrace=False)
        time.sleep(1.0)


def guest_exec(dom: Any, argv: Sequence[str], *, timeout: float = 60,
               stdin: bytes | None = None) -> ExecResult:
    """Run `argv` (argv[0] an absolute path, or a name on the agent's PATH) in the
    guest through guest-exec, wait for guest-exec-status to report it exited, and
    return ExecResult(exit_code, stdout, stderr). Fails after `timeout` seconds."""
    if not argv:
        raise ValueError("guest_exec needs a program to run")
    arguments: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]),
                                 "capture-output": True}
    if stdin is not None:
        arguments["input-data"] = base64.b64encode(stdin).decode("ascii")
    started = agent_command(dom, {"execute": "guest-exec", "arguments": arguments})
    pid = int(started["pid"])
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        status = agent_command(dom, {"execute": "guest-exec-status",
                                     "arguments": {"pid": pid}})
        if status.get("exited"):
            code = int(status["exitcode"]) if "exitcode" in status \
                else -int(status.get("signal", 0))
            return ExecResult(code, _b64text(status.get("out-data")),
                              _b64text(status.get("err-data")))
        if time.monotonic() >= deadline:
            pytest.fail(f"{list(argv)} in {dom.name()} did not exit within {timeout:g} s",
                        pytrace=False)
        time.sleep(interval)
        interval = min(interval * 2, 0.5)


def _b64text(data: str | None) -> str:
    return base64.b64decode(data).decode("utf-8", errors="replace") if data else ""


def guest_file_bytes(dom: Any, path: str, *, timeout: float = 10) -> bytes:
    """The contents of `path` in the guest, read with guest-file-open/read/close."""
    handle = agent_command(dom, {"execute": "guest-file-open",
                                 "arguments": {"path": path, "mode": "r"}}, timeout=timeout)
    chunks: list[bytes] = []
    try:
        while True:
            part = agent_command(dom, {"execute": "guest-file-read",
                                       "arguments": {"handle": handle, "count": 65536}},
                                 timeout=timeout)
            chunks.append(base64.b64decode(part.get("buf-b64", "")))
            if part.get("eof") or not part.get("count"):
                break
    finally:
        agent_command(dom, {"execute": "guest-file-close", "arguments": {"handle": handle}},
                      timeout=timeout)
    return b"".join(chunks)


def guest_file(dom: Any, path: str, *, timeout: float = 10) -> str:
    """The text of `path` in the guest (UTF-8, undecodable bytes replaced)."""
    return guest_file_bytes(dom, path, timeout=timeout).decode("utf-8", errors="replace")


class ConsoleTap:
    """Reads a running domain's pty serial console in a thread of its own, so that a
    failure can show what the guest printed. Nothing else reads the pty."""

    def __init__(self, dom: Any):
        self.text = bytearray()
        source = ET.fromstring(dom.XMLDesc(0)).find("./devices/serial[@type='pty']/source")
        path = source.get("path") if source is not None else None
        self._fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK) if path else -1
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True, name="console-tap")
        self._thread.start()

    def _read(self) -> None:
        while self._fd >= 0 and not self._done.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self._fd, 65536)
                except OSError:  # the domain stopped: the pty is gone
                    return
                if not chunk:
                    return
                self.text += chunk
                del self.text[:-200_000]

    def tail(self) -> str:
        if self._fd < 0:
            return "(no pty serial console)"
        return log_tail(self.text.decode("utf-8", "replace").replace("\r", ""))

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

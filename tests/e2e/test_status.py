"""`reconcile status` and the plan rendering, through the installed command."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import libvirt

from tests.support.command import RECONCILE, OnceRunner, Runner, clean_env, run_captured
from tests.support.domains import define_unmanaged
from tests.support.libvirtd import SYSTEM_URI
from tests.support.manifests import Manifests, VMBuilder


def test_status_shows_desired_actual_and_why(
        conn: libvirt.virConnect, prefix: str, virt_type: str, manifests: Manifests,
        vm: VMBuilder, run: Runner, once: OnceRunner) -> None:
    manifests.write("a.yaml", vm("a"), vm("b", state="stopped"), vm("gone"))
    once(check_exit=0)
    manifests.write("a.yaml", vm("a", memory="96MiB"), vm("b", state="stopped"))
    define_unmanaged(conn, prefix + "pet", virt_type)
    manifests.write("pet.yaml", vm("pet"))

    text = run("status", check_exit=1)  # 1: the unmanaged pet is a conflict
    header, *rows = [re.split(r"\s{2,}", line) for line in text.stdout.splitlines()]
    assert header == ["NAME", "DESIRED", "ACTUAL", "MEMORY", "VCPUS", "OWNER", "SYNC",
                      "ADDRESSES", "AGENT", "REASON"]
    cells = {row[0]: row for row in rows}
    assert cells[prefix + "a"] == [
        prefix + "a", "running", "running", "96 MiB/64 MiB", "1/1", "managed", "no", "-", "-",
        "memory 64 MiB → 96 MiB (restart), currentMemory 64 MiB → 96 MiB"]
    assert cells[prefix + "b"] == [
        prefix + "b", "stopped", "stopped", "64 MiB/64 MiB", "1/1", "managed", "yes", "-", "-"]
    assert cells[prefix + "gone"][5:7] == ["orphan", "no"]
    assert cells[prefix + "pet"][5:7] == ["unmanaged", "conflict"]

    report = json.loads(run("status", "-o", "json", check_exit=1).stdout)
    by_name = {row["name"]: row for row in report["vms"]}
    assert by_name[prefix + "a"]["memory"] == {"desired": "96 MiB", "actual": "64 MiB"}
    assert by_name[prefix + "b"]["in_sync"] == "yes"
    # the contract's keys (section 9): a tiny guest without NIC or agent channel
    assert {key: by_name[prefix + "b"][key] for key in (
        "name", "host", "desired", "actual", "inSync", "agent", "addresses")} == {
        "name": prefix + "b", "host": None, "desired": "stopped", "actual": "stopped",
        "inSync": True, "agent": None, "addresses": []}
    assert (by_name[prefix + "a"]["inSync"], by_name[prefix + "a"]["agent"]) == (False, None)
    # status changed nothing
    assert conn.lookupByName(prefix + "a").maxMemory() == 64 * 1024


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run argv with stdout on a pseudo-terminal; return what it printed there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(timeout=60)
    return b"".join(chunks).decode()


def test_plan_is_coloured_on_a_terminal_only_and_never_with_no_color(
        prefix: str, manifests: Manifests, vm: VMBuilder, lock_dir: Path) -> None:
    manifests.write("a.yaml", vm("a"))
    argv = [str(RECONCILE), "--once", "--dry-run", "-m", str(manifests.path), "-c", SYSTEM_URI,
            "--lock-dir", str(lock_dir)]
    env = clean_env()
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm"
    coloured = _on_a_terminal(argv, env)
    assert "\x1b[32m  +\x1b[0m " + prefix + "a  planned" in coloured

    plain = _on_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in plain and f"  + {prefix}a  planned" in plain

    piped = run_captured(argv, env=env)
    assert piped.returncode == 3
    assert "\x1b[" not in piped.stdout
    # other tests' managed domains may add "; N orphans" to the line
    assert piped.stdout.splitlines()[-1].startswith(
        "Plan: 1 to create, 0 to update, 0 to restart, 0 to remove; 0 unchanged")


def test_progress_on_a_terminal_only(
        prefix: str, manifests: Manifests, vm: VMBuilder, lock_dir: Path) -> None:
    manifests.write("a.yaml", vm("a"), vm("b", state="stopped"))
    argv = [str(RECONCILE), "--once", "-m", str(manifests.path), "-c", SYSTEM_URI,
            "--lock-dir", str(lock_dir)]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=clean_env())
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    progress = seen.decode()
    assert "[2/2]" in progress and "\r\x1b[K" in progress
    assert f"{prefix}a: start" in progress  # the step a worker is running
    assert "\x1b[" not in out.decode() and "[2/2]" not in out.decode()

    piped = run_captured(argv, env=clean_env())
    assert piped.returncode == 0 and piped.stderr == ""

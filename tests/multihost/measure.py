"""Measures what libvirt does across the test hosts' links: how a cut link shows (with and
without keepalive), how migration behaves, and how long moves take. Not a test: a probe
whose numbers the many-hosts engine is designed on.

    python -m tests.multihost.measure [--long]      # as root; prints JSON

Each probe runs in a process of its own (libvirt's event loop is per process and cannot
be unregistered); `--long` also waits out an open() to a cut host instead of abandoning
it after 20 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import libvirt

from tests.support.domains import remove_domain, tiny_domain_xml

from .hosts import (
    call_with_deadline,
    cut_link,
    restore_link,
    start_hosts,
    stop_hosts,
)

Host = dict[str, str]
MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def _error(exc: BaseException | None) -> dict[str, Any] | None:
    if isinstance(exc, libvirt.libvirtError):
        return {"code": exc.get_error_code(), "domain": exc.get_error_domain(),
                "message": exc.get_error_message()}
    if exc is None:
        return None
    return {"exception": repr(exc)}


def _timed(func: Callable[[], Any], deadline: float) -> dict[str, Any]:
    started = time.monotonic()
    outcome, value = call_with_deadline(func, deadline)
    result: dict[str, Any] = {"outcome": outcome,
                              "seconds": round(time.monotonic() - started, 2)}
    if outcome == "ok" and isinstance(value, int | str | bool):
        result["value"] = value
    if outcome == "error":
        assert isinstance(value, BaseException)
        result["error"] = _error(value)
    return result


def _event_loop() -> None:
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, daemon=True).start()


def _watch_close(conn: libvirt.virConnect, started: list[float]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def closed(_conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        seen["reason"] = reason
        seen["after_cut_s"] = round(time.monotonic() - started[0], 2) if started else None

    conn.registerCloseCallback(closed, None)
    return seen


def _qemu_pid(host: Host, name: str) -> int:
    pids = subprocess.run(["ip", "netns", "pids", host["netns"]], capture_output=True,
                          text=True, check=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"guest=" + name.encode() + b"," in cmdline:
                return int(pid)
    raise RuntimeError(f"no QEMU process for {name}")


# --- probes across a cut link (one process each) -------------------------------------------

def probe_new_call(host: Host, *, event_loop: bool, keepalive: bool) -> dict[str, Any]:
    """A call started after the cut, on a connection opened before it."""
    if event_loop:
        _event_loop()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(host["uri"])
    result: dict[str, Any] = {"event_loop": event_loop, "keepalive": keepalive}
    if keepalive:
        try:
            result["setKeepAlive"] = conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as exc:
            result["setKeepAlive"] = _error(exc)
    started: list[float] = []
    closing = _watch_close(conn, started)
    conn.listAllDomains(0)
    cut_link(host["netns"], host["veth"])
    started.append(time.monotonic())
    result["listAllDomains_after_cut"] = _timed(lambda: conn.listAllDomains(0), 60)
    result["isAlive_after"] = _timed(lambda: conn.isAlive(), 5)
    result["close_callback"] = closing or "not called"
    result["close_after"] = _timed(conn.close, 10)
    return result


def probe_close_idle(host: Host, *, event_loop: bool) -> dict[str, Any]:
    """close() of an idle connection (no call in flight) right after the cut."""
    if event_loop:
        _event_loop()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(host["uri"])
    if event_loop:
        conn.setKeepAlive(5, 3)
    conn.listAllDomains(0)
    cut_link(host["netns"], host["veth"])
    return {"event_loop_keepalive_5_3": event_loop, "close_after_cut": _timed(conn.close, 60)}


def probe_in_flight(host: Host, prefix: str) -> dict[str, Any]:
    """A call in flight when the link is cut: a QEMU monitor command to a stopped QEMU,
    so that the daemon holds the call until we let QEMU go."""
    import libvirt_qemu

    _event_loop()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(host["uri"])
    conn.setKeepAlive(5, 3)
    started: list[float] = []
    closing = _watch_close(conn, started)
    name = f"{prefix}inflight"
    dom = conn.defineXML(tiny_domain_xml(name))
    dom.create()
    qemu = _qemu_pid(host, name)
    os.kill(qemu, signal.SIGSTOP)
    box: list[Any] = []

    def call() -> None:
        begun = time.monotonic()
        try:
            box.append(("ok", libvirt_qemu.qemuMonitorCommand(
                dom, '{"execute":"query-status"}', 0)))
        except libvirt.libvirtError as exc:
            box.append(("error", _error(exc)))
        box.append(round(time.monotonic() - (started[0] if started else begun), 2))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(1.0)
    result: dict[str, Any] = {"still_in_flight_before_cut": not box}
    cut_link(host["netns"], host["veth"])
    started.append(time.monotonic())
    thread.join(60)
    result["call"] = {"outcome": box[0][0], "detail": box[0][1],
                      "after_cut_s": box[1]} if box else "still blocked after 60 s"
    result["close_callback"] = closing or "not called"
    os.kill(qemu, signal.SIGCONT)
    restore_link(host["netns"], host["veth"], host["gateway"])
    fresh = libvirt.open(host["uri"])
    remove_domain(fresh, name)
    fresh.close()
    return result


def probe_open(host: Host, deadline: float) -> dict[str, Any]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    cut_link(host["netns"], host["veth"])
    return {"open_after_cut": _timed(lambda: libvirt.open(host["uri"]), deadline),
            "abandoned_after_s": deadline}


# --- migration (one process) -------------------------------------------------------------

def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _inactive(dom: libvirt.virDomain) -> str:
    return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))


def _running_guest(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    dom = conn.defineXML(tiny_domain_xml(name))
    dom.create()
    return dom


def probe_migrations(one: Host, two: Host, prefix: str, rounds: int) -> dict[str, Any]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    sconn, dconn = libvirt.open(one["uri"]), libvirt.open(two["uri"])
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{two['address']}"}
    result: dict[str, Any] = {}
    names: list[str] = []

    def state(conn: libvirt.virConnect, name: str) -> dict[str, Any] | None:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        return {"state": dom.state()[0], "persistent": dom.isPersistent(),
                "uuid": dom.UUIDString(), "id": dom.ID()}

    try:
        # c1: a modified persistent definition sent with the migration
        name = f"{prefix}pxml"
        names.append(name)
        dom = _running_guest(sconn, name)
        root = ET.fromstring(_inactive(dom))
        metadata = ET.SubElement(root, "metadata")
        ET.SubElement(metadata, "{urn:rcl:test}mark", {"host": "kvm-2"})
        persist = ET.tostring(root, encoding="unicode")
        _say(f"migrating {name}")
        try:
            dom.migrate3(dconn, {**params, libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persist},
                         MIGRATE_FLAGS)
            there = dconn.lookupByName(name)
            inactive = ET.fromstring(_inactive(there))
            live = ET.fromstring(there.XMLDesc(0))
            _say("persist_xml done")
            result["persist_xml"] = {
                "ok": True, "target": state(dconn, name), "source": state(sconn, name),
                "mark_in_inactive_xml": inactive.find("metadata/{urn:rcl:test}mark") is not None,
                "mark_in_live_xml": live.find("metadata/{urn:rcl:test}mark") is not None}
        except libvirt.libvirtError as exc:
            result["persist_xml"] = {"ok": False, "error": _error(exc)}

        def onto_a_definition(key: str, short: str, same_uuid: bool) -> None:
            """Migrate a running guest to a target that already defines its name."""
            name = f"{prefix}{short}"
            names.append(name)
            dom = _running_guest(sconn, name)
            dconn.defineXML(_inactive(dom) if same_uuid else tiny_domain_xml(name))
            _say(f"migrating {name}")
            try:
                dom.migrate3(dconn, params, MIGRATE_FLAGS)
                _say(f"{key} done")
                result[key] = {"ok": True, "target": state(dconn, name),
                               "source": state(sconn, name)}
            except libvirt.libvirtError as exc:
                result[key] = {"ok": False, "error": _error(exc), "source": state(sconn, name),
                               "target": state(dconn, name)}

        # c2: the target already holds an inactive definition with the same name and UUID
        onto_a_definition("onto_same_inactive_definition", "predef", same_uuid=True)
        # c3: ... with the same name and another UUID
        onto_a_definition("onto_other_uuid_same_name", "otheruuid", same_uuid=False)

        # c4: the same name+UUID already running on the target
        name = f"{prefix}dup"
        names.append(name)
        dom = _running_guest(sconn, name)
        dconn.createXML(_inactive(dom), 0)  # the same name and UUID, running, transient
        _say(f"migrating {name}")
        try:
            dom.migrate3(dconn, params, MIGRATE_FLAGS)
            _say("onto_same_uuid_running done")
            result["onto_same_uuid_running"] = {"ok": True, "target": state(dconn, name)}
        except libvirt.libvirtError as exc:
            result["onto_same_uuid_running"] = {"ok": False, "error": _error(exc),
                                                "source": state(sconn, name)}

        # d: timings
        live_s: list[float] = []
        cold: list[dict[str, float]] = []
        for i in range(rounds):
            name = f"{prefix}live{i}"
            names.append(name)
            dom = _running_guest(sconn, name)
            started = time.monotonic()
            dom.migrate3(dconn, params, MIGRATE_FLAGS)
            live_s.append(round(time.monotonic() - started, 2))

            name = f"{prefix}cold{i}"
            names.append(name)
            dom = _running_guest(sconn, name)
            steps: dict[str, float] = {}
            started = time.monotonic()
            dom.destroy()
            steps["destroy"] = time.monotonic() - started
            mark = time.monotonic()
            moved = dconn.defineXML(_inactive(dom))
            steps["define"] = time.monotonic() - mark
            mark = time.monotonic()
            moved.create()
            steps["create"] = time.monotonic() - mark
            mark = time.monotonic()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            steps["undefine"] = time.monotonic() - mark
            steps["total"] = time.monotonic() - started
            cold.append({key: round(value, 3) for key, value in steps.items()})
        result["live_migration_s"] = live_s
        result["cold_move"] = cold
    finally:
        for conn in (sconn, dconn):
            for name in names:
                remove_domain(conn, name)
    return result


# --- driver --------------------------------------------------------------------------------

def _child(args: list[str]) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.multihost.measure", "probe", *args],
            capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as exc:
        return {"failed": "timed out after 300 s", "stderr": str(exc.stderr)[-3000:]}
    print(f"{args[0]}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}",
          file=sys.stderr, flush=True)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "stderr": proc.stderr[-3000:]}
    return dict(json.loads(proc.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="measure")
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["cut", "migrations"])
    sub = parser.add_subparsers(dest="command")
    probe = sub.add_parser("probe")
    probe.add_argument("kind")
    probe.add_argument("spec")
    args = parser.parse_args(argv)

    if args.command == "probe":
        spec = json.loads(args.spec)
        kinds: dict[str, Callable[[], dict[str, Any]]] = {
            "new_call": lambda: probe_new_call(spec["host"], event_loop=spec["event_loop"],
                                               keepalive=spec["keepalive"]),
            "in_flight": lambda: probe_in_flight(spec["host"], spec["prefix"]),
            "close_idle": lambda: probe_close_idle(spec["host"],
                                                   event_loop=spec["event_loop"]),
            "open": lambda: probe_open(spec["host"], spec["deadline"]),
            "migrations": lambda: probe_migrations(spec["one"], spec["two"], spec["prefix"],
                                                   spec["rounds"]),
        }
        print(json.dumps(kinds[args.kind]()))
        sys.stdout.flush()
        os._exit(0)  # threads stuck in libvirt calls must not hold the exit up

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))  # so that hosts stop
    prefix = f"m-{os.getpid():x}-"
    names = ["ka", "inflight", "loop-only", "bare", "close-ka", "close-bare", "open",
             "mig-1", "mig-2"]
    hosts = start_hosts(names)
    try:
        by = {host.name: host.describe() for host in hosts}
        cut_probes: dict[str, tuple[str, dict[str, Any]]] = {
            "a1_new_call_eventloop_keepalive_5_3": ("new_call", {
                "host": by["ka"], "event_loop": True, "keepalive": True}),
            "a2_in_flight_eventloop_keepalive_5_3": ("in_flight", {
                "host": by["inflight"], "prefix": prefix}),
            "a3_new_call_eventloop_default_keepalive": ("new_call", {
                "host": by["loop-only"], "event_loop": True, "keepalive": False}),
            "a4_new_call_no_eventloop_no_keepalive": ("new_call", {
                "host": by["bare"], "event_loop": False, "keepalive": False}),
            "a5_close_idle_eventloop_keepalive_5_3": ("close_idle", {
                "host": by["close-ka"], "event_loop": True}),
            "a6_close_idle_no_eventloop": ("close_idle", {
                "host": by["close-bare"], "event_loop": False}),
            "b_open_cut_host": ("open", {
                "host": by["open"], "deadline": 200 if args.long else 20}),
        }
        results: dict[str, Any] = {}
        if args.only in (None, "cut"):
            with ThreadPoolExecutor(len(cut_probes)) as pool:
                futures = {key: pool.submit(_child, [kind, json.dumps(spec)])
                           for key, (kind, spec) in cut_probes.items()}
                results.update({key: future.result() for key, future in futures.items()})
        if args.only in (None, "migrations"):
            results["c_d_migrations"] = _child(["migrations", json.dumps({
                "one": by["mig-1"], "two": by["mig-2"], "prefix": prefix,
                "rounds": args.rounds})])
    finally:
        stop_hosts(hosts)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

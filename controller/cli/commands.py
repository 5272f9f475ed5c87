"""The commands: validate, --once, status, export, schema, and the service's start.

Each takes the run's `Settings` and returns the exit code; errors that are the
user's to fix are raised as UsageError (exit 2) or ReconcileError (exit 1) and
printed by `main` as one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import render
from ..errors import ConnectionLost, UsageError
from ..manifests import HOSTS_FILE, LoadResult, load_directory, schema
from ..model import Outcome, Result
from ..progress import Progress
from ..settings import Settings

if TYPE_CHECKING:
    from ..hosts import Hosts

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CHANGES = 0, 1, 2, 3

log = logging.getLogger("controller")


def load_manifests(settings: Settings) -> LoadResult:
    load = load_directory(settings.manifests, disk_roots=settings.disk_roots,
                          strict_permissions=settings.strict_permissions,
                          extra_hosts=settings.extra_hosts)
    unusable = not os.path.isdir(settings.manifests) or not os.access(settings.manifests,
                                                                      os.R_OK | os.X_OK)
    if load.problem and unusable:  # missing, not a folder, unreadable: never "no VMs"
        raise UsageError(load.problem)
    for warning in load.warnings:
        log.warning("%s", warning)
    if settings.only_host is not None and settings.only_host not in load.hosts:
        raise UsageError(f"--host {settings.only_host}: no such host in {HOSTS_FILE} or "
                         "--host NAME=URI")
    return load


def _style() -> render.Style:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    return render.Style(sys.stdout.isatty() and not os.environ.get("NO_COLOR")
                        and os.environ.get("TERM") != "dumb")


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _download_line(image: str) -> Callable[[int, int | None], None] | None:
    """A progress line for one image download, on a terminal only."""
    if not sys.stderr.isatty():
        return None
    from ..images import ProgressLine

    line = ProgressLine(label=f"image {image}", stream=sys.stderr)
    return line


def once_exit_code(outcomes: Sequence[Outcome], *, invalid: bool, dry_run: bool) -> int:
    if invalid:
        return EXIT_INVALID
    if any(o.result in (Result.FAILED, Result.CONFLICT) for o in outcomes):
        return EXIT_FAILED
    if dry_run and any(o.result is Result.PLANNED for o in outcomes):
        return EXIT_CHANGES
    return EXIT_OK


# --- validate ------------------------------------------------------------------------

def cmd_validate(settings: Settings) -> int:
    load = load_manifests(settings)
    if settings.output == "json":
        emit(json.dumps({
            "valid": sorted(load.specs),
            "invalid": [entry.to_json() for entry in load.invalid],
            "notes": [load.problem] if load.problem else [],
        }))
    else:
        for entry in load.invalid:
            emit(f"invalid: {entry}")
        if load.problem:
            emit(f"note: {load.problem}")
        resources = "".join(f", {len(found)} {label}{'s' if len(found) != 1 else ''}"
                            for label, found in (("pool", load.pools),
                                                 ("network", load.networks)) if found)
        emit(f"{len(load.specs)} valid VM manifest{'s' if len(load.specs) != 1 else ''}"
             f"{resources}, {len(load.invalid)} invalid")
    return EXIT_INVALID if load.invalid else EXIT_OK


# --- --once ----------------------------------------------------------------------------

def cmd_once(settings: Settings) -> int:
    from ..assemble import make_hosts, make_reconciler  # not needed by validate and schema
    from ..passes import run_pass
    from ..proof_record import Recorder
    from ..reconciler import FixedManifests
    from ..steplog import StepLog, chain

    recorder = Recorder.begin(settings)  # the no-op proof, see proof.py
    load = load_manifests(settings)
    if recorder:
        recorder.loaded(load)
    dry_run = settings.dry_run
    progress = None
    if settings.output == "text" and sys.stderr.isatty() and not settings.verbose:
        progress = Progress(len(load.specs))
    step_log = StepLog(settings.step_log) if settings.step_log and not dry_run else None
    hosts = make_hosts(settings, readonly=dry_run)
    hosts.set_hosts(load.hosts)
    reconciler = make_reconciler(
        settings, hosts, FixedManifests(load), dry_run=dry_run,
        scope=lambda: hosts.scope(load, settings.only_host),
        observer=chain(step_log, progress.step if progress else None),
        recover_inline=not hosts.several, progress=_download_line)
    try:
        report = run_pass(reconciler, load, workers=settings.workers,
                          only_host=settings.only_host,
                          progress=progress.finished if progress else None)
        if progress:
            progress.close()
            progress = None
        _read_guests(settings, hosts, report.outcomes)
    finally:
        if progress:
            progress.close()
        hosts.close()
    notes = [load.problem] if load.problem else []
    for host, why in report.unreachable.items():
        if hosts.several:
            notes.append(f"host {host} is unreachable: {why}")
        else:
            log.error("%s", why)
            notes.append(f"libvirt unreachable: {why}")
    if report.prune_note:
        notes.append(report.prune_note)
    if settings.output == "json":
        for note in notes:  # the JSON object holds the contract's keys only
            log.warning("%s", note)
        output = render.to_json(report.outcomes, load.invalid, report.orphans,
                                images=bool(load.images), pools=bool(load.pools),
                                networks=bool(load.networks))
    else:
        output = render.to_text(report.outcomes, load.invalid, report.orphans, notes,
                                pruning=settings.prune, dry_run=dry_run, style=_style())
    emit(output)
    code = once_exit_code(report.outcomes, invalid=bool(load.invalid), dry_run=dry_run)
    unreachable = hosts.several and bool(report.unreachable)
    code = EXIT_FAILED if unreachable and code != EXIT_INVALID else code
    if recorder:
        recorder.finish(report, several=hosts.several, output=output, code=code)
    return code


def _read_guests(settings: Settings, hosts: Hosts, outcomes: list[Outcome]) -> None:
    """--wait: wait until the running VMs are ready; JSON: read their guests once. Text
    without --wait reads none: a no-op pass stays as cheap as it was (nor imports the
    readers, when no VM's guest is read)."""
    from ..guest_reads import looked_at, to_wait_for

    waiting = to_wait_for(outcomes) if settings.wait else []
    if not waiting and (settings.output != "json" or not any(map(looked_at, outcomes))):
        return
    from ..readiness import GuestReaders, read_guests, wait_for

    if waiting:
        log.info("waiting up to %gs for %d VM(s) to be ready", settings.wait_timeout,
                 len(waiting))
        if settings.output == "text" and sys.stderr.isatty() and not settings.verbose:
            sys.stderr.write(f"waiting up to {settings.wait_timeout:g} s for {len(waiting)} "
                             "VM(s) to be ready...\n")
        wait_for(waiting, hosts, timeout=settings.wait_timeout, workers=settings.workers)
    if settings.output == "json":
        chosen = {id(outcome) for outcome in waiting}
        readers = GuestReaders()  # --dry-run: read-only hosts
        try:
            read_guests([outcome for outcome in outcomes
                         if looked_at(outcome) and id(outcome) not in chosen], hosts,
                        workers=settings.workers, readers=readers)
        finally:
            readers.close()


# --- status ------------------------------------------------------------------------------

def cmd_status(settings: Settings) -> int:
    from ..assemble import make_hosts, make_reconciler
    from ..passes import run_pass
    from ..readiness import GuestReaders, read_guests, running_now
    from ..reconciler import FixedManifests

    load = load_manifests(settings)
    hosts = make_hosts(settings, readonly=True)
    readers = GuestReaders()  # the agent needs a read-write connection
    hosts.set_hosts(load.hosts)
    try:
        def scope() -> set[str]:
            return hosts.scope(load, settings.only_host)

        observer = make_reconciler(settings, hosts, FixedManifests(load), dry_run=True,
                                   scope=scope, prune=False, recover_inline=False)
        report = run_pass(observer, load, workers=settings.workers,
                          only_host=settings.only_host)
        if report.unreachable and not hosts.several:
            raise ConnectionLost(next(iter(report.unreachable.values())))
        for host, why in report.unreachable.items():
            log.warning("host %s is unreachable: %s", host, why)
        # what pruning would do to each orphan, whatever --max-prune says
        pruner = replace(observer, prune=True, max_prune=sys.maxsize, orphans_in_pass=0)
        orphans = [pruner.reconcile(name) for name in report.orphans]
        read_guests([outcome for outcome in report.outcomes + orphans
                     if running_now(outcome)], hosts, workers=settings.workers,
                    readers=readers)
    finally:
        readers.close()
        hosts.close()
    if settings.output == "ansible":
        return _ansible(report.outcomes, load)
    rows = render.status_rows(report.outcomes, orphans)
    if settings.output == "json":
        emit(json.dumps({"vms": rows, "invalid": [i.to_json() for i in load.invalid]}))
    else:
        emit(render.status_text(rows, by_host=hosts.several))
        for entry in load.invalid:
            emit(f"invalid: {entry}")
    return once_exit_code(report.outcomes + orphans, invalid=bool(load.invalid), dry_run=True)


def _ansible(outcomes: list[Outcome], load: LoadResult) -> int:
    """`status -o ansible`: the inventory of the running VMs; exit 0 once printed (an
    inventory script that exits otherwise fails the whole Ansible run)."""
    from ..ansible import inventory

    document, no_address = inventory(outcomes)
    for name in no_address:
        log.warning("%s runs but has no address yet (reconcile --once --wait waits for "
                    "one with spec.readiness: address)", name)
    for entry in load.invalid:
        log.warning("invalid: %s", entry)
    emit(json.dumps(document, ensure_ascii=False))
    return EXIT_OK


# --- export, schema, the service ------------------------------------------------------------

def cmd_export(settings: Settings, names: Sequence[str], *, every: bool,
               unmanaged: bool, networks: Sequence[str] = (), pools: Sequence[str] = (),
               kind: str = "vm") -> int:
    """`kind`: what --all exports (vm, network, pool, all); networks and pools come
    first, as a pass creates them."""
    import yaml

    from ..export import NotExportable, to_manifest
    from ..virt import Hypervisor
    from .export_resources import export_resources

    hypervisor = Hypervisor.open(settings.connect, readonly=True)
    hypervisor.connection.connect()
    try:
        documents, failed = export_resources(hypervisor, settings, networks=networks,
                                             pools=pools, every=kind if every else None)
        wanted = list(names)
        if every:
            wanted = (hypervisor.domains.names(unmanaged_only=unmanaged)
                      if kind in ("vm", "all") else [])
        for name in wanted:
            observed = hypervisor.domains.observe(name)
            if not observed.exists:
                sys.stderr.write(f"reconcile: error: domain '{name}' does not exist\n")
                failed = True
                continue
            sizes = {}
            for disk in observed.saved.disks if observed.saved else ():
                if disk.volume and disk.pool:
                    volume = hypervisor.storage.volume(disk.pool, disk.volume)
                    if volume is not None:
                        sizes[(disk.pool, disk.volume)] = volume.capacity
            try:
                document, warnings = to_manifest(observed, disk_roots=settings.disk_roots,
                                                 volume_sizes=sizes)
            except NotExportable as error:
                for line in str(error).splitlines():
                    sys.stderr.write(f"reconcile: error: {line}\n")
                failed = True
                continue
            for warning in warnings:
                log.warning("%s", warning)
            documents.append(document)
    finally:
        hypervisor.connection.close()
    if documents:
        emit(yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True).rstrip())
    return EXIT_FAILED if failed else EXIT_OK


def cmd_schema() -> int:
    emit(json.dumps(schema(), indent=2))
    return EXIT_OK


def cmd_service(settings: Settings) -> int:
    from ..service import run_service  # the service's imports are not needed by --once

    code: int = run_service(settings)
    return code

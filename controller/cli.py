"""The `reconcile` command: argument parsing, running a command, exit codes.

    reconcile --once [--dry-run]     converge every VM once (the engine)
    reconcile                        the service (see service.py)
    reconcile validate               schema and cross-document checks only
    reconcile status                 desired vs. actual, read-only
    reconcile export NAME...         manifests for existing domains
    reconcile schema                 print the JSON Schema

Exit codes of --once, the first that applies: 2 usage error or an invalid
manifest; 1 a VM failed or is in conflict; with --dry-run 3 changes pending;
0 otherwise. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__, render
from .errors import ConnectionLost, ReconcileError, UsageError
from .locks import VMLocks, default_lock_dir
from .manifests import DEFAULT_DISK_ROOTS, HOSTS_FILE, LoadResult, load_directory, schema
from .model import Outcome, Result
from .progress import Progress

if TYPE_CHECKING:
    from .executor import StepObserver
    from .fleet import Fleet

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CHANGES = 0, 1, 2, 3
DEFAULT_MANIFESTS = "/etc/reconcile/manifests"
SUBCOMMANDS = ("validate", "status", "export", "schema")

log = logging.getLogger("controller")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_manifest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--manifests", metavar="DIR",
                        default=os.environ.get("RECONCILE_MANIFESTS", DEFAULT_MANIFESTS),
                        help="manifest directory (default: $RECONCILE_MANIFESTS, else %(default)s)")
    parser.add_argument("--disk-root", metavar="DIR", action="append", dest="disk_roots",
                        help="a folder disk sources must resolve into; repeatable "
                             f"(default: {', '.join(DEFAULT_DISK_ROOTS)})")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format (default: text)")
    parser.add_argument("--strict-permissions", action="store_true",
                        help="refuse manifests that users other than root and this one may "
                             "write (default: warn)")
    parser.add_argument("--host", metavar="NAME[=URI]", action="append", dest="hosts",
                        default=[],
                        help="NAME=URI adds or overrides a host of hosts.yaml (repeatable); "
                             "NAME alone handles only the VMs placed on that host")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr (-v: each step, -vv: debug)")


def _add_hosts_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", default=None,
                        help="with several hosts: where each host's last listing is kept "
                             "(default: $RECONCILE_STATE_DIR, else /var/lib/reconcile as root)")
    parser.add_argument("--connect-timeout", metavar="SECONDS", type=_positive_float,
                        default=10.0,
                        help="with several hosts: a host that has not answered by then is "
                             "unreachable (default: 10)")


def _main_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconcile",
        description="Keep this host's libvirt domains exactly as a directory of YAML "
                    "manifests says.",
        epilog="commands (each has --help):\n"
               "  validate   check the manifests only; needs no hypervisor\n"
               "  status     desired vs. actual per VM; changes nothing\n"
               "  export     print manifests for existing domains, to adopt them\n"
               "  schema     print the JSON Schema of a manifest\n"
               "examples:\n"
               "  reconcile --once --dry-run -m manifests/ -c test:///default\n"
               "  reconcile --once -m /etc/reconcile/manifests --prune -o json\n"
               "  reconcile --once -m manifests/ --host kvm-2   (with hosts.yaml: only "
               "kvm-2's VMs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    parser.add_argument("--once", action="store_true",
                        help="observe, plan and converge every VM once, then exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --once: observe and plan only; change nothing (exit 3: changes)")
    _add_manifest_options(parser)
    _add_connect_option(parser)
    parser.add_argument("--prune", action="store_true",
                        help="remove managed domains that no manifest names")
    parser.add_argument("--max-prune", metavar="N", type=_non_negative, default=5,
                        help="prune nothing if more than N domains would go (default: 5)")
    parser.add_argument("--workers", metavar="N", type=_positive, default=8,
                        help="VMs reconciled in parallel (default: 8; libvirt calls go over "
                             "one connection per 4 workers)")
    parser.add_argument("--lock-timeout", metavar="SECONDS", type=float, default=300.0,
                        help="how long to wait for another run's lock on a VM (default: 300)")
    parser.add_argument("--lock-dir", metavar="DIR", default=None,
                        help="where the per-VM lock files live (default: $RECONCILE_LOCK_DIR, "
                             "else /run/reconcile/locks as root)")
    parser.add_argument("--step-log", metavar="FILE", default=None,
                        help="append one JSON line per libvirt step (start and done) to FILE; "
                             "several processes may share it")
    _add_hosts_options(parser)
    parser.add_argument("--resync", metavar="SECONDS", type=_positive_float, default=60.0,
                        help="service: full resync interval (default: 60)")
    parser.add_argument("--metrics-address", metavar="HOST:PORT", default=None,
                        help="service: serve Prometheus metrics and /healthz here")
    return parser


def _validate_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile validate",
                     description="Check the manifests against the schema and each other. "
                                 "Needs no hypervisor. Exit 0 when all are valid, else 2.",
                     epilog="example: reconcile validate -m manifests/")
    _add_manifest_options(parser)
    return parser


def _status_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile status",
                     description="One row per VM: desired vs. actual state, in sync or why "
                                 "not. Read-only: changes nothing. Exit 0 all in sync, 3 drift, "
                                 "1 failed or conflict, 2 invalid manifests.",
                     epilog="example: reconcile status -m manifests/ -c qemu:///system -o json")
    _add_manifest_options(parser)
    _add_connect_option(parser)
    parser.add_argument("--workers", metavar="N", type=_positive, default=8,
                        help="VMs observed in parallel (default: 8)")
    _add_hosts_options(parser)
    return parser


def _export_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile export",
                     description="Print manifests for existing domains, with adopt: true for "
                                 "domains not managed yet, so a host can be brought under "
                                 "reconcile in one step.",
                     epilog="examples:\n  reconcile export web-1 > manifests/web-1.yaml\n"
                            "  reconcile export --all --unmanaged > manifests/adopted.yaml",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", metavar="NAME", nargs="*", help="domain names")
    parser.add_argument("--all", action="store_true", help="every domain on the host")
    parser.add_argument("--unmanaged", action="store_true",
                        help="with --all: only domains reconcile does not manage yet")
    parser.add_argument("--disk-root", metavar="DIR", action="append", dest="disk_roots",
                        help="a folder disk sources must resolve into, as for validate; "
                             f"repeatable (default: {', '.join(DEFAULT_DISK_ROOTS)})")
    _add_connect_option(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    return parser


def _add_connect_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--connect", metavar="URI", default=None,
                        help="libvirt URI (default: as libvirt resolves it, e.g. "
                             "$LIBVIRT_DEFAULT_URI)")


def _schema_parser() -> argparse.ArgumentParser:
    return _Parser(prog="reconcile schema",
                   description="Print the JSON Schema every manifest document is checked "
                               "against.")


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _setup_logging(verbosity: int, *, default: int = logging.WARNING) -> None:
    level = {0: default, 1: min(default, logging.INFO)}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s reconcile %(levelname)s %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def host_options(entries: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """--host values: the NAME=URI entries, and the one NAME to restrict a run to."""
    extra: dict[str, str] = {}
    only: list[str] = []
    for entry in entries:
        name, equals, uri = entry.partition("=")
        if not HOST_NAME.fullmatch(name):
            raise UsageError(f"--host {entry}: a host name is letters, digits, '_', '.', '-'")
        if equals and not uri:
            raise UsageError(f"--host {entry}: the URI is missing")
        if equals:
            extra[name] = uri
        else:
            only.append(name)
    if len(set(only)) > 1:
        raise UsageError(f"--host NAME restricts a run to one host, not {', '.join(only)}")
    return extra, only[0] if only else None


def _load(args: argparse.Namespace) -> LoadResult:
    roots = args.disk_roots or list(DEFAULT_DISK_ROOTS)
    extra, only = host_options(args.hosts)
    load = load_directory(args.manifests, disk_roots=roots,
                          strict_permissions=args.strict_permissions, extra_hosts=extra)
    unusable = not os.path.isdir(args.manifests) or not os.access(args.manifests,
                                                                  os.R_OK | os.X_OK)
    if load.problem and unusable:  # missing, not a folder, unreadable: never "no VMs"
        raise UsageError(load.problem)
    for warning in load.warnings:
        log.warning("%s", warning)
    if only is not None and only not in load.hosts:
        raise UsageError(f"--host {only}: no such host in {HOSTS_FILE} or --host NAME=URI")
    return load


def _fleet(args: argparse.Namespace, load: LoadResult, *, dry_run: bool,
           observer: StepObserver | None = None) -> Fleet:
    from .fleet import Fleet
    from .inventory import Inventory, default_state_dir  # several hosts only

    locks = None if dry_run else VMLocks(args.lock_dir or default_lock_dir(),
                                         timeout=args.lock_timeout)
    return Fleet(load.hosts, args.connect, locks,
                 Inventory(args.state_dir or default_state_dir(), writable=not dry_run),
                 dry_run=dry_run, workers=args.workers, connect_timeout=args.connect_timeout,
                 explicit_default=args.connect is not None, observer=observer)


def _style() -> render.Style:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    return render.Style(sys.stdout.isatty() and not os.environ.get("NO_COLOR")
                        and os.environ.get("TERM") != "dumb")


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- commands ----------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    load = _load(args)
    if args.output == "json":
        _print(json.dumps({
            "valid": sorted(load.specs),
            "invalid": [entry.to_json() for entry in load.invalid],
            "notes": [load.problem] if load.problem else [],
        }))
    else:
        for entry in load.invalid:
            _print(f"invalid: {entry}")
        if load.problem:
            _print(f"note: {load.problem}")
        _print(f"{len(load.specs)} valid VM manifest{'s' if len(load.specs) != 1 else ''}, "
               f"{len(load.invalid)} invalid")
    return EXIT_INVALID if load.invalid else EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    from .engine import Engine  # not needed by validate and schema: ~20 ms of imports
    from .hypervisor import Hypervisor, connections_for
    from .steplog import StepLog, chain

    load = _load(args)
    if load.hosts:
        return _once_many_hosts(args, load)
    notes = [load.problem] if load.problem else []
    hypervisor = Hypervisor(args.connect, readonly=args.dry_run,
                            connections=connections_for(args.workers))
    outcomes: list[Outcome]
    orphans: list[str] = []
    try:
        hypervisor.connect()
    except ConnectionLost as error:
        log.error("%s", error)
        outcomes = [Outcome(spec.name, spec.source, Result.FAILED, error=str(error))
                    for spec in sorted(load.specs.values(), key=lambda s: s.name)]
        notes.append(f"libvirt unreachable: {error}")
    else:
        progress = None
        if args.output == "text" and sys.stderr.isatty() and not args.verbose:
            progress = Progress(len(load.specs))
        try:
            locks = VMLocks(args.lock_dir or default_lock_dir(), timeout=args.lock_timeout)
            step_log = StepLog(args.step_log) if args.step_log and not args.dry_run else None
            engine = Engine(hypervisor, locks, dry_run=args.dry_run, workers=args.workers,
                            observer=chain(step_log, progress.step if progress else None))
            report = engine.run_pass(load, prune=args.prune, max_prune=args.max_prune,
                                     progress=progress.finished if progress else None)
        finally:
            if progress:
                progress.close()
            hypervisor.close()
        outcomes, orphans = report.outcomes, report.orphans
        if report.prune_note:
            notes.append(report.prune_note)
    return _print_once(args, load, outcomes, orphans, notes)


def _print_once(args: argparse.Namespace, load: LoadResult, outcomes: list[Outcome],
                orphans: list[str], notes: list[str], *, unreachable: bool = False) -> int:
    if args.output == "json":
        for note in notes:  # the JSON object holds the contract's keys only
            log.warning("%s", note)
        _print(render.to_json(outcomes, load.invalid, orphans))
    else:
        _print(render.to_text(outcomes, load.invalid, orphans, notes, pruning=args.prune,
                              dry_run=args.dry_run, style=_style()))
    code = once_exit_code(outcomes, invalid=bool(load.invalid), dry_run=args.dry_run)
    return EXIT_FAILED if unreachable and code != EXIT_INVALID else code


def _once_many_hosts(args: argparse.Namespace, load: LoadResult) -> int:
    """--once over several hosts (see fleet.py); exit 1 also when a host is unreachable."""
    from .steplog import StepLog, chain

    _, only = host_options(args.hosts)
    progress = None
    if args.output == "text" and sys.stderr.isatty() and not args.verbose:
        progress = Progress(len(load.specs))
    step_log = StepLog(args.step_log) if args.step_log and not args.dry_run else None
    fleet = _fleet(args, load, dry_run=args.dry_run,
                   observer=chain(step_log, progress.step if progress else None))
    try:
        report = fleet.run_pass(load, prune=args.prune, max_prune=args.max_prune,
                                only_host=only,
                                progress=progress.finished if progress else None)
    finally:
        if progress:
            progress.close()
        fleet.close()
    notes = [load.problem] if load.problem else []
    notes += [f"host {host} is unreachable: {why}" for host, why in report.unreachable.items()]
    if report.prune_note:
        notes.append(report.prune_note)
    return _print_once(args, load, report.outcomes, report.orphans, notes,
                       unreachable=bool(report.unreachable))


def once_exit_code(outcomes: Sequence[Outcome], *, invalid: bool, dry_run: bool) -> int:
    if invalid:
        return EXIT_INVALID
    if any(o.result in (Result.FAILED, Result.CONFLICT) for o in outcomes):
        return EXIT_FAILED
    if dry_run and any(o.result is Result.PLANNED for o in outcomes):
        return EXIT_CHANGES
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .hypervisor import Hypervisor, connections_for

    load = _load(args)
    if load.hosts:
        _, only = host_options(args.hosts)
        fleet = _fleet(args, load, dry_run=True)
        try:
            report = fleet.run_pass(load, prune=False, max_prune=0, only_host=only)
            orphans = [fleet.prune(host, name) for host in sorted(fleet.scope(load, only))
                       for name in fleet.links[host].orphans]
        finally:
            fleet.close()
        for host, why in report.unreachable.items():
            log.warning("host %s is unreachable: %s", host, why)
        return _print_status(args, load, report.outcomes, orphans)
    hypervisor = Hypervisor(args.connect, readonly=True,
                            connections=connections_for(args.workers))
    hypervisor.connect()
    try:
        engine = Engine(hypervisor, None, dry_run=True, workers=args.workers)
        report = engine.run_pass(load, prune=False, max_prune=0)
        orphans = [engine.prune(name) for name in report.orphans]
    finally:
        hypervisor.close()
    return _print_status(args, load, report.outcomes, orphans)


def _print_status(args: argparse.Namespace, load: LoadResult, outcomes: list[Outcome],
                  orphans: list[Outcome]) -> int:
    rows = render.status_rows(outcomes, orphans)
    if args.output == "json":
        _print(json.dumps({"vms": rows, "invalid": [i.to_json() for i in load.invalid]}))
    else:
        _print(render.status_text(rows))
        for entry in load.invalid:
            _print(f"invalid: {entry}")
    return once_exit_code(outcomes + orphans, invalid=bool(load.invalid), dry_run=True)


def cmd_export(args: argparse.Namespace) -> int:
    import yaml

    from .export import NotExportable, to_manifest
    from .hypervisor import Hypervisor

    hypervisor = Hypervisor(args.connect, readonly=True)
    hypervisor.connect()
    try:
        names = list(args.names)
        if args.all:
            names = hypervisor.domain_names(unmanaged_only=args.unmanaged)
        documents, failed = [], False
        for name in names:
            observed = hypervisor.observe(name)
            if not observed.exists:
                sys.stderr.write(f"reconcile: error: domain '{name}' does not exist\n")
                failed = True
                continue
            try:
                document, warnings = to_manifest(
                    observed, disk_roots=args.disk_roots or list(DEFAULT_DISK_ROOTS))
            except NotExportable as error:
                for line in str(error).splitlines():
                    sys.stderr.write(f"reconcile: error: {line}\n")
                failed = True
                continue
            for warning in warnings:
                log.warning("%s", warning)
            documents.append(document)
    finally:
        hypervisor.close()
    if documents:
        _print(yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True).rstrip())
    return EXIT_FAILED if failed else EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    from .service import run_service  # the service's imports are not needed by --once
    code: int = run_service(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "validate":
            args = _validate_parser().parse_args(argv[1:])
            _setup_logging(args.verbose)
            return cmd_validate(args)
        if argv and argv[0] == "status":
            args = _status_parser().parse_args(argv[1:])
            _setup_logging(args.verbose)
            return cmd_status(args)
        if argv and argv[0] == "export":
            args = _export_parser().parse_args(argv[1:])
            if not args.names and not args.all:
                raise UsageError("name a domain, or use --all")
            if args.names and args.all:
                raise UsageError("--all takes no domain names")
            _setup_logging(args.verbose)
            return cmd_export(args)
        if argv and argv[0] == "schema":
            _schema_parser().parse_args(argv[1:])
            _print(json.dumps(schema(), indent=2))
            return EXIT_OK
        args = _main_parser().parse_args(argv)
        if args.dry_run and not args.once:
            raise UsageError("--dry-run needs --once")
        if args.once:
            _setup_logging(args.verbose)
            return cmd_once(args)
        _setup_logging(args.verbose, default=logging.INFO)
        return cmd_service(args)
    except UsageError as error:
        sys.stderr.write(f"reconcile: error: {error}\n")
        return EXIT_INVALID
    except ReconcileError as error:
        sys.stderr.write(f"reconcile: error: {error}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("reconcile: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

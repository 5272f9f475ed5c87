"""The `reconcile` command: parse the arguments into `Settings`, run a command, exit.

    reconcile --once [--dry-run]     converge every VM once
    reconcile                        the service (see controller/service/)
    reconcile validate               schema and cross-document checks only
    reconcile status                 desired vs. actual, read-only
    reconcile export NAME...         manifests for existing domains
    reconcile schema                 print the JSON Schema

Exit codes of --once, the first that applies: 2 usage error or an invalid
manifest; 1 a VM failed or is in conflict; with --dry-run 3 changes pending;
0 otherwise. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..errors import ReconcileError, UsageError
from ..settings import Settings, host_options
from . import commands
from .commands import EXIT_FAILED, EXIT_INVALID, once_exit_code
from .parser import (
    export_parser,
    main_parser,
    schema_parser,
    status_parser,
    validate_parser,
)

__all__ = ["host_options", "main", "main_parser", "once_exit_code"]


class _JournalFormatter(logging.Formatter):
    """Under journald: "<N>LEVEL message", where <N> is the line's syslog priority
    (sd-daemon(3)); journald strips it into PRIORITY, so `journalctl -p warning` works."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                  logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def _setup_logging(verbosity: int, *, default: int = logging.WARNING) -> None:
    level = {0: default, 1: min(default, logging.INFO)}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s reconcile %(levelname)s %(message)s",
                                               "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "validate":
        args = validate_parser().parse_args(argv[1:])
        _setup_logging(args.verbose)
        return commands.cmd_validate(Settings.from_args(args))
    if argv and argv[0] == "status":
        args = status_parser().parse_args(argv[1:])
        _setup_logging(args.verbose)
        return commands.cmd_status(Settings.from_args(args))
    if argv and argv[0] == "export":
        args = export_parser().parse_args(argv[1:])
        named = args.names or args.networks or args.pools
        if not named and not args.all:
            raise UsageError("name a domain (or --network NAME, --pool NAME), or use --all")
        if named and args.all:
            raise UsageError("--all takes no names")
        if args.kind != "vm" and not args.all:
            raise UsageError("--kind goes with --all")
        _setup_logging(args.verbose)
        return commands.cmd_export(Settings.from_args(args), args.names, every=args.all,
                                   unmanaged=args.unmanaged, networks=args.networks,
                                   pools=args.pools, kind=args.kind)
    if argv and argv[0] == "schema":
        schema_parser().parse_args(argv[1:])
        return commands.cmd_schema()
    args = main_parser().parse_args(argv)
    if args.dry_run and not args.once:
        raise UsageError("--dry-run needs --once")
    if args.wait and (not args.once or args.dry_run):
        raise UsageError("--wait needs --once, without --dry-run")
    settings = Settings.from_args(args)
    if args.once:
        _setup_logging(args.verbose)
        return commands.cmd_once(settings)
    _setup_logging(args.verbose, default=logging.INFO)
    return commands.cmd_service(settings)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
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

"""The command line's parsers: every option, its help, and usage errors of one line.

Used by `controller.cli.main`; the parsed arguments become a `Settings` at once.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..manifests import DEFAULT_DISK_ROOTS

DEFAULT_MANIFESTS = "/etc/reconcile/manifests"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    _adding = False  # inside add_argument

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        self._adding = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._adding = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        """argparse's check of each new option's metavar (in add_argument) formats it
        with a formatter whose width it throws away: given one, the formatter does not
        ask the terminal's width, which imports shutil (with zlib, bz2 and lzma: ~7.5 M
        instructions) at every start. Help and usage text keep the terminal's width."""
        kind = self.formatter_class
        if self._adding and isinstance(kind, type) and issubclass(kind, argparse.HelpFormatter):
            return kind(prog=self.prog, width=80)
        return super()._get_formatter()


def _add_manifest_options(parser: argparse.ArgumentParser,
                          outputs: tuple[str, ...] = ("text", "json")) -> None:
    parser.add_argument("-m", "--manifests", metavar="DIR",
                        default=os.environ.get("RECONCILE_MANIFESTS", DEFAULT_MANIFESTS),
                        help="manifest directory (default: $RECONCILE_MANIFESTS, else %(default)s)")
    parser.add_argument("--disk-root", metavar="DIR", action="append", dest="disk_roots",
                        help="a folder disk sources must resolve into; repeatable "
                             f"(default: {', '.join(DEFAULT_DISK_ROOTS)})")
    parser.add_argument("-o", "--output", choices=outputs, default="text",
                        help="output format (default: text)" + (
                            "; ansible: an inventory in `ansible-inventory --list` form"
                            if "ansible" in outputs else ""))
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
                        help="with several hosts: where each host's last listing is kept; "
                             "--once: the proof of its last pass that changed nothing "
                             "(default: $RECONCILE_STATE_DIR, else /var/lib/reconcile as root)")
    parser.add_argument("--connect-timeout", metavar="SECONDS", type=_positive_float,
                        default=10.0,
                        help="a host that has not answered by then is unreachable "
                             "(default: 10)")


def main_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--wait", action="store_true",
                        help="with --once: after converging, wait until every running VM is "
                             "ready (its spec.readiness: running, address or agent); a VM "
                             "not ready by --wait-timeout fails")
    parser.add_argument("--wait-timeout", metavar="SECONDS", type=_positive_float,
                        default=300.0, help="with --wait: how long to wait (default: 300)")
    parser.add_argument("--no-proof", action="store_true",
                        help="with --once: neither replay nor record the proof of a pass "
                             "that changed nothing (kept in --state-dir; also "
                             "$RECONCILE_NO_PROOF=1)")
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
    parser.add_argument("--download-timeout", metavar="SECONDS", type=_positive_float,
                        default=60.0,
                        help="an image download that delivers no byte for this long fails "
                             "(default: 60)")
    parser.add_argument("--step-log", metavar="FILE", default=None,
                        help="append one JSON line per libvirt step (start and done) to FILE; "
                             "several processes may share it")
    _add_hosts_options(parser)
    parser.add_argument("--resync", metavar="SECONDS", type=_positive_float, default=60.0,
                        help="service: full resync interval (default: 60)")
    parser.add_argument("--metrics-address", metavar="HOST:PORT", default=None,
                        help="service: serve Prometheus metrics and /healthz here")
    return parser


def validate_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile validate",
                     description="Check the manifests against the schema and each other. "
                                 "Needs no hypervisor. Exit 0 when all are valid, else 2.",
                     epilog="example: reconcile validate -m manifests/")
    _add_manifest_options(parser)
    return parser


def status_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile status",
                     description="One row per VM: desired vs. actual state, in sync or why "
                                 "not. Read-only: changes nothing. Exit 0 all in sync, 3 drift, "
                                 "1 failed or conflict, 2 invalid manifests.",
                     epilog="examples:\n"
                            "  reconcile status -m manifests/ -c qemu:///system -o json\n"
                            "  reconcile status -m manifests/ -o ansible   (an inventory of "
                            "the running VMs; exit 0 once printed)",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_manifest_options(parser, outputs=("text", "json", "ansible"))
    _add_connect_option(parser)
    parser.add_argument("--workers", metavar="N", type=_positive, default=8,
                        help="VMs observed in parallel (default: 8)")
    _add_hosts_options(parser)
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconcile export",
                     description="Print manifests for existing domains (and networks and "
                                 "storage pools), with adopt: true for those not managed yet, "
                                 "so a host can be brought under reconcile in one step.",
                     epilog="examples:\n  reconcile export web-1 > manifests/web-1.yaml\n"
                            "  reconcile export --all --unmanaged > manifests/adopted.yaml\n"
                            "  reconcile export --network lab --pool vmstore > "
                            "manifests/host.yaml\n"
                            "  reconcile export --all --kind network",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", metavar="NAME", nargs="*", help="domain names")
    parser.add_argument("--all", action="store_true", help="every domain on the host")
    parser.add_argument("--unmanaged", action="store_true",
                        help="with --all: only domains reconcile does not manage yet")
    parser.add_argument("--network", metavar="NAME", action="append", dest="networks",
                        default=[], help="a network's manifest (repeatable)")
    parser.add_argument("--pool", metavar="NAME", action="append", dest="pools", default=[],
                        help="a storage pool's manifest (repeatable)")
    parser.add_argument("--kind", choices=("vm", "network", "pool", "all"), default="vm",
                        help="with --all: what to export (default: vm, the domains)")
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


def schema_parser() -> argparse.ArgumentParser:
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

"""`python -m tests.soak [--minutes M] [--vms N] [--seed S] ...`: one soak (run.py).
Root (a private libvirtd in its own mount namespace); exits 1 on any invariant
violation, 0 otherwise, after printing the figures."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import libvirt

from .run import Options, Soak


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="of chaos (default 30)")
    parser.add_argument("--vms", type=int, default=50, help="managed VMs (default 50)")
    parser.add_argument("--seed", type=int, default=20, help="of the schedule (default 20)")
    parser.add_argument("--mean-gap", type=float, default=5.0,
                        help="mean seconds between faults (default 5)")
    parser.add_argument("--resync", type=float, default=30.0,
                        help="the service's --resync (default 30)")
    parser.add_argument("--bound", type=float, default=300.0,
                        help="seconds every VM must converge within after the last fault")
    parser.add_argument("--report", type=Path, help="also write the summary to this file")
    parser.add_argument("--keep", type=Path,
                        help="keep the step log, the processes' logs and the faults here")
    parser.add_argument("--unshared-locks", action="store_true",
                        help="a self-test of the checks: the --once runs get a lock folder "
                             "of their own; expect interleaved plans to be reported")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("libvirtd") is None or shutil.which("unshare") is None:
        sys.stderr.write("soak: needs root, libvirtd and unshare(1) for a private libvirtd\n")
        return 2
    kvm = Path("/dev/kvm")
    if kvm.exists() and kvm.stat().st_mode & 0o006 != 0o006:
        kvm.chmod(0o666)  # else libvirt re-probes QEMU on every define (~40 s each)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    options = Options(minutes=args.minutes, vms=args.vms, seed=args.seed,
                      mean_gap=args.mean_gap, resync=args.resync, bound=args.bound,
                      report=args.report, keep=args.keep,
                      unshared_locks=args.unshared_locks)
    return Soak(options).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Recording the no-op proof of a `--once` pass (see proof.py): which passes qualify, the
reads before and after the pass, and writing the proof.

Called by `cli.commands.cmd_once`: `Recorder.begin(settings)` before the manifests are
loaded, `loaded(load)` once they are, `finish(...)` once the output is printed.

A pass qualifies only where the fingerprints cover everything it read, and its output
is a function of them. Never recorded (the next pass then runs normally):
- more than one host: hosts.yaml, --host (other hosts are not fingerprinted);
- Image, Network or StoragePool documents (their reconciles read volumes, images and
  resource states the fingerprint does not hold; an unmanaged network a VM's interface
  names is covered: every network's name, state and definition are read);
- a VM with volume or image disks or a cloud-init seed (storage is not fingerprinted),
  spec.machine or a CPU model (nor are the host's machine aliases and CPU models), a
  direct kernel boot (its files are resolved), or spec.host;
- an invalid manifest, a load problem, anything logged at warning or above;
- any outcome that is not a VM unchanged or restart-pending without steps: a network or
  pool orphan, a pruned or refused orphan, a prune note, an unreachable host;
- guest readiness in the output: -o json with a VM whose guest it reads (a running VM),
  any outcome carrying guest information, --wait;
- -v, an output other than text or json, an exit code other than 0, --no-proof or
  $RECONCILE_NO_PROOF, a process that did not start through `proof.replay`;
- a pass during which anything fingerprinted changed (read before and after: equal).
Managed domains no manifest names (orphans, not pruned) are covered: every domain's
saved definition is read.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from . import proof
from .assemble import locks_for
from .guest_reads import looked_at
from .inventory import default_state_dir
from .model import NO_KERNEL, Result
from .settings import Settings
from .virt.fingerprint import read_host

if TYPE_CHECKING:
    from .manifests import LoadResult
    from .passes import PassReport

log = logging.getLogger(__name__)

NO_OP_RESULTS = (Result.UNCHANGED, Result.RESTART_PENDING)


class _Warnings(logging.Handler):
    """Counts the records at warning and above: the fast path would not repeat them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class Recorder:
    """One pass's way to a proof: its fingerprints before, then after, the pass."""

    def __init__(self, settings: Settings, key: str):
        self.settings = settings
        self.key = key
        self.why_not: str | None = None
        self.tree = proof.tree_digest(settings.manifests)  # before the loader reads it
        self.named: list[str] = []
        self.sources: list[str] = []
        self.locks: list[str] = []
        self.paths = ""
        self.host: str | None = None
        self.warnings = _Warnings()
        logging.getLogger().addHandler(self.warnings)

    @classmethod
    def begin(cls, settings: Settings) -> Recorder | None:
        """A recorder for this pass, or None when its settings rule a proof out (or the
        process did not start through `proof.replay`)."""
        key = proof.recorded_key()
        if (key is None or settings.no_proof or os.environ.get(proof.DISABLE_ENV)
                or settings.wait or settings.verbose or settings.output not in ("text", "json")
                or settings.extra_hosts or settings.only_host is not None):
            return None
        return cls(settings, key)

    def loaded(self, load: LoadResult) -> None:
        """After loading: whether the manifests qualify, and the fingerprints before the
        pass of the disk paths and of the host."""
        self.why_not = why_not_load(load)
        if self.why_not:
            return
        settings = self.settings
        self.named = sorted(load.specs)
        self.sources = sorted(load.disk_sources)
        if not settings.dry_run:
            locks = locks_for(settings)
            self.locks = [str(locks.path_for(name)) for name in self.named]
        self.paths = proof.paths_digest(self.sources, settings.disk_roots)
        self.host = read_host(settings.connect, readonly=settings.dry_run, named=self.named)
        if self.host is None:
            self.why_not = "the host could not be read for the proof"

    def finish(self, report: PassReport, *, several: bool, output: str, code: int) -> (
            str | None):
        """Record the proof if the pass qualifies and nothing changed while it ran;
        return why not (None: recorded). Never raises for a proof it cannot write."""
        logging.getLogger().removeHandler(self.warnings)
        why = self.why_not or self._why_not_pass(report, several=several, code=code)
        if why is None:
            why = self._record(output)
        log.debug("no-op proof: %s", why or "recorded")
        return why

    def _why_not_pass(self, report: PassReport, *, several: bool, code: int) -> str | None:
        if code != 0:
            return f"exit code {code}"
        if several or report.unreachable or report.prune_note:
            return "several hosts, an unreachable host or a prune note"
        if self.warnings.count:
            return "a warning was logged"
        for outcome in report.outcomes:
            if (outcome.kind != "vm" or outcome.result not in NO_OP_RESULTS or outcome.steps
                    or outcome.orphan):
                return f"{outcome.kind} {outcome.name}: {outcome.result.value}"
            if outcome.guest is not None or (self.settings.output == "json"
                                               and looked_at(outcome)):
                return f"the output reads the guest of {outcome.name}"
        return None

    def _record(self, output: str) -> str | None:
        settings = self.settings
        if proof.tree_digest(settings.manifests) != self.tree:
            return "the manifests changed during the pass"
        if proof.paths_digest(self.sources, settings.disk_roots) != self.paths:
            return "a disk path changed during the pass"
        after = read_host(settings.connect, readonly=settings.dry_run, named=self.named)
        if after is None or after != self.host:
            return "the host changed during the pass"
        record = proof.Proof(
            key=self.key, manifests=settings.manifests, tree=self.tree, sources=self.sources,
            roots=list(settings.disk_roots), paths=self.paths, uri=settings.connect,
            readonly=settings.dry_run, named=self.named, locks=self.locks, host=after,
            output=output)
        try:
            proof.write_proof(settings.state_dir or default_state_dir(), record)
        except OSError as error:
            return f"cannot write the proof: {error}"
        return None


def why_not_load(load: LoadResult) -> str | None:
    """Why a pass over this load reads something the fingerprints do not cover, or
    prints something that is not a function of them; None when it qualifies."""
    if load.problem or load.invalid or load.warnings:
        return "a problem, an invalid manifest or a warning in the manifests"
    if load.images or load.hosts or load.hosts_documents:
        return "Images or hosts in the manifests"
    if load.networks or load.pools:
        return "Network or StoragePool documents in the manifests"
    for spec in load.specs.values():
        if spec.machine or (spec.cpu is not None and spec.cpu.model):
            return f"{spec.name} names a machine or a CPU model"
        if spec.kernel is not None and spec.kernel is not NO_KERNEL:
            return f"{spec.name} boots a kernel"
        if spec.cloud_init is not None or spec.host is not None:
            return f"{spec.name} has cloud-init or a host"
        if any(disk.volume or disk.pool or disk.image for disk in spec.disks):
            return f"{spec.name} has a volume disk"
    return None

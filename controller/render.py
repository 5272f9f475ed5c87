"""Turning a pass's outcomes into what people and pipelines read. Pure.

Text for terminals and logs, the contract's JSON object for machines. Called
by the CLI; knows nothing of libvirt.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .manifests import Invalid
from .model import Action, GuestInfo, Outcome, Result
from .units import format_kib


def to_json(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str],
            *, images: bool = False, pools: bool = False, networks: bool = False) -> str:
    """Exactly the contract's object: {"vms": [...], "invalid": [...], "orphans": [...]},
    and "images", "pools", "networks": [...] when the manifests declare that kind (or a
    managed one no manifest declares was found: it says "orphan": true). "orphans"
    names domains only."""
    document: dict[str, object] = {
        "vms": [outcome.to_json() for outcome in outcomes if outcome.kind == "vm"],
        "invalid": [entry.to_json() for entry in invalid],
        "orphans": list(orphans),
    }
    for key, kind, declared in (("images", "image", images), ("pools", "pool", pools),
                                ("networks", "network", networks)):
        found = [_resource_json(outcome) for outcome in outcomes if outcome.kind == kind]
        if declared or found:
            document[key] = found
    return json.dumps(document, ensure_ascii=False, indent=None)


def _resource_json(outcome: Outcome) -> dict[str, object]:
    data = outcome.to_json()
    if outcome.orphan:
        data["orphan"] = True
    return data


def _is_spare(outcome: Outcome) -> bool:
    """A network or pool no manifest declares, left as it is: said in the orphans line."""
    return outcome.orphan and outcome.kind != "vm" and outcome.result is Result.UNCHANGED


class Kind(enum.Enum):
    """What a VM's plan amounts to, as `terraform plan` would put it."""

    CREATE = ("+", "create", "created", "32")
    UPDATE = ("~", "update", "updated", "33")
    RESTART = ("-/+", "restart", "restarted", "35")
    REMOVE = ("-", "remove", "removed", "31")
    NOOP = ("", "unchanged", "unchanged", "")
    TROUBLE = ("!", "trouble", "trouble", "31;1")

    @property
    def symbol(self) -> str:
        return self.value[0]


_RESOURCE_DEFINES = frozenset({Action.DEFINE_NETWORK, Action.DEFINE_POOL})
_RESOURCE_REMOVES = frozenset({Action.UNDEFINE_NETWORK, Action.UNDEFINE_POOL,
                               Action.STOP_POOL})


def kind_of(outcome: Outcome) -> Kind:
    actions = {step.action for step in outcome.steps}
    if outcome.result in (Result.FAILED, Result.CONFLICT):
        return Kind.TROUBLE
    if not actions:
        return Kind.NOOP
    if outcome.kind in ("network", "pool"):
        if actions & _RESOURCE_REMOVES:
            return Kind.REMOVE
        if {Action.STOP_NETWORK, Action.START_NETWORK} <= actions:
            return Kind.RESTART
        if actions & _RESOURCE_DEFINES and not outcome.changes:
            return Kind.CREATE
        return Kind.REMOVE if outcome.result is Result.PRUNED else Kind.UPDATE
    if Action.IMPORT_IMAGE in actions:
        return Kind.CREATE
    existed = outcome.observed is None or outcome.observed.exists
    if Action.DEFINE in actions and not existed:
        return Kind.CREATE
    if Action.UNDEFINE in actions and Action.DEFINE not in actions:
        return Kind.REMOVE
    if outcome.result is Result.PRUNED:
        return Kind.REMOVE
    if actions & {Action.SHUTDOWN, Action.DESTROY} and Action.START in actions:
        return Kind.RESTART
    return Kind.UPDATE


class Style:
    """ANSI colour when writing to a terminal that wants it; plain text otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def paint(self, text: str, code: str) -> str:
        if not self.enabled or not code or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


PLAIN = Style(False)


def to_text(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str],
            notes: Sequence[str] = (), *, pruning: bool = False, dry_run: bool = False,
            style: Style = PLAIN) -> str:
    """One line per VM with its plan symbol and result, then its field changes and
    steps, then invalid manifests, orphans, notes, and a summary line. Pools, images
    and networks come before the VMs of their host."""
    spare = [f"{outcome.kind} {outcome.name}" for outcome in outcomes if _is_spare(outcome)]
    outcomes = [outcome for outcome in outcomes if not _is_spare(outcome)]
    orphans = [*orphans, *spare]
    lines: list[str] = []
    width = max((len(outcome.name) + (len(outcome.kind) + 1 if outcome.kind != "vm" else 0)
                 for outcome in outcomes), default=0)
    group: object = object()
    for outcome in outcomes:
        if outcome.multi_host and outcome.host != group:  # several hosts: grouped by host
            group = outcome.host
            lines.append(style.paint(f"host {outcome.host or '(-c)'}:", "1"))
        kind = kind_of(outcome)
        source = f"  ({outcome.source})" if outcome.source else ""
        symbol = style.paint(f"{kind.symbol:>3}", kind.value[3])
        label = outcome.name if outcome.kind == "vm" else f"{outcome.kind} {outcome.name}"
        lines.append(f"{symbol} {label:<{width}}  {outcome.result.value}{source}")
        if kind is not Kind.CREATE:
            for change in outcome.changes:
                restart = " (restart)" if change.needs_restart else ""
                lines.append(f"      {change.field}: {change.old} → {change.new}{restart}")
        # resources' actions are longer ("autostart-network"): aligned among themselves
        pad = 10 if outcome.kind in ("vm", "image") else max(
            (len(step.action.value) for step in outcome.steps), default=10)
        for step in outcome.steps:
            where = f" (on {step.host or '(-c)'})" if step.host is not None else ""
            lines.append(f"      {step.action.value:<{pad}} {step.reason}{where}")
        if outcome.note:
            lines.append(f"      note: {outcome.note}")
        if outcome.guest is not None and outcome.guest.running:  # read for --wait
            lines.append(f"      guest: {guest_summary(outcome.guest)}")
        if outcome.error:
            lines.append(f"      {style.paint('error:', '31')} {outcome.error}")
    for entry in invalid:
        lines.append(f"{style.paint('invalid:', '31')} {entry}")
    pruned = {o.name for o in outcomes if o.result in (Result.PRUNED, Result.PLANNED)}
    waiting = [name for name in orphans if name not in pruned]
    if waiting:
        hint = "" if pruning else " (not pruned; --prune removes them)"
        lines.append(f"orphans: {', '.join(waiting)}{hint}")
    for note in notes:
        lines.append(f"note: {note}")
    lines.append(summary(outcomes, invalid, orphans, dry_run=dry_run))
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str],
            *, dry_run: bool = False) -> str:
    """'Plan: 3 to create, 1 to update, 1 to restart, 0 to remove; 12 unchanged.'"""
    kinds = Counter(kind_of(outcome) for outcome in outcomes if not _is_spare(outcome))
    results = Counter(outcome.result for outcome in outcomes)
    changing = (Kind.CREATE, Kind.UPDATE, Kind.RESTART, Kind.REMOVE)
    if dry_run:
        text = "Plan: " + ", ".join(f"{kinds[k]} to {k.value[1]}" for k in changing)
    else:
        text = "Applied: " + ", ".join(f"{kinds[k]} {k.value[2]}" for k in changing)
    text += f"; {kinds[Kind.NOOP]} unchanged"
    for result in (Result.RESTART_PENDING, Result.SUSPENDED, Result.CONFLICT, Result.FAILED):
        if results[result]:
            text += f"; {results[result]} {result.value}"
    if invalid:
        text += f"; {len(invalid)} invalid manifest{'s' if len(invalid) != 1 else ''}"
    if orphans:
        text += f"; {len(orphans)} orphan{'s' if len(orphans) != 1 else ''}"
    return text + "."


def guest_summary(info: GuestInfo) -> str:
    """'192.168.150.11/24 (lease), 10.9.0.5/24 (agent); agent answering'."""
    shown = ", ".join(f"{a.address}/{a.prefix} ({a.source})" for a in info.addresses)
    agent = {True: "agent answering", False: "agent not answering", None: "no agent"}
    return f"{shown or 'no address'}; {agent[info.agent]}"


# --- reconcile status ----------------------------------------------------------

_SYNC = {
    Result.UNCHANGED: "yes",
    Result.PLANNED: "no",
    Result.SUSPENDED: "no",
    Result.RESTART_PENDING: "pending",
    Result.CONFLICT: "conflict",
    Result.FAILED: "unknown",
}


def status_rows(outcomes: Sequence[Outcome], orphans: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One row per VM: desired vs. actual, in sync or why not, and who owns it.

    `outcomes` come from a dry-run pass over the manifests; `orphans` are dry-run
    outcomes of managed domains that no manifest names.
    """
    rows = []
    for outcome in outcomes:
        if outcome.kind != "vm":
            continue
        spec = outcome.spec
        rows.append(_row(outcome, desired=spec.state.value if spec else "?",
                         memory=format_kib(spec.memory_kib) if spec and spec.memory_kib else "-",
                         vcpus=str(spec.vcpus) if spec and spec.vcpus else "-"))
    for outcome in orphans:
        row = _row(outcome, desired="-", memory="-", vcpus="-")
        row["owner"] = "orphan"
        row["in_sync"] = "no"
        row["inSync"] = False
        row["reason"] = "no manifest names this managed domain"
        rows.append(row)
    return sorted(rows, key=lambda row: (row.get("host") or "", row["name"]))


def _row(outcome: Outcome, *, desired: str, memory: str, vcpus: str) -> dict[str, Any]:
    observed = outcome.observed
    actual, actual_memory, actual_vcpus, owner = "unknown", "?", "?", "?"
    if observed is not None:
        owner = "managed" if observed.managed else ("-" if not observed.exists else "unmanaged")
        if not observed.exists:
            actual, actual_memory, actual_vcpus = "absent", "-", "-"
        else:
            actual = observed.power.value
            config = observed.live or observed.saved
            if config is not None:
                actual_memory, actual_vcpus = format_kib(config.memory_kib), str(config.vcpus)
    if outcome.result is Result.CONFLICT or outcome.result is Result.FAILED:
        reason = outcome.error or ""
    elif outcome.result is Result.RESTART_PENDING:
        reason = outcome.note or "restart pending"
    elif outcome.changes:
        reason = ", ".join(f"{change}{' (restart)' if change.needs_restart else ''}"
                           for change in outcome.changes)
    else:
        reason = "; ".join(step.reason for step in outcome.steps)
    guest = outcome.guest
    row: dict[str, Any] = {
        "name": outcome.name, "host": outcome.host, "source": outcome.source,
        "desired": desired, "actual": actual,
        "memory": {"desired": memory, "actual": actual_memory},
        "vcpus": {"desired": vcpus, "actual": actual_vcpus},
        "in_sync": _SYNC.get(outcome.result, "no"), "reason": reason, "owner": owner,
        "inSync": outcome.result is Result.UNCHANGED,
        **(guest or GuestInfo()).to_json(),
    }
    return row


_AGENT_CELL = {True: "yes", False: "no", None: "-"}


def status_text(rows: Sequence[dict[str, Any]], *, by_host: bool | None = None) -> str:
    """The status table; `by_host`: with a HOST column (default: when a row names a host)."""
    hosts = any(row.get("host") for row in rows) if by_host is None else by_host
    header = (("HOST",) if hosts else ()) + (
        "NAME", "DESIRED", "ACTUAL", "MEMORY", "VCPUS", "OWNER", "SYNC", "ADDRESSES", "AGENT",
        "REASON")
    table = [header] + [(
        *((row.get("host") or "(-c)",) if hosts else ()),
        row["name"], row["desired"], row["actual"],
        f"{row['memory']['desired']}/{row['memory']['actual']}",
        f"{row['vcpus']['desired']}/{row['vcpus']['actual']}",
        row["owner"], row["in_sync"],
        ",".join(a["address"] for a in row.get("addresses") or ()) or "-",
        _AGENT_CELL[row.get("agent")], row["reason"],
    ) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
         + "  " + line[-1]).rstrip()
        for line in table
    ) if rows else "no VMs in the manifests and no managed domains"

"""Turning a pass's outcomes into what people and pipelines read. Pure.

Text for terminals and logs, the contract's JSON object for machines. Called
by the CLI; knows nothing of libvirt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from .manifests import Invalid
from .model import Outcome, Result


def to_json(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str],
            notes: Sequence[str] = ()) -> str:
    document: dict[str, object] = {
        "vms": [outcome.to_json() for outcome in outcomes],
        "invalid": [entry.to_json() for entry in invalid],
        "orphans": list(orphans),
    }
    if notes:
        document["notes"] = list(notes)
    return json.dumps(document, ensure_ascii=False, indent=None)


def to_text(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str],
            notes: Sequence[str] = (), *, pruning: bool = False) -> str:
    lines: list[str] = []
    width = max((len(outcome.name) for outcome in outcomes), default=0)
    for outcome in outcomes:
        source = f"  ({outcome.source})" if outcome.source else ""
        lines.append(f"{outcome.name:<{width}}  {outcome.result.value}{source}")
        for step in outcome.steps:
            lines.append(f"    {step.action.value:<10} {step.reason}")
        if outcome.note:
            lines.append(f"    note: {outcome.note}")
        if outcome.error:
            lines.append(f"    error: {outcome.error}")
    for entry in invalid:
        lines.append(f"invalid: {entry}")
    pruned = {o.name for o in outcomes if o.result in (Result.PRUNED, Result.PLANNED)}
    waiting = [name for name in orphans if name not in pruned]
    if waiting:
        hint = "" if pruning else " (not pruned; --prune removes them)"
        lines.append(f"orphans: {', '.join(waiting)}{hint}")
    for note in notes:
        lines.append(f"note: {note}")
    lines.append(summary(outcomes, invalid, orphans))
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome], invalid: Sequence[Invalid], orphans: Sequence[str]) -> str:
    counts = Counter(outcome.result for outcome in outcomes)
    parts = [f"{count} {result.value}" for result in Result
             if (count := counts.get(result))]
    text = f"{len(outcomes)} VM{'s' if len(outcomes) != 1 else ''}"
    if parts:
        text += ": " + ", ".join(parts)
    if invalid:
        text += f"; {len(invalid)} invalid manifest{'s' if len(invalid) != 1 else ''}"
    if orphans:
        text += f"; {len(orphans)} orphan{'s' if len(orphans) != 1 else ''}"
    return text

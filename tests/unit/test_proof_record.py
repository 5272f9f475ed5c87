"""Which passes may record a no-op proof (controller/proof_record.py): the settings that
rule one out before the pass, and the pass results that do after it. Each case here is
one the fingerprints do not cover, so recording it could make a later replay stale.

The loads that qualify are tests/unit/test_proof.py's; recording and replaying end to
end, tests/integration/test_noop_proof.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller import proof
from controller.model import Action, GuestInfo, Observed, Outcome, Power, Result, Step, VMSpec
from controller.passes import PassReport
from controller.proof_record import Recorder
from controller.settings import Settings


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if this process had started through `proof.replay`."""
    monkeypatch.setattr(proof, "_process_key", "k" * 40)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "m").mkdir()
    return Settings(manifests=str(tmp_path / "m"), state_dir=str(tmp_path / "state"))


def _begin(settings: Settings) -> Recorder | None:
    recorder = Recorder.begin(settings)
    if recorder is not None:
        logging.getLogger().removeHandler(recorder.warnings)
    return recorder


@pytest.mark.usefixtures("keyed")
@pytest.mark.parametrize("change", [
    {"no_proof": True}, {"wait": True}, {"verbose": 1}, {"output": "ansible"},
    {"extra_hosts": {"h": "qemu:///system"}}, {"only_host": "h"},
])
def test_settings_that_rule_a_proof_out(settings: Settings, change: dict[str, object]) -> None:
    assert _begin(settings) is not None
    assert _begin(replace(settings, **change)) is None  # type: ignore[arg-type]


@pytest.mark.usefixtures("keyed")
def test_the_opt_out_variable_rules_it_out(settings: Settings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(proof.DISABLE_ENV, "1")
    assert _begin(settings) is None


def test_no_recorder_without_the_process_key(settings: Settings) -> None:
    assert proof.recorded_key() is None
    assert _begin(settings) is None


def _spec() -> VMSpec:
    return VMSpec(name="a", source="a.yaml", memory_kib=65536, current_memory_kib=65536,
                  vcpus=1)


def _outcome(**extra: object) -> Outcome:
    fields: dict[str, object] = {"spec": _spec(),
                                 "observed": Observed(name="a", exists=True)}
    fields.update(extra)
    return Outcome("a", "a.yaml", extra.pop("result", Result.UNCHANGED),  # type: ignore[arg-type]
                   **{k: v for k, v in fields.items() if k != "result"})  # type: ignore[arg-type]


NO_OP = _outcome()


@pytest.mark.usefixtures("keyed")
@pytest.mark.parametrize(("why", "outcome", "output", "report", "code"), [
    ("converged", _outcome(result=Result.CONVERGED), "text", {}, 0),
    ("planned", _outcome(result=Result.PLANNED), "text", {}, 0),
    ("steps", _outcome(steps=[Step(Action.START, "x")]), "text", {}, 0),
    ("orphan", _outcome(orphan=True), "text", {}, 0),
    ("network", _outcome(kind="network"), "text", {}, 0),
    ("pool", _outcome(kind="pool"), "text", {}, 0),
    ("guest read", _outcome(guest=GuestInfo(running=True)), "text", {}, 0),
    ("running in json", _outcome(observed=Observed(name="a", exists=True,
                                                   power=Power.RUNNING)), "json", {}, 0),
    ("exit 1", NO_OP, "text", {}, 1),
    ("prune note", NO_OP, "text", {"prune_note": "not pruned"}, 0),
    ("unreachable", NO_OP, "text", {"unreachable": {"h": "down"}}, 0),
])
def test_pass_results_that_rule_a_proof_out(settings: Settings, why: str, outcome: Outcome,
                                            output: str, report: dict[str, object],
                                            code: int) -> None:
    recorder = _begin(replace(settings, output=output))
    assert recorder is not None
    good = PassReport(outcomes=[NO_OP])
    assert recorder._why_not_pass(good, several=False, code=0) is None  # noqa: SLF001
    bad = PassReport(outcomes=[NO_OP, outcome], **report)  # type: ignore[arg-type]
    assert recorder._why_not_pass(bad, several=False, code=code) is not None, why  # noqa: SLF001


@pytest.mark.usefixtures("keyed")
def test_a_restart_pending_vm_qualifies_in_text_only(settings: Settings) -> None:
    """Restart-pending: running (JSON reads its guest), and planned nothing."""
    report = PassReport(outcomes=[NO_OP, _outcome(result=Result.RESTART_PENDING)])
    text, json = _begin(settings), _begin(replace(settings, output="json"))
    assert text is not None and json is not None
    assert text._why_not_pass(report, several=False, code=0) is None  # noqa: SLF001
    assert text._why_not_pass(report, several=True, code=0) is not None  # noqa: SLF001
    assert json._why_not_pass(report, several=False, code=0) is not None  # noqa: SLF001
    assert json._why_not_pass(PassReport(outcomes=[NO_OP]), several=False,  # noqa: SLF001
                              code=0) is None  # a stopped VM: no guest to read


@pytest.mark.usefixtures("keyed")
def test_a_warning_logged_during_the_pass_rules_it_out(settings: Settings) -> None:
    recorder = Recorder.begin(settings)
    assert recorder is not None
    try:
        report = PassReport(outcomes=[NO_OP])
        assert recorder._why_not_pass(report, several=False, code=0) is None  # noqa: SLF001
        logging.getLogger("controller.somewhere").warning("something to say")
        assert recorder._why_not_pass(report, several=False, code=0) is not None  # noqa: SLF001
    finally:
        logging.getLogger().removeHandler(recorder.warnings)

"""The soak's pure parts: the schedule is reproducible and well formed, the timeline
answers over windows, and each invariant check finds what it is meant to find (on step
logs made up to break it) and accepts what is fine."""

from __future__ import annotations

from tests.reliability.support import Event

from .checks import (
    SERVICE_WINDOW,
    TimedEvent,
    foreign_changes,
    once_holds_interleaved,
    overlapping_steps,
    percentile,
    steps_on,
    unjustified_steps,
)
from .fleet import Seen, matches
from .schedule import WEIGHTS, Want, initial_wants, make_schedule
from .timeline import INVALID, REMOVED, Timeline

NAMES = [f"v{index:02d}" for index in range(20)]


def _schedule(seed: int) -> list:  # type: ignore[type-arg]
    wants = initial_wants(seed=seed, names=NAMES)
    return make_schedule(seed=seed, seconds=1800, names=NAMES, mean_gap=5, wants=wants)


def test_a_seed_names_one_schedule() -> None:
    assert _schedule(7) == _schedule(7)
    assert _schedule(7) != _schedule(8)


def test_the_schedule_has_every_kind_in_order_and_restores_what_it_breaks() -> None:
    faults = _schedule(20)
    assert [fault.at for fault in faults] == sorted(fault.at for fault in faults)
    assert {fault.kind for fault in faults} == set(WEIGHTS)
    assert 250 < len(faults) < 500  # 1,800 s at one fault per 5 s, plus the restores
    wants = initial_wants(seed=20, names=NAMES)
    broken: dict[str, float] = {}
    for fault in faults:
        if fault.kind in ("invalid", "remove"):
            assert fault.vm not in broken, fault  # never broken twice before a restore
            assert fault.vm is not None
            broken[fault.vm] = fault.at
        elif fault.kind == "edit":
            assert fault.vm is not None and fault.want is not None
            assert fault.want != wants[fault.vm], fault  # an edit always changes something
            wants[fault.vm] = fault.want
            if fault.restore:
                assert 5 <= fault.at - broken.pop(fault.vm) <= 30, fault
            else:
                assert fault.vm not in broken, fault


def _timeline() -> Timeline:
    timeline = Timeline()
    timeline.record("a", 0, Want("running", 64))
    timeline.record("a", 10, INVALID)
    timeline.record("a", 20, Want("absent", 64))
    timeline.record("b", 0, Want("running", 64))
    timeline.record("b", 30, REMOVED)
    return timeline


def test_the_timeline_answers_over_windows() -> None:
    timeline = _timeline()
    assert timeline.at("a", -1) is None and timeline.at("a", 10) == INVALID
    assert timeline.during("a", 12, 19) == [INVALID]
    assert timeline.during("a", 5, 20) == [Want("running", 64), INVALID, Want("absent", 64)]
    assert timeline.always("a", 11, 19, lambda d: d == INVALID)
    assert not timeline.always("a", 9, 19, lambda d: d == INVALID)
    assert timeline.some_invalid_throughout(10, 19)
    assert not timeline.some_invalid_throughout(10, 20)


def _timed(*rows: tuple[float, int, str, str, str]) -> list[TimedEvent]:
    return [TimedEvent(Event(line, pid, vm, action, phase), at)
            for line, (at, pid, vm, action, phase) in enumerate(rows, start=1)]


def test_overlapping_steps_are_found_and_sequences_accepted() -> None:
    fine = [Event(1, 1, "a", "destroy", "start"), Event(2, 1, "a", "destroy", "done"),
            Event(3, 2, "a", "start", "start"), Event(4, 2, "a", "start", "done"),
            Event(5, 3, "b", "start", "start"), Event(6, 1, "a", "define", "start"),
            Event(7, 3, "b", "start", "done")]
    assert overlapping_steps(fine) == []
    # A step that never finished (a kill -9, a failure) proves nothing either way.
    assert overlapping_steps([Event(1, 1, "a", "start", "start"),
                              Event(2, 2, "a", "start", "start"),
                              Event(3, 2, "a", "start", "done")]) == []
    inside = [Event(1, 1, "a", "destroy", "start"), Event(2, 2, "a", "define", "start"),
              Event(3, 1, "a", "destroy", "done")]
    assert overlapping_steps(inside) == ["a: pid 1's destroy (lines 1-3) overlaps pid 2"]


def test_a_once_run_holds_each_vm_once() -> None:
    events = [Event(1, 7, "a", "destroy", "start"), Event(2, 7, "a", "destroy", "done"),
              Event(3, 9, "a", "start", "start"), Event(4, 9, "a", "start", "done"),
              Event(5, 7, "a", "start", "start"), Event(6, 7, "a", "start", "done")]
    assert once_holds_interleaved(events, [9]) == []  # 9's one plan is lines 3-4
    assert once_holds_interleaved(events, [7]) == [
        "a: --once pid 7's plan (lines 1-6) interleaved with pid 9"]


def test_undefines_and_steps_are_judged_by_the_manifests_of_their_window() -> None:
    timeline = _timeline()
    service = 100
    once_started = {200: 5.0}
    # a: invalid from 10 to 20, absent from 20. b: removed from 30.
    fine = _timed((21, service, "a", "destroy", "start"), (22, service, "a", "undefine",
                                                          "start"),
                  (12, 200, "a", "start", "start"),  # the --once run read it valid at 5
                  (31, service, "b", "undefine", "start"))
    assert unjustified_steps(fine, timeline, once_started) == []
    timeline.record("c", 0, Want("running", 64))
    timeline.record("c", 10, INVALID)
    timeline.record("c", 40, Want("running", 64))
    bad = _timed((8, service, "a", "undefine", "start"),
                 (10 + SERVICE_WINDOW + 1, service, "c", "start", "start"),
                 (25, 300, "zz", "define", "start"))
    assert unjustified_steps(bad, timeline, {}) == [
        "line 1: pid 100 undefine a: no manifest wanted it gone since -7.0",
        "line 2: pid 100 start c: its manifest was invalid all along since 11.0",
        "line 3: pid 300 define zz: a domain no manifest of the soak ever named"]
    # Half a window of invalid manifest, after a valid one: the plan may be from before.
    late = _timed((10 + SERVICE_WINDOW / 2, service, "c", "start", "start"))
    assert unjustified_steps(late, timeline, {}) == []


def test_a_prune_while_another_manifest_is_invalid_is_found() -> None:
    timeline = Timeline()
    timeline.record("gone", 0, REMOVED)
    timeline.record("bad", 0, INVALID)
    events = _timed((SERVICE_WINDOW + 5, 100, "gone", "undefine", "start"))
    assert unjustified_steps(events, timeline, {}) == [
        "line 1: pid 100 undefine gone: pruned while another manifest was invalid"]
    timeline.record("bad", 1, Want("running", 64))
    assert unjustified_steps(events, timeline, {}) == []


def test_steps_on_foreign_domains_and_their_changes_are_found() -> None:
    events = [Event(1, 1, "mine", "start", "start"), Event(2, 1, "theirs", "destroy", "start")]
    assert steps_on(events, ["theirs"]) == [
        "line 2: pid 1 theirs destroy start: a step on theirs, which is not managed"]
    assert foreign_changes({"x": 1, "y": 2}, {"x": 1, "y": 3}) == [
        "foreign domain y changed: 2 -> 3"]
    assert foreign_changes({"x": 1}, {}) == ["foreign domain x is gone"]


def test_a_domain_matches_only_a_valid_manifest() -> None:
    seen = Seen(name="a", uuid="u", running=True, shut_off=False, persistent=True,
                managed=True, memory_mib=64, autostart=False, xml_sha256="")
    assert matches(seen, Want("running", 64))
    assert not matches(seen, Want("running", 80)) and not matches(seen, Want("stopped", 64))
    assert not matches(seen, INVALID) and not matches(seen, REMOVED)
    assert matches(None, REMOVED) and matches(None, Want("absent", 64))
    transient = Seen(**{**seen.__dict__, "persistent": False})
    assert not matches(transient, Want("running", 64))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([3.0], 0.99) == 3.0

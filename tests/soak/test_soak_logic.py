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
from .schedule import (
    GROW_MIB,
    KILL_STEPS,
    STORAGE_VM_KINDS,
    WEIGHTS,
    Want,
    initial_wants,
    make_schedule,
    storage_names,
)
from .storage_checks import PARTIAL, ImageFile, Ledger, attached_incomplete, image_problems
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
    assert {fault.kind for fault in faults} == set(WEIGHTS) | {"full-pool"}
    assert 250 < len(faults) < 500  # 1,800 s at one fault per 5 s, plus the restores
    wants = initial_wants(seed=20, names=NAMES)
    broken: dict[str, float] = {}
    for fault in faults:
        if fault.kind in ("invalid", "remove"):
            assert fault.vm not in broken, fault  # never broken twice before a restore
            assert fault.vm is not None
            broken[fault.vm] = fault.at
        elif fault.kind in STORAGE_VM_KINDS:
            assert fault.vm is not None and fault.want is not None
            wants[fault.vm] = fault.want
        elif fault.kind == "edit":
            assert fault.vm is not None and fault.want is not None
            assert fault.want != wants[fault.vm], fault  # an edit always changes something
            wants[fault.vm] = fault.want
            if fault.restore:
                assert 5 <= fault.at - broken.pop(fault.vm) <= 30, fault
            else:
                assert fault.vm not in broken, fault


def test_storage_faults_act_on_storage_vms_and_storage_never_shrinks() -> None:
    faults = _schedule(20)
    storage = set(storage_names(NAMES))
    assert storage == {"v00", "v05", "v10", "v15"}
    wants = initial_wants(seed=20, names=NAMES)
    assert {name for name, want in wants.items() if want.storage} == storage
    assert [fault.kind for fault in faults].count("full-pool") == 1
    versions = [fault.image for fault in faults if fault.kind in ("kill-import",
                                                                  "upload-libvirtd")]
    assert versions == list(range(1, len(versions) + 1)) and versions  # each a new image
    seen_kinds = set()
    for fault in faults:
        if fault.want is None:
            continue
        assert fault.vm is not None
        old, new = wants[fault.vm], fault.want
        assert new.storage == (fault.vm in storage), fault  # storage is never dropped
        assert new.disk >= old.disk and new.generation >= old.generation, fault
        assert new.seed >= old.seed, fault
        if fault.kind in STORAGE_VM_KINDS:
            seen_kinds.add(fault.kind)
            assert fault.vm in storage and fault.target in ("service", "once"), fault
            assert new.state != "absent", fault  # else no storage step would run
            change = {"kill-volume": (0, 1, 0), "kill-grow": (GROW_MIB, 0, 0),
                      "kill-seed": (0, 0, 1)}[fault.kind]
            assert (new.disk - old.disk, new.generation - old.generation,
                    new.seed - old.seed) == change, fault
        else:
            assert (new.disk, new.generation, new.seed) == (old.disk, old.generation,
                                                            old.seed), fault
        wants[fault.vm] = new
    assert seen_kinds == STORAGE_VM_KINDS
    assert set(KILL_STEPS) >= STORAGE_VM_KINDS


def test_the_ledger_finds_lost_shrunk_and_rewritten_volumes() -> None:
    ledger = Ledger()
    pools = ["p"]
    first = {("p", "a"): 8, ("p", "b"): 8, ("p", "b" + PARTIAL): 0, ("p", "s.cidata-1.iso"): 1}
    assert ledger.observe(first, pools=pools) == []
    assert sorted(ledger.seen) == [("p", "a"), ("p", "s.cidata-1.iso")]  # b is partial
    # b rewritten (the partial rule) and removed, a seed deleted, a grown: all fine
    assert ledger.observe({("p", "a"): 16}, pools=pools) == []
    assert ledger.observe({("p", "a"): 16, ("p", "b"): 4}, pools=pools) == []
    assert ledger.observe({("p", "a"): -1, ("p", "b"): 4}, pools=pools) == []  # unreadable
    assert ledger.observe({("p", "a"): 8, ("p", "a" + PARTIAL): 0}, pools=pools) == [
        "volume p/a shrank: 16 -> 8 bytes", "volume p/b is lost (it was complete, 4 bytes)"]
    assert ledger.observe({("p", "a"): 16, ("p", "a" + PARTIAL): 0, ("p", "b"): 4},
                          pools=pools) == [
        "volume p/a was complete and has a partial marker again (it is being written over)"]
    assert ledger.observe({}, pools=[]) == []  # a pool not listed proves nothing


def test_a_disk_on_a_missing_or_partial_volume_is_found() -> None:
    listing = {("p", "a-root"): 8, ("p", "img"): 8, ("p", "img" + PARTIAL): 0}
    assert attached_incomplete({"a": [("p", "a-root")]}, listing) == []
    assert attached_incomplete({"a": [("p", "img"), ("p", "gone")]}, listing) == [
        "a has a disk on p/gone, which does not exist", "a has a disk on p/img, which is partial"]


def test_an_image_volume_must_hold_its_image() -> None:
    right = ImageFile("ab" * 32, 8)
    expected = {"img.sha256-abababababab.raw": right}
    assert image_problems({"img.sha256-abababababab.raw": right}, expected) == []
    assert image_problems({"img.sha256-abababababab.raw": ImageFile("cd" * 32, 8),
                           "other.raw": right}, expected) == [
        "image volume img.sha256-abababababab.raw: sha256 cdcdcdcdcdcd, 8 bytes; the image "
        "is abababababab, 8 bytes",
        "image volume other.raw: no image of the soak has that name"]


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


def test_a_storage_vm_matches_once_its_volumes_and_seed_are_as_asked() -> None:
    seen = Seen(name="a", uuid="u", running=False, shut_off=True, persistent=True,
                managed=True, memory_mib=64, autostart=False, xml_sha256="",
                volumes=frozenset({"a-root", "a-d1", "a.cidata-new.iso"}))
    want = Want("stopped", 64, disk=16, generation=1, seed=2)
    big = {"a-d1": 16 << 20}
    assert matches(seen, want, capacities=big)
    assert matches(seen, want, capacities=big, old_seed="a.cidata-old.iso")
    assert not matches(seen, want, capacities=big, old_seed="a.cidata-new.iso")  # not yet
    assert not matches(seen, want, capacities={"a-d1": 8 << 20})  # not grown yet
    assert not matches(seen, Want("stopped", 64, disk=16, generation=2), capacities=big)
    no_seed = Seen(**{**seen.__dict__, "volumes": frozenset({"a-root", "a-d1"})})
    assert not matches(no_seed, want, capacities=big)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([3.0], 0.99) == 3.0

"""The manifest trigger: which paths matter, debouncing, which names a reload yields, and
the real watchdog observer on a real folder (removed, recreated, replaced)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirDeletedEvent,
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

from controller.manifests import LoadResult, load_directory
from controller.model import VMSpec
from controller.watch import (
    ROOT,
    Debounce,
    Debouncer,
    ManifestSet,
    ManifestWatcher,
    changed_names,
    relevant_path,
    touched_paths,
)
from tests.support.manifests import vm_manifest, write_atomically
from tests.support.waiting import wait_until

# --- which paths matter ---------------------------------------------------------------------

@pytest.mark.parametrize(("path", "is_directory", "relevant"), [
    ("web.yaml", False, True),
    ("web.yml", False, True),
    ("team/web.yaml", False, True),
    ("team", True, True),
    (ROOT, True, True),
    ("README.md", False, False),
    (".web.yaml", False, False),  # hidden file
    (".git/config.yaml", False, False),  # inside a hidden folder
    (".git", True, False),
    ("web.yaml~", False, False),  # editor leftovers, as manifests.py ignores them
    (".#web.yaml", False, False),
    ("web.yaml.swp", False, False),
    ("web.yaml.swx", False, False),
    ("web.yaml.tmp", False, False),
    ("4913", False, False),
    ("../elsewhere.yaml", False, False),
])
def test_relevant_path(path: str, is_directory: bool, relevant: bool) -> None:
    assert relevant_path(path, is_directory=is_directory) is relevant


@pytest.mark.parametrize(("event", "touched"), [
    (FileModifiedEvent("/m/web.yaml"), {"web.yaml"}),
    (FileCreatedEvent("/m/a/b.yml"), {"a/b.yml"}),
    (FileClosedEvent("/m/web.yaml"), {"web.yaml"}),  # written and closed
    (FileOpenedEvent("/m/web.yaml"), set()),  # our own reads must not trigger reloads
    (FileClosedNoWriteEvent("/m/web.yaml"), set()),
    (DirModifiedEvent("/m"), set()),  # the files' own events say what changed
    (FileMovedEvent("/m/.web.yaml.swp", "/m/web.yaml"), {"web.yaml"}),  # save by rename
    (FileMovedEvent("/m/web.yaml", "/m/web.yaml~"), {"web.yaml"}),  # backup by rename
    (FileCreatedEvent("/m/web.yaml.swp"), set()),
    (DirDeletedEvent("/m"), {ROOT}),
])
def test_touched_paths(event: FileSystemEvent, touched: set[str]) -> None:
    assert touched_paths(event, "/m") == touched


# --- debouncing ----------------------------------------------------------------------------------

def test_debounce_waits_for_quiet() -> None:
    state = Debounce(delay=0.25, max_wait=2.0)
    assert state.take_if_due(0.0) is None
    state.add({"a"}, now=0.0)
    state.add({"b"}, now=0.2)
    assert state.deadline() == pytest.approx(0.45)
    assert state.take_if_due(0.44) is None  # still within 0.25 s of the last change
    assert state.take_if_due(0.45) == {"a", "b"}
    assert state.take_if_due(10.0) is None  # taken once
    assert state.deadline() is None


def test_debounce_fires_after_max_wait_when_changes_never_stop() -> None:
    state = Debounce(delay=0.25, max_wait=2.0)
    now = 0.0
    state.add({"a"}, now)
    fired = None
    while fired is None:
        now += 0.1  # a change every 0.1 s, forever
        fired = state.take_if_due(now)
        state.add({f"x{now:.1f}"}, now)
    assert now == pytest.approx(2.0)
    assert "a" in fired


def test_debouncer_delivers_a_burst_as_one_batch() -> None:
    batches: list[set[str]] = []
    done = threading.Event()

    def callback(items: set[str]) -> None:
        batches.append(items)
        done.set()

    # A debounce far longer than the burst takes: the burst cannot be split.
    debouncer = Debouncer(callback, delay=0.3, max_wait=60)
    debouncer.start()
    try:
        for index in range(50):
            debouncer.trigger({f"f{index}"})
        assert done.wait(30)
    finally:
        debouncer.stop()
    assert batches == [{f"f{index}" for index in range(50)}]


def test_debouncer_survives_a_failing_callback() -> None:
    calls: list[set[str]] = []
    second = threading.Event()

    def callback(items: set[str]) -> None:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    debouncer = Debouncer(callback, delay=0.01, max_wait=1)
    debouncer.start()
    try:
        debouncer.trigger({"a"})
        wait_until(lambda: calls, what="the first batch")
        debouncer.trigger({"b"})
        assert second.wait(30)
    finally:
        debouncer.stop()
    assert calls == [{"a"}, {"b"}]


# --- which names a reload yields ----------------------------------------------------------

def _load(*specs: VMSpec, invalid: tuple[str, ...] = ()) -> LoadResult:
    load = LoadResult(directory="/m", specs={spec.name: spec for spec in specs})
    load.invalid_names = set(invalid)
    load.documents = len(specs) + len(invalid)
    return load


def _spec(name: str, source: str, memory_kib: int = 65536) -> VMSpec:
    return VMSpec(name=name, source=source, memory_kib=memory_kib, current_memory_kib=memory_kib,
                  vcpus=1)


@pytest.mark.parametrize(("before", "after", "touched", "names"), [
    # A spec edited: its name.
    (_load(_spec("a", "a.yaml")), _load(_spec("a", "a.yaml", 2 * 65536)), {"a.yaml"}, {"a"}),
    # A file touched without a change still means its names are looked at.
    (_load(_spec("a", "a.yaml"), _spec("b", "b.yaml")),
     _load(_spec("a", "a.yaml"), _spec("b", "b.yaml")), {"a.yaml"}, {"a"}),
    # A VM renamed in its file: the old name (now an orphan) and the new one.
    (_load(_spec("old", "a.yaml")), _load(_spec("new", "a.yaml")), {"a.yaml"}, {"old", "new"}),
    # A file deleted: the names it defined.
    (_load(_spec("a", "a.yaml"), _spec("b", "b.yaml")), _load(_spec("b", "b.yaml")),
     {"a.yaml"}, {"a"}),
    # A VM moved to another file: both files touched, one name.
    (_load(_spec("a", "a.yaml")), _load(_spec("a", "b.yaml")), {"a.yaml", "b.yaml"}, {"a"}),
    # A folder removed: the names of every file below it.
    (_load(_spec("a", "team/a.yaml"), _spec("b", "b.yaml")), _load(_spec("b", "b.yaml")),
     {"team"}, {"a"}),
    # A manifest made invalid: its name (the worker leaves its VM alone).
    (_load(_spec("a", "a.yaml")), _load(invalid=("a",)), {"a.yaml"}, {"a"}),
    # A change seen without its event (e.g. at a resync): the spec differs.
    (_load(_spec("a", "a.yaml")), _load(_spec("a", "a.yaml", 2 * 65536)), set(), {"a"}),
    # The folder itself replaced: everything, before and after.
    (_load(_spec("a", "a.yaml")), _load(_spec("b", "b.yaml"), invalid=("c",)), {ROOT},
     {"a", "b", "c"}),
])
def test_changed_names(before: LoadResult, after: LoadResult, touched: set[str],
                       names: set[str]) -> None:
    assert changed_names(before, after, touched) == names


def test_manifest_set_reload_reports_removed_and_invalid_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vm_manifest("a"))
    (tmp_path / "b.yaml").write_text(vm_manifest("b"))
    manifests = ManifestSet(str(tmp_path))
    load, names, _ = manifests.reload()
    assert set(load.specs) == {"a", "b"} and names == {"a", "b"}
    assert load.prune_safe

    (tmp_path / "a.yaml").unlink()
    (tmp_path / "b.yaml").write_text(vm_manifest("b", memory="lots"))
    load, names, _ = manifests.reload({"a.yaml", "b.yaml"})
    assert names == {"a", "b"}
    assert set(load.specs) == set() and load.invalid_names == {"b"}
    assert not load.prune_safe
    assert manifests.current() is load


def test_manifest_set_never_prune_safe_without_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(vm_manifest("a"))
    manifests = ManifestSet(str(folder))
    assert manifests.reload()[0].prune_safe
    shutil.rmtree(folder)
    load, names, _ = manifests.reload()
    assert names == {"a"} and not load.prune_safe and load.problem
    folder.mkdir()
    load, names, _ = manifests.reload()
    assert not load.prune_safe  # empty is not safe either
    assert names == set()


# --- the real observer ---------------------------------------------------------------------

class Recorder:
    """Collects the batches a ManifestWatcher delivers, with the reload each one caused."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifests = ManifestSet(str(folder))
        self.manifests.reload()
        self.batches: list[tuple[set[str], set[str], LoadResult]] = []
        self._cond = threading.Condition()

    def __call__(self, touched: set[str]) -> None:
        load, names, _ = self.manifests.reload(touched)
        with self._cond:
            self.batches.append((touched, names, load))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[LoadResult], bool], what: str,
             timeout: float = 30.0) -> list[tuple[set[str], set[str], LoadResult]]:
        """Wait for a batch whose reload satisfies `predicate`; return the batches so far."""
        def seen() -> bool:
            return any(predicate(load) for _, _, load in self.batches)
        with self._cond:
            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"timed out waiting for {what}; batches: {self.batches}")
            return list(self.batches)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Callable[[Path], Recorder]]:
    watchers: list[ManifestWatcher] = []

    def watch(folder: Path) -> Recorder:
        recorder = Recorder(folder)
        watcher = ManifestWatcher(str(folder), recorder, delay=0.05, max_wait=1.0)
        watcher.start()
        watchers.append(watcher)
        return recorder

    yield watch
    for watcher in watchers:
        watcher.stop()


def test_watcher_sees_edits_and_ignores_editor_leftovers(
        tmp_path: Path, watched: Callable[[Path], Recorder]) -> None:
    folder = tmp_path / "m"
    (folder / "team").mkdir(parents=True)
    recorder = watched(folder)
    for ignored in (".hidden.yaml", "vm.yaml.swp", "vm.yaml~", "4913", "notes.txt"):
        (folder / ignored).write_text("not: [valid")
    (folder / "team" / "vm.yaml").write_text(vm_manifest("vm"))
    batches = recorder.wait(lambda load: "vm" in load.specs, "vm in the manifests")
    touched = set().union(*(batch[0] for batch in batches))
    assert touched == {"team/vm.yaml"}  # none of the ignored files made it into a batch
    assert batches[-1][1] == {"vm"}

    write_atomically(folder / "team" / "vm.yaml", vm_manifest("vm", memory="96MiB"))
    batches = recorder.wait(lambda load: "vm" in load.specs
                            and load.specs["vm"].memory_kib == 96 * 1024, "the edit")
    assert batches[-1][1] == {"vm"}
    assert all(not any(part.startswith(".") for part in path.split("/"))
               for batch in batches for path in batch[0])


def test_watcher_asks_inotify_for_changes_only_not_for_reads(tmp_path: Path) -> None:
    """The service reads every manifest at each resync: those opens and read-only closes
    must not even reach watchdog's threads (1,000 files cost them ~40 ms a resync)."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(vm_manifest("a"))
    seen: list[str] = []

    class Counting(ManifestWatcher):
        def _event(self, event: FileSystemEvent, *, parent: bool) -> None:
            if not parent:
                seen.append(event.event_type)
            super()._event(event, parent=parent)

    recorder = Recorder(folder)
    watcher = Counting(str(folder), recorder, delay=0.05, max_wait=1.0)
    watcher.start()
    try:
        for _ in range(20):
            load_directory(str(folder))
        (folder / "b.yaml").write_text(vm_manifest("b"))  # after the reads: a change
        recorder.wait(lambda load: "b" in load.specs, "b in the manifests")
    finally:
        watcher.stop()
    assert "created" in seen
    assert not {"opened", "closed_no_write"} & set(seen), seen


def test_watcher_follows_the_folder_when_it_is_removed_and_recreated(
        tmp_path: Path, watched: Callable[[Path], Recorder]) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(vm_manifest("a"))
    recorder = watched(folder)

    shutil.rmtree(folder)
    batches = recorder.wait(lambda load: load.problem is not None and "a" not in load.specs,
                            "the folder to be gone")
    assert batches[-1][1] == {"a"}
    assert not batches[-1][2].prune_safe

    folder.mkdir()
    (folder / "b.yaml").write_text(vm_manifest("b"))
    recorder.wait(lambda load: "b" in load.specs, "b in the recreated folder")
    # The new folder is watched: a later edit in it is seen too.
    (folder / "c.yaml").write_text(vm_manifest("c"))
    recorder.wait(lambda load: "c" in load.specs, "c written into the recreated folder")


def test_watcher_follows_a_folder_swapped_in_by_rename(
        tmp_path: Path, watched: Callable[[Path], Recorder]) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(vm_manifest("a"))
    recorder = watched(folder)

    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "b.yaml").write_text(vm_manifest("b"))
    old = tmp_path / "old"
    os.rename(folder, old)
    os.rename(staging, folder)
    batches = recorder.wait(lambda load: set(load.specs) == {"b"}, "the swapped-in folder")
    assert {"a", "b"} <= set().union(*(batch[1] for batch in batches))
    (folder / "c.yaml").write_text(vm_manifest("c"))
    recorder.wait(lambda load: set(load.specs) == {"b", "c"}, "c in the swapped-in folder")
    (old / "d.yaml").write_text(vm_manifest("d"))  # the old folder is no longer watched...
    (folder / "e.yaml").write_text(vm_manifest("e"))
    recorder.wait(lambda load: "e" in load.specs, "e")
    assert "d" not in recorder.manifests.current().specs  # ...nor read


def test_load_directory_agrees_with_the_watch_filter(tmp_path: Path) -> None:
    # The watcher's filter and the loader's must agree, or an edit would go unseen.
    for name in ("a.yaml", ".h.yaml", "a.yaml~", ".#a.yaml", "a.swp", "x.tmp", "4913"):
        (tmp_path / name).write_text(vm_manifest(name.strip(".#~").replace(".", "-")[:20]))
    seen = {spec.source for spec in load_directory(str(tmp_path)).specs.values()}
    relevant = {name for name in os.listdir(tmp_path)
                if relevant_path(name, is_directory=False)}
    assert seen == relevant == {"a.yaml"}

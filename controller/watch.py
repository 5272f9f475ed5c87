"""The manifest trigger of the service: watch the directory, reload it, say which names changed.

Used by service.py. A watchdog observer watches the manifest directory
(recursively) and its parent (so a directory that is removed, recreated,
renamed into place or swapped behind a symlink is followed). Events are
filtered with the loader's own rules (hidden files and folders, editor
leftovers, non-YAML files are ignored) and debounced: one reload per burst of
writes, once the files have been quiet for `delay` seconds (at most `max_wait`
after the first event, so a file that never stops changing is still read).

`ManifestSet` owns the current `LoadResult`. `reload` reads the whole
directory again and returns the names to look at: the names defined now or
before by the files that changed, and every name whose spec changed, so a
renamed or deleted VM is seen too. It never decides what to do with them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from .manifests import DEFAULT_DISK_ROOTS, EDITOR_LEFTOVERS, LoadResult, load_directory

log = logging.getLogger(__name__)

#: The relative path that stands for the manifest directory itself.
ROOT = "."
#: A manifest must have been gone this long before its domain is pruned.
PRUNE_SETTLE = 1.0
_CHANGES = frozenset({"created", "deleted", "modified", "moved", "closed"})
#: The events asked of inotify: those of _CHANGES. Without a filter, watchdog also asks
#: for every open and read-only close, and the service's own reading of 1,000 manifests
#: at each resync cost its threads ~40 ms of CPU to handle and drop them.
_WATCHED = [FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent,
            FileModifiedEvent, DirModifiedEvent, FileMovedEvent, DirMovedEvent,
            FileClosedEvent]


# --- which paths matter ------------------------------------------------------------------

def relevant_path(relative: str, *, is_directory: bool) -> bool:
    """Whether a change at `relative` (to the manifest directory) can change the manifests."""
    if relative == ROOT:
        return True
    parts = relative.split(os.sep)
    if parts[0] == os.pardir or any(part.startswith(".") for part in parts):
        return False
    if is_directory:
        return True
    name = parts[-1]
    return name.endswith((".yaml", ".yml")) and not EDITOR_LEFTOVERS.search(name)


def touched_paths(event: FileSystemEvent, root: str) -> set[str]:
    """The relevant paths (relative to `root`) that one watchdog event touches."""
    if event.event_type not in _CHANGES:
        return set()  # opened / closed without writing / attributes: our own reads, chmod
    if event.is_directory and event.event_type == "modified":
        return set()  # a folder's listing changed: its files' own events say which
    paths = {event.src_path}
    if event.event_type == "moved" and event.dest_path:
        paths.add(event.dest_path)
    touched = set()
    for path in paths:
        text = os.fsdecode(path)
        relative = os.path.relpath(text, root)
        if relevant_path(relative, is_directory=event.is_directory):
            touched.add(relative)
    return touched


# --- debouncing ----------------------------------------------------------------------------

@dataclass
class Debounce:
    """Pure debounce state: collects items; due `delay` after the last one, or `max_wait`
    after the first, whichever comes first. Times are whatever clock the caller uses."""

    delay: float
    max_wait: float
    items: set[str] = field(default_factory=set)
    first: float | None = None
    last: float | None = None

    def add(self, items: Iterable[str], now: float) -> None:
        self.items.update(items)
        if self.first is None:
            self.first = now
        self.last = now

    def deadline(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return min(self.last + self.delay, self.first + self.max_wait)

    def take_if_due(self, now: float) -> set[str] | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        items, self.items = self.items, set()
        self.first = self.last = None
        return items


class Debouncer:
    """Runs `callback(items)` in its own thread once a burst of `trigger` calls is over."""

    def __init__(self, callback: Callable[[set[str]], None], *, delay: float = 0.25,
                 max_wait: float = 2.0, name: str = "debounce"):
        self._callback = callback
        self._state = Debounce(delay, max_wait)
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def trigger(self, items: Iterable[str]) -> None:
        with self._cond:
            self._state.add(items, time.monotonic())
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    items = self._state.take_if_due(time.monotonic())
                    if items is not None:
                        break
                    deadline = self._state.deadline()
                    self._cond.wait(None if deadline is None else deadline - time.monotonic())
            try:
                self._callback(items)
            except Exception:  # one bad batch must not stop the watcher
                log.exception("handling a manifest change failed")


# --- the watcher ---------------------------------------------------------------------------

class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: ManifestWatcher, *, parent: bool):
        self._watcher = watcher
        self._parent = parent

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher._event(event, parent=self._parent)


class ManifestWatcher:
    """Calls `on_change(touched)` (paths relative to the directory; '.' for the directory
    itself) after each debounced burst of relevant changes under `directory`."""

    def __init__(self, directory: str, on_change: Callable[[set[str]], None], *,
                 delay: float = 0.25, max_wait: float = 2.0):
        self.directory = os.path.abspath(directory)
        self._parent_dir = os.path.dirname(self.directory.rstrip(os.sep)) or os.sep
        self._on_change = on_change
        self._debouncer = Debouncer(self._batch, delay=delay, max_wait=max_wait,
                                    name="manifest-watch")
        self._observer: BaseObserver | None = None
        self._watches: list[ObservedWatch] = []
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._debouncer.start()
        self.rearm(force=True)

    def stop(self) -> None:
        self._debouncer.stop()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def rearm(self, *, force: bool = False) -> bool:
        """Watch the directory again if it is not the one being watched (it was removed,
        recreated or swapped). Returns whether anything changed."""
        with self._lock:
            identity = _identity(self.directory)
            if not force and identity == self._identity:
                return False
            observer = self._observer
            if observer is None:
                return False
            for watch in self._watches:
                try:
                    observer.unschedule(watch)
                except (KeyError, OSError):
                    pass  # its folder is gone already
            self._watches = []
            self._identity = identity
            for path, recursive, parent in ((self._parent_dir, False, True),
                                            (self.directory, True, False)):
                try:
                    self._watches.append(observer.schedule(_Handler(self, parent=parent), path,
                                                           recursive=recursive,
                                                           event_filter=_WATCHED))
                except OSError as exc:  # missing: the parent's watch or the resync sees it come
                    log.debug("cannot watch %s: %s", path, exc)
            if not force:
                log.info("manifest directory %s %s; watching it again", self.directory,
                         "is gone" if identity is None else "was replaced")
            return True

    def _event(self, event: FileSystemEvent, *, parent: bool) -> None:
        if parent:
            paths = {os.fsdecode(event.src_path), os.fsdecode(event.dest_path or b"")}
            if self.directory not in paths or event.event_type not in _CHANGES:
                return
            touched = {ROOT}
        else:
            touched = touched_paths(event, self.directory)
        if touched:
            log.debug("manifest change: %s %s", event.event_type, ", ".join(sorted(touched)))
            self._debouncer.trigger(touched)

    def _batch(self, touched: set[str]) -> None:
        if self.rearm():
            touched = touched | {ROOT}
        self._on_change(touched)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# --- the manifests the service works from ------------------------------------------------

def changed_names(before: LoadResult, after: LoadResult, touched: Collection[str]) -> set[str]:
    """Names to reconcile after a reload: every name whose spec appeared, vanished or
    changed, whose validity changed, and every name the touched files define now or
    defined before. Touching the directory itself ('.') means every name."""
    every = set(before.specs) | set(after.specs) | before.invalid_names | after.invalid_names
    if ROOT in touched:
        return every
    names = {name for name in set(before.specs) | set(after.specs)
             if before.specs.get(name) != after.specs.get(name)}
    names |= before.invalid_names ^ after.invalid_names
    for load in (before, after):
        for spec in load.specs.values():
            if _under(spec.source, touched):
                names.add(spec.name)
    return names


def _under(source: str, touched: Collection[str]) -> bool:
    return any(source == path or source.startswith(path + os.sep) for path in touched)


class Reload(NamedTuple):
    load: LoadResult
    names: set[str]
    before: LoadResult


class ManifestSet:
    """The service's current view of the manifest directory; reloaded as a whole."""

    def __init__(self, directory: str, *, disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS,
                 strict_permissions: bool = False):
        self.directory = directory
        self.disk_roots = list(disk_roots)
        self.strict_permissions = strict_permissions
        self.extra_hosts: dict[str, str] = {}  # --host NAME=URI
        self._load = LoadResult(directory=directory, problem="not loaded yet")
        self._lock = threading.Lock()
        self._loaded = False
        #: When the set of valid specs last changed (time.monotonic()).
        self.changed_at = time.monotonic()

    def current(self) -> LoadResult:
        return self._load

    def unsettled_for(self) -> float:
        """Seconds until the specs have been unchanged for PRUNE_SETTLE (0: they have), so
        a file being rewritten (truncated, then written) is not mistaken for a deleted
        one and its domain pruned."""
        return max(0.0, PRUNE_SETTLE - (time.monotonic() - self.changed_at))

    def confirm(self) -> LoadResult:
        """The directory read afresh (not kept): before a domain is removed for lack of a
        manifest, the files it would be removed for are looked at once more."""
        return load_directory(self.directory, disk_roots=self.disk_roots,
                              strict_permissions=self.strict_permissions,
                              extra_hosts=self.extra_hosts)

    def reload(self, touched: Collection[str] = (ROOT,)) -> Reload:
        """Read the directory again; return the new load, the names to look at, and the
        load it replaced."""
        with self._lock:
            before = self._load
            after = load_directory(self.directory, disk_roots=self.disk_roots,
                                   strict_permissions=self.strict_permissions,
                                   extra_hosts=self.extra_hosts)
            self._load = after
            first, self._loaded = not self._loaded, True
            if (before.specs, before.networks, before.pools) != (
                    after.specs, after.networks, after.pools):  # what a prune may act on
                self.changed_at = time.monotonic()
        _log_differences(before, after, first=first)
        return Reload(after, changed_names(before, after, touched), before)


def _log_differences(before: LoadResult, after: LoadResult, *, first: bool) -> None:
    if after.problem and (first or after.problem != before.problem):
        log.warning("%s; nothing will be pruned while it is so", after.problem)
    for warning in after.warnings:
        if first or warning not in before.warnings:
            log.warning("%s", warning)
    for entry in after.invalid:
        if first or entry not in before.invalid:
            log.error("invalid manifest %s; its VMs are left as they are", entry)
    fixed = {entry.file for entry in before.invalid} - {entry.file for entry in after.invalid}
    for path in sorted(fixed):
        if not first:
            log.info("manifest %s is no longer invalid", path)
    added = sorted(set(after.specs) - set(before.specs))
    removed = sorted(set(before.specs) - set(after.specs) - after.invalid_names)
    edited = sorted(name for name in set(before.specs) & set(after.specs)
                    if before.specs[name] != after.specs[name])
    if first:
        log.info("manifests loaded from %s: %d VMs, %d invalid", after.directory,
                 len(after.specs), len(after.invalid))
        return
    for verb, names in (("added", added), ("removed", removed), ("changed", edited)):
        if names:
            log.info("manifests %s: %s", verb, ", ".join(names))

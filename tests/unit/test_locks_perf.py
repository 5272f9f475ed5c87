"""VMLocks.hold as a class-based context manager: stamps only from a holder that changes
something (at its `stamp()` and at its release), exclusive between holders in one
process, released on errors."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from controller.errors import LockTimeout
from controller.locks import VMLocks


def test_a_holder_stamps_only_when_it_says_it_changes_something(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    path = locks.path_for("web-1")
    with locks.hold("web-1") as first:
        assert not first.waited
        assert locks.held_now(["web-1", "other"]) == {"web-1"}
    created = path.stat().st_mtime_ns
    old = created - 10**9
    os.utime(path, ns=(old, old))
    with locks.hold("web-1") as looking:  # only looks: no stamp
        assert looking.previous_touch_ns == old
    assert path.stat().st_mtime_ns == old
    with locks.hold("web-1") as changing:
        changing.stamp()
        taken = path.stat().st_mtime_ns
        assert taken > old
        changing.stamp()  # once is enough: a second call stamps nothing
        assert path.stat().st_mtime_ns == taken
    released = path.stat().st_mtime_ns
    assert released >= taken
    assert locks.held_now(["web-1"]) == set()
    with locks.hold("web-1") as second:
        assert second.previous_touch_ns == released
        assert second.untouched_since(released + 10**9)
        assert not second.untouched_since(released)


def test_a_second_holder_waits_then_times_out(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    with locks.hold("web-1"), pytest.raises(LockTimeout), locks.hold("web-1", timeout=0.05):
        pass  # pragma: no cover - never reached
    with locks.hold("web-1", timeout=0.05) as again:  # free again after the timeout
        assert not again.waited


def test_a_waiter_gets_the_lock_when_released_and_says_it_waited(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.hold("web-1"):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    threading.Timer(0.05, release.set).start()
    with locks.hold("web-1", timeout=10) as held:
        assert held.waited
    thread.join(10)


def test_an_error_inside_releases_the_lock_and_closes_the_file(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError), locks.hold("web-1"):
        raise RuntimeError("boom")
    assert len(os.listdir("/proc/self/fd")) == before
    assert locks.held_now(["web-1"]) == set()


def test_unsafe_names_get_a_hashed_file_in_the_folder(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    path = locks.path_for("../x y")
    assert path.parent == tmp_path and path.name.startswith("_") and path.suffix == ".lock"
    with locks.hold("../x y"):
        assert path.exists()
    assert locks.path_for("web-1") == tmp_path / "web-1.lock"


def test_stamps_move_forward(tmp_path: Path) -> None:
    locks = VMLocks(str(tmp_path))
    with locks.hold("web-1") as held:
        held.stamp()
    first = locks.path_for("web-1").stat().st_mtime_ns
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the file clock is coarse: wait for it to tick
        with locks.hold("web-1") as held:
            held.stamp()
        if locks.path_for("web-1").stat().st_mtime_ns > first:
            break
    assert held.previous_touch_ns >= first
    assert locks.path_for("web-1").stat().st_mtime_ns > first

"""The work queue's promises, one test each: de-duplication, one worker per name, re-queue
when added while processing, per-name backoff that holds up no one else, delayed adds,
shutdown. A fake clock drives the delays; real threads check the blocking paths."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from controller.workqueue import Backoff, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(queue: WorkQueue) -> list[str]:
    """Take and finish everything ready now."""
    taken = []
    while (name := queue.get(timeout=0)) is not None:
        taken.append(name)
        queue.done(name)
    return taken


def test_a_name_is_queued_at_most_once() -> None:
    queue = WorkQueue()
    for name in ["a", "b", "a", "c", "b", "a"]:
        queue.add(name)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]  # first-come order
    assert queue.get(timeout=0) is None


def test_a_name_in_processing_is_not_handed_out_again() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    assert queue.processing() == {"a"}
    assert queue.get(timeout=0) is None  # a second worker must not get it
    assert len(queue) == 0
    queue.done("a")
    assert queue.get(timeout=0) == "a"  # ... but it was added again, so it comes back


def test_added_several_times_while_processing_comes_back_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    name = queue.get(timeout=0)
    assert name == "a"
    for _ in range(5):
        queue.add("a")
    queue.done("a")
    assert drain(queue) == ["a"]


def test_done_without_a_new_add_does_not_requeue() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None
    assert queue.queued() == set() and queue.processing() == set()


@pytest.mark.parametrize(("base", "cap", "expected"), [
    (1.0, 300.0, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]),
    (0.5, 3.0, [0.5, 1, 2, 3, 3]),
])
def test_backoff_doubles_per_failure_up_to_the_cap(base: float, cap: float,
                                                   expected: list[float]) -> None:
    backoff = Backoff(base=base, cap=cap)
    assert [backoff.next_delay("a") for _ in expected] == expected
    assert backoff.failures("a") == len(expected)


def test_backoff_is_per_name_and_forget_resets_it() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert [backoff.next_delay("a") for _ in range(3)] == [1, 2, 4]
    assert backoff.next_delay("b") == 1
    backoff.forget("a")
    assert backoff.next_delay("a") == 1
    assert backoff.next_delay("b") == 2


def test_backoff_survives_a_very_long_failing_name() -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    for _ in range(2000):
        delay = backoff.next_delay("a")
    assert delay == 300.0


def test_a_failing_name_waits_its_backoff_without_holding_up_others() -> None:
    clock = FakeClock()
    queue = WorkQueue(backoff=Backoff(base=1.0, cap=300.0), clock=clock)
    queue.add("bad")
    queue.add("good")
    assert queue.get(timeout=0) == "bad"
    assert queue.add_rate_limited("bad") == 1.0
    queue.done("bad")
    assert queue.waiting() == {"bad"}
    assert drain(queue) == ["good"]  # not behind "bad"
    clock.advance(0.99)
    assert queue.get(timeout=0) is None
    clock.advance(0.01)
    assert queue.get(timeout=0) == "bad"
    assert queue.add_rate_limited("bad") == 2.0  # the second failure waits twice as long
    queue.done("bad")
    clock.advance(1.5)
    assert queue.get(timeout=0) is None
    clock.advance(0.5)
    assert drain(queue) == ["bad"]
    queue.forget("bad")
    assert queue.add_rate_limited("bad") == 1.0


def test_delayed_add_is_due_after_its_delay_and_the_earliest_one_wins() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("a", 10)
    queue.add_after("a", 3)  # earlier: replaces the later one
    queue.add_after("a", 20)  # later: ignored
    clock.advance(2.9)
    assert queue.get(timeout=0) is None
    clock.advance(0.1)
    assert drain(queue) == ["a"]
    clock.advance(100)
    assert queue.get(timeout=0) is None  # the superseded delays do not fire again


def test_a_delayed_name_already_queued_is_not_queued_twice() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("a")
    queue.add_after("a", 1)
    clock.advance(1)
    assert drain(queue) == ["a"]


def test_add_after_zero_adds_at_once() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0)
    assert queue.get(timeout=0) == "a"


def test_a_blocked_get_wakes_up_for_a_delayed_add() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    worker.start()
    queue.add_after("a", 0.05)  # the sleeping worker must notice the new, earlier deadline
    worker.join(timeout=30)
    assert got == ["a"]


def test_a_blocked_get_wakes_up_for_an_add() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.add("a")
    worker.join(timeout=30)
    assert got == ["a"]


def test_get_with_a_timeout_returns_none_when_nothing_comes() -> None:
    queue = WorkQueue()
    assert queue.get(timeout=0.01) is None


def test_shutdown_stops_handing_out_work_and_wakes_every_worker() -> None:
    queue = WorkQueue()
    results: list[str | None] = []
    lock = threading.Lock()

    def worker() -> None:
        name = queue.get()
        with lock:
            results.append(name)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    queue.shut_down()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [None, None, None]
    queue.add("a")  # ignored once shutting down
    assert queue.get(timeout=0) is None
    assert queue.shutting_down


def test_shutdown_leaves_queued_names_alone_and_waits_for_the_ones_in_flight() -> None:
    queue = WorkQueue()
    queue.add("busy")
    queue.add("queued")
    assert queue.get(timeout=0) == "busy"
    queue.shut_down()
    assert queue.get(timeout=0) is None  # "queued" is never started
    assert queue.wait_idle(0.01) is False  # "busy" is still in flight
    finisher = threading.Timer(0.05, queue.done, args=("busy",))
    finisher.start()
    assert queue.wait_idle(30) is True
    finisher.join()


def test_no_name_is_ever_in_two_workers_at_once() -> None:
    queue = WorkQueue()
    names = [f"vm-{i}" for i in range(5)]
    in_flight: set[str] = set()
    overlaps: list[str] = []
    processed: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        while (name := queue.get()) is not None:
            with lock:
                if name in in_flight:
                    overlaps.append(name)
                in_flight.add(name)
            for _ in range(200):  # some work, during which the name is added again
                queue.add(name)
            with lock:
                in_flight.discard(name)
                processed[name] += 1
            queue.done(name)

    def producer() -> None:
        for _ in range(200):
            for name in names:
                queue.add(name)
        stop.set()

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for thread in workers:
        thread.start()
    producers = [threading.Thread(target=producer) for _ in range(3)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
    assert stop.wait(60)
    queue.shut_down()
    for thread in workers:
        thread.join(timeout=60)
    assert overlaps == []
    assert set(processed) == set(names)


def laned(lanes: int, *names: str) -> tuple[FakeClock, WorkQueue]:
    """A queue of `lanes` lanes (names slow after 25 ms of its fake clock) with `names`."""
    clock = FakeClock()
    queue = WorkQueue(clock=clock, lanes=lanes, slow_after=0.025)
    for name in names:
        queue.add(name)
    return clock, queue


def test_lanes_hand_out_only_that_many_quick_names_at_once() -> None:
    _, queue = laned(2, "a", "b", "c")
    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) == "b"
    assert queue.get(timeout=0) is None  # both lanes are taken by quick names
    queue.done("a")
    assert queue.get(timeout=0) == "c"  # a finished name frees its lane at once


def test_a_slow_name_frees_its_lane_for_another_worker() -> None:
    clock, queue = laned(1, "slow", "next", "third")
    assert queue.get(timeout=0) == "slow"
    clock.advance(0.024)
    assert queue.get(timeout=0) is None
    clock.advance(0.002)  # "slow" is waiting on libvirt: its lane goes to the next name
    assert queue.get(timeout=0) == "next"
    assert queue.get(timeout=0) is None  # ... which is quick, and holds the one lane
    assert queue.processing() == {"slow", "next"}


def test_a_worker_waiting_for_a_lane_takes_a_name_once_the_lane_is_free() -> None:
    queue = WorkQueue(lanes=1, slow_after=30.0)
    queue.add("a")
    queue.add("b")
    assert queue.get(timeout=0) == "a"
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    worker.start()
    queue.done("a")
    worker.join(timeout=30)
    assert got == ["b"]


def test_a_worker_waiting_for_a_lane_takes_a_name_once_the_holder_turns_slow() -> None:
    queue = WorkQueue(lanes=1, slow_after=0.05)
    queue.add("a")
    queue.add("b")
    assert queue.get(timeout=0) == "a"  # and never done: a step that waits on libvirt
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    worker.start()
    worker.join(timeout=30)
    assert got == ["b"]
    assert queue.processing() == {"a", "b"}


def test_a_name_added_while_the_lanes_are_taken_reaches_an_idle_worker_in_time() -> None:
    queue = WorkQueue(lanes=1, slow_after=0.05)
    queue.add("a")
    assert queue.get(timeout=0) == "a"  # and never done: a long shutdown, say
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    worker.start()  # nothing queued: it waits with no deadline
    wait_until_waiting(queue)
    queue.add("b")  # the lane is taken, but "a" turns slow: the idle worker must see it
    worker.join(timeout=30)
    assert got == ["b"]


def wait_until_waiting(queue: WorkQueue) -> None:
    deadline = time.monotonic() + 30
    while queue._untimed_waiters == 0:  # noqa: SLF001 - the worker is inside get()
        assert time.monotonic() < deadline, "the worker never waited"
        time.sleep(0.001)

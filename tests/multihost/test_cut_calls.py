"""Every slot of a connection busy when the host's link is cut: every call returns, the
process survives the link coming back, the connection is replaced, and another host's
connection is untouched.

libvirt 9.0's client, left to its keepalive, hands the dead connection's I/O to one
waiting call that then polls the silent socket forever, and crashes the process (SIGSEGV
in g_main_loop_quit) when the socket wakes up: the service test with a host cut hung, and
its service died, so. The scenario runs in a process of its own (cut_calls.py), driven
over a pipe, so a crash is its exit status. See docs/RELIABILITY.md, "A cut link with
calls in flight".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.stacks import dump_stacks

from .conftest import Hosts

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
#: keepalive (interval s, count): dead after about 6 s, as the service's (5, 3) after 20 s.
KEEPALIVE = (2, 2)


class Child:
    """cut_calls.py in a process of its own, one line at a time."""

    def __init__(self, cut_uri: str, healthy_uri: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.multihost.cut_calls", cut_uri, healthy_uri,
             *map(str, KEEPALIVE)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            self.process.wait(30)
            assert self.process.stderr is not None
            raise AssertionError(f"the child exited {self.process.returncode} (a negative "
                                 f"status is a signal):\n{self.process.stderr.read()[-3000:]}")
        return line

    def tell(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def test_calls_in_flight_on_a_cut_host_all_return_and_the_process_survives(
        hosts: Hosts) -> None:
    child = Child(hosts["kvm-3"].uri, hosts["kvm-1"].uri)
    try:
        assert child.read() == "calling"  # each thread's next call goes into the cut link
        hosts["kvm-3"].cut()
        cut_at = time.monotonic()
        child.tell("cut")
        returned = child.read()
        took = time.monotonic() - cut_at
        if returned == "stuck":
            raise AssertionError("calls on the cut host still waiting after "
                                 f"{took:.0f} s:\n{dump_stacks(child.process.pid)}")
        hosts["kvm-3"].restore()
        child.tell("restored")
        result = json.loads(child.read())
        code = child.process.wait(60)
        assert child.process.stderr is not None
        assert code == 0, f"exit {code} (negative: a signal): {child.process.stderr.read()[-3000:]}"
    finally:
        child.end()
    assert result["stuck"] == 0
    assert result["reconnected"] is not None, result  # within the child's bound
    assert result["listed"] is not None
    # the calls failed (and did not hang) while cut, of a socket error, not keepalive's death
    assert result["errors"], result
    assert not any("keepalive" in error for error in result["errors"]), result
    assert result["healthy_errors"] == [] and result["healthy_closes"] == [], result
    print(f"calls returned {result['returned']} s after the cut: {result['errors']}; "
          f"reconnected {result['reconnected']:.1f} s after the link was back")

"""Hang one thread of another process, and only that thread, as a stuck system call would:

    python -m tests.systemd.freeze TID

SIGSTOP cannot do this (it stops every thread of the process). ptrace can: PTRACE_SEIZE
then PTRACE_INTERRUPT put the one thread `TID` (a process's main thread has TID = PID)
in a ptrace stop; its other threads keep running. This prints "stopped" when the thread
is stopped, then holds it until the thread exits (its process is killed: a signal that
kills a process is delivered to one of its other threads) or this helper is ended: a
tracer's exit lets the thread run again. Used by tests/systemd/test_unit.py to hang the
service's main loop while its workers and libvirt's event thread go on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000  # __WALL: wait for a thread that is not the leader too


def _ptrace(request: int, tid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, tid, None, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"ptrace({request:#x}, {tid}): {os.strerror(errno)}")


def hold(tid: int) -> int:
    """Stop thread `tid` and keep it stopped until it exits; 0 then."""
    _ptrace(PTRACE_SEIZE, tid)
    _ptrace(PTRACE_INTERRUPT, tid)
    while True:
        _pid, status = os.waitpid(tid, WALL)
        if os.WIFSTOPPED(status):
            print("stopped", flush=True)  # the interrupt's stop (repeated stops: once each)
            continue  # never resumed: that is the point
        return 0  # exited or killed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m tests.systemd.freeze TID\n")
        return 2

    def leave(_signum: int, _frame: FrameType | None) -> None:
        sys.exit(0)  # exiting detaches: the thread runs again
    signal.signal(signal.SIGTERM, leave)
    return hold(int(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

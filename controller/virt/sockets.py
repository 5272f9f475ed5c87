"""A deadline, in the kernel, on a remote libvirt connection's TCP socket: a host whose link
goes down fails the connection's calls with a socket error, before libvirt's keepalive
would declare it dead.

Why: libvirt 9.0's client mishandles a keepalive death with two calls or more in flight on
one connection (docs/RELIABILITY.md, "A cut link with calls in flight"). The call that
sees the death hands the connection's I/O to a waiting call, which then polls the silent
socket with no timeout (its calls never return while the link is down), and the socket
watch of the first call stays registered with a pointer into that thread's stack: when
the socket wakes up (the link back), the stale watch runs and the process dies
(SIGSEGV in g_main_loop_quit). A socket error instead wakes every waiting call through
its own watch, and each one fails cleanly. TCP_USER_TIMEOUT turns unacknowledged data
(the call, or keepalive's ping, sent into the cut link) into that error.

libvirt does not expose its socket, so the process's own sockets connected to the URI's
host and libvirt port are found through /proc/self/fd and given the option (idempotent:
every such socket may get it). Linux only; elsewhere, and for transports other than TCP
(unix sockets, ssh), nothing is done.

Called by `connection.Connection` after it opens a connection with keepalive.
"""

from __future__ import annotations

import contextlib
import logging
import os
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: libvirtd's default ports: qemu+tcp, and qemu+tls (also a remote URI without a transport).
TCP_PORT = 16509
TLS_PORT = 16514


def unacknowledged_limit(interval: int, count: int) -> float:
    """How long data may stay unacknowledged on a connection with keepalive (`interval`
    s, `count`): keepalive's death comes `interval` x `count` s at the earliest after the
    last packet from the host (its first ping, the first data sent into a cut link, goes
    out up to `interval` s after that packet); two thirds of it leaves a margin."""
    return max(1.0, interval * count * 2 / 3)


def libvirt_peer(uri: str | None) -> tuple[str, int] | None:
    """The (host, port) a libvirt URI's TCP socket connects to; None when it is not TCP."""
    if not uri:
        return None
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    host = parts.hostname
    if not host or transport in ("unix", "ssh", "libssh", "libssh2", "ext") or not driver:
        return None
    if transport not in ("", "tcp", "tls"):
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return host, port or (TCP_PORT if transport == "tcp" else TLS_PORT)


def bound_unacknowledged(uri: str | None, *, seconds: float) -> int:
    """Give every TCP socket of this process connected to `uri`'s libvirtd a
    TCP_USER_TIMEOUT of `seconds`; returns how many sockets got it."""
    peer = libvirt_peer(uri)
    if peer is None:
        return 0
    # Imported here: socket (with selectors and array) is ~15 M instructions of every
    # start, and only a TCP connection (a remote host) has a socket to bound.
    import socket

    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None:
        return 0
    host, port = peer
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port,
                                                               type=socket.SOCK_STREAM)}
    except OSError:
        return 0
    done = 0
    for fd in _socket_fds():
        with contextlib.suppress(OSError):
            copy = os.dup(fd)  # closing the copy leaves libvirt's socket open
            try:
                sock = socket.socket(fileno=copy)
            except OSError:
                os.close(copy)
                continue
            with sock:
                if sock.type != socket.SOCK_STREAM or sock.family not in (
                        socket.AF_INET, socket.AF_INET6):
                    continue
                where = sock.getpeername()
                if where[1] == port and where[0] in addresses:
                    sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
                    done += 1
    log.debug("TCP_USER_TIMEOUT %gs on %d socket(s) to %s:%d", seconds, done, host, port)
    return done


def _socket_fds() -> list[int]:
    fds = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.append(int(name))
    return fds

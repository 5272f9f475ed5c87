"""`Hypervisor`: one libvirt host as the layers above see it.

Its connection (`connection`), what can be read of its domains (`domains`), what
steps can do to them (`steps`), its pools and volumes (`storage`), what running
guests show (`guest`: addresses, agent), and its declared networks and pools
(`networks`, `pools`). Made by the host layer (`controller.hosts`),
one per host.

`storage` and `guest` are made (and their modules imported) on first use: a pass
over VMs without disks or running guests never loads the volume, stream and
transfer code, nor the event loop unless a connection is `watched`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from .connection import Connection
from .domains import Domains
from .networks import Networks
from .pools import Pools
from .steps import DomainSteps

if TYPE_CHECKING:
    from .events import AgentEventCallback, ConnectionCallback, DomainEventCallback
    from .guest import Guests
    from .storage import Storage


class Hypervisor:
    """One host: a connection, and the reads and steps that go through it."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.domains = Domains(connection)
        self.steps = DomainSteps(connection)
        self.networks = Networks(connection)  # kind: Network
        self.pools = Pools(connection)  # kind: StoragePool

    @classmethod
    def open(cls, uri: str | None, *, readonly: bool = False, connections: int = 1,
             keepalive: tuple[int, int] | None = None) -> Hypervisor:
        """A host reached at `uri` (not connected yet)."""
        return cls(Connection(uri, readonly=readonly, connections=connections,
                              keepalive=keepalive))

    @classmethod
    def watched(cls, uri: str | None, *, on_event: DomainEventCallback,
                on_open: Callable[[], None], on_close: ConnectionCallback,
                connections: int = 1,
                on_agent: AgentEventCallback | None = None) -> Hypervisor:
        """A host whose connections deliver lifecycle events (the service), and guest
        agent (dis)connections to `on_agent`."""
        from .events import WatchedConnection

        return cls(WatchedConnection(uri, on_event=on_event, on_open=on_open,
                                     on_close=on_close, connections=connections,
                                     on_agent=on_agent))

    @cached_property
    def storage(self) -> Storage:
        """Pools and volumes (`.storage`), made on first use."""
        from .storage import Storage

        return Storage(self.connection)

    @cached_property
    def guest(self) -> Guests:
        """Running guests from outside (`.guest`), made on first use."""
        from .guest import Guests

        return Guests(self.connection)

    @property
    def uri(self) -> str | None:
        return self.connection.uri

    @property
    def calls(self) -> int:
        return self.connection.calls

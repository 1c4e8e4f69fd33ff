"""References: how one process names a worker, an object on it, or a hop of a pointer chain.

These are plain records. They travel inside messages and are what a worker stores for a chain
hop: a worker never holds the client's proxy class. A client turns a :class:`ChainRef` it
receives back into a pointer (see :mod:`syftzmq.tensor.pointer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ids import new_id
from .meta import TensorMeta


@dataclass(frozen=True)
class WorkerRef:
    """How to reach a worker: its id, its address, and its incarnation.

    The *incarnation* names one run of a worker process (``"bob#1a2b3c4d"``): a worker restarted
    under the same id and address is a new incarnation, and refuses what was meant for the old
    one. ``shm`` names the shared-memory filesystem the worker sees
    (:func:`syftzmq.wire.shm.namespace`): bulk bytes go through ``/dev/shm`` only to a worker on
    this host that sees the same one. ``liveness`` is the address of the worker's liveness
    endpoint (:mod:`syftzmq.worker.liveness`): who waits for the worker probes it there.
    """

    id: str
    address: str | None
    incarnation: str
    shm: str | None = field(default=None, compare=False)
    liveness: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"WorkerRef({self.id!r}, {self.address!r})"


@dataclass(frozen=True)
class Ref:
    """Stands, inside a command, for the object stored under ``id`` on the receiving worker,
    or for its attribute ``attr`` (``x.grad``, ``x.data``) when ``attr`` is set."""

    id: int
    attr: str | None = None


@dataclass(frozen=True)
class ChainRef:
    """One hop of a pointer chain: "the object ``id_at_location`` on worker ``location``".

    A worker stores one of these where a client stored a pointer (``ptr.send(alice)``), and
    forwards commands that name it. ``owning`` says whether the holder of this record keeps
    the target alive (deleting an owning record deletes the target, one hop further down).
    ``id`` is the pointer's own id, ``owner`` the process holding the record when that is not
    the receiver (a snapshot), ``attr`` an attribute of the target (``x.grad``).
    """

    location: WorkerRef
    id_at_location: int
    id: int
    meta: TensorMeta | None = None
    owning: bool = True
    owner: WorkerRef | None = None
    attr: str | None = None

    def as_ref(self) -> Ref:
        """How a command names this record's target on the next hop."""
        return Ref(self.id_at_location, self.attr)


def routing_identity(incarnation: str) -> bytes:
    """A fresh ZMQ routing identity for one connection of process ``incarnation``.

    Identities must be unique per connection: a ROUTER ignores a second connection that claims
    an identity it already knows, and a stale reconnecting socket would claim exactly that.
    """
    return f"{incarnation}|{new_id():x}".encode()


def sender_incarnation(identity: bytes) -> str:
    """The process (incarnation) behind a routing identity."""
    return identity.decode(errors="replace").rsplit("|", 1)[0]  # the id may contain "|"

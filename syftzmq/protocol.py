"""The vocabulary of messages: kinds, references and failure records.

A message is a dict with ``kind``, ``req`` (a request id when a reply is wanted, else 0),
``origin`` (the client on whose behalf it travels) and kind-specific fields. Requests travel
DEALER -> ROUTER, replies come back ROUTER -> DEALER on the same connection.

Commands (``CMD``), stores, deletes and ownership hand-offs (``FORK``) are fire-and-forget: the
sender chose every id in advance. Observations (``GET``, ``OBJECTS``, ``INFO``, ``MOVE``,
``FLUSH``) are answered only after the answering worker has flushed everything it forwarded
downstream, so an answer reflects every command issued before it.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass, field

from .ids import new_id

STORE = "store"        # put an object under an id
CMD = "cmd"            # run an operation, store its results under caller-chosen ids
DEL = "del"            # drop ids (cascades through stored pointers)
FORK = "fork"          # ownership of a remote id passes from one process to another
GET = "get"            # return an object and remove it
OBJECTS = "objects"    # snapshot of the store
INFO = "info"          # shape and dtype of an object
MOVE = "move"          # send objects to another worker, delete them here once stored there
FLUSH = "flush"        # answer once everything forwarded so far has been applied
PING = "ping"          # who are you?
SHUTDOWN = "shutdown"  # stop serving
RENEW = "renew"        # the sender is alive: renew the lease on everything it owns here
BATCH = "batch"        # nothing of its own: carries queued messages in ``before``
REPLY = "reply"

OBSERVATIONS = frozenset({GET, OBJECTS, INFO, MOVE, FLUSH, PING, SHUTDOWN})
FIRE_AND_FORGET = frozenset({STORE, CMD, DEL, FORK, RENEW, BATCH})
# Any request may carry ``before``: fire-and-forget messages the sender queued for this worker
# (see :mod:`syftzmq.client.outbox`), applied in order before the request itself.
BEFORE = "before"
BATCHABLE = frozenset({STORE, CMD, DEL, FORK})
# Messages carry ``to``: the incarnation (``WorkerRef.node``) they are meant for. A worker
# restarted under the same id and address is a new incarnation and refuses them.
ADDRESSED_TO = "to"
# Any request may carry ``release``: ids the sender's dead pointers owned on this worker, to be
# deleted before the request is handled (a ``DEL`` riding along instead of a message of its own).
RELEASES = "release"

# The fields each kind of request must carry, and their types.
REQUIRED_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    STORE: {"id": int},
    CMD: {"op": tuple, "args": (tuple, list), "kwargs": dict, "results": list},
    DEL: {"ids": list},
    FORK: {"id": int, "old_owner": str, "new_owner": str},
    GET: {"refs": list},
    INFO: {"ref": object},
    MOVE: {"ids": list, "new_ids": list, "dest": object},
    OBJECTS: {}, FLUSH: {}, PING: {}, SHUTDOWN: {}, RENEW: {}, BATCH: {},
}


def needs_complete_flush(msg: dict) -> bool:
    """Whether observing ``msg`` must also wait for deletes and ownership hand-offs in flight.

    Deletes (``DEL``) and hand-offs (``FORK``) change no answer but a store listing: a
    ``GET``, ``INFO`` or ``MOVE`` only touches objects the requester owns, which no delete of
    someone else's pointer can reach, and neither ever records a failure. So only
    ``OBJECTS`` (and a ``FLUSH`` made on its behalf, marked ``complete``) waits for them; the
    common ``(p + 1).get()`` along a chain then costs no extra round trip for the temporary
    that died.
    """
    return msg.get("kind") == OBJECTS or msg.get("complete") is True


def check_fields(msg: dict) -> None:
    """Raise :class:`ProtocolError` naming the first missing or mistyped field."""
    from .errors import ProtocolError
    fields = REQUIRED_FIELDS.get(msg["kind"])
    if fields is None:
        raise ProtocolError(f"unknown message kind {msg['kind']!r}")
    for name, expected in fields.items():
        value = msg.get(name, _MISSING)
        if value is _MISSING or not isinstance(value, expected):
            if value is _MISSING:
                raise ProtocolError(f"message {msg['kind']!r} lacks field {name!r}")
            raise ProtocolError(f"field {name!r} of message {msg['kind']!r} has type "
                                f"{type(value).__name__}")


_MISSING = object()


@dataclass(frozen=True)
class WorkerRef:
    """How to reach a worker: its id, its address, and its incarnation (``node``).

    ``shm`` names the shared-memory filesystem the worker sees (:func:`syftzmq.wire.shm.namespace`):
    bulk bytes go through ``/dev/shm`` only to a worker on this host that sees the same one.
    """

    id: str
    address: str | None
    node: str
    shm: str | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"WorkerRef({self.id!r}, {self.address!r})"


@dataclass(frozen=True)
class Ref:
    """Stands, inside a command, for the object stored under ``id`` on the receiving worker,
    or for its attribute ``attr`` (``x.grad``, ``x.data``) when ``attr`` is set."""

    id: int
    attr: str | None = None


@dataclass
class Failure:
    """Stored under the result ids of a command that failed; raising it re-raises remotely."""

    type: str
    message: str
    traceback: str
    worker: str
    details: dict | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, worker: str) -> "Failure":
        exc_type = type(exc)
        if isinstance(exc, _remote_error_type()) and getattr(exc, "remote_type", None):
            return cls(exc.remote_type, exc.remote_message, exc.remote_traceback, exc.worker)
        name = f"{exc_type.__module__}.{exc_type.__qualname__}"
        text = "".join(_traceback.format_exception(exc_type, exc, exc.__traceback__))
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        details = None
        if isinstance(exc, _unavailable_type()):
            details = {"unavailable": exc.worker, "address": exc.address, "detail": exc.detail}
        return cls(name, message, text, worker, details)

    def to_exception(self):
        """The exception to raise locally. A peer found dead by a worker raises
        :class:`WorkerUnavailable` naming the dead peer, not the worker that noticed."""
        from .errors import WorkerUnavailable, remote_error
        if self.details and self.details.get("unavailable"):
            return WorkerUnavailable(self.details["unavailable"], self.details.get("address"),
                                     f"{self.details.get('detail', '')} (noticed by {self.worker!r})")
        return remote_error(self.type, self.message, self.traceback, self.worker)

    def __repr__(self) -> str:
        return f"<Failure {self.type.rsplit('.', 1)[-1]} on {self.worker}: {self.message}>"


def _unavailable_type():
    from .errors import WorkerUnavailable
    return WorkerUnavailable


def _remote_error_type():
    from .errors import RemoteError
    return RemoteError


def routing_identity(node: str) -> bytes:
    """A fresh ZMQ routing identity for one connection of process ``node``.

    Identities must be unique per connection: a ROUTER ignores a second connection that claims
    an identity it already knows, and a stale reconnecting socket would claim exactly that.
    """
    return f"{node}|{new_id():x}".encode()


def sender_node(identity: bytes) -> str:
    """The process (incarnation) behind a routing identity."""
    return identity.decode(errors="replace").split("|", 1)[0]


def message(kind: str, *, req: int = 0, origin: str = "", **fields) -> dict:
    """Build a message dict. ``nonce`` makes every message unique, so that two identical
    commands are never mistaken for a replay."""
    return {"kind": kind, "req": req, "origin": origin, "nonce": new_id(), **fields}


def reply(req: int, *, value=None, error: Failure | None = None, failures: list | None = None) -> dict:
    """Build a reply; ``error`` makes it a failed reply, ``failures`` are earlier command errors."""
    return {"kind": REPLY, "req": req, "nonce": new_id(), "value": value, "error": error,
            "failures": failures or []}

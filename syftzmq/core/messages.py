"""The vocabulary of messages: kinds, references and failure records.

A message is a dict with ``kind``, ``req`` (a request id when a reply is wanted, else 0),
``origin`` (the client on whose behalf it travels) and kind-specific fields. Requests travel
DEALER -> ROUTER, replies come back ROUTER -> DEALER on the same connection.

Commands (``CMD``), stores, deletes and ownership hand-offs (``FORK``) are fire-and-forget: the
sender chose every id in advance. Observations (``GET``, ``OBJECTS``, ``INFO``, ``MOVE``,
``FLUSH``, ``SEARCH``, ``CLEAR``) are answered only after the answering worker has flushed
everything it forwarded downstream, so an answer reflects every command issued before it.
"""

from __future__ import annotations

from ..errors import ProtocolError
from .failures import Failure
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
SEARCH = "search"      # records of the tensors matching a query of tags / ids (``query``: AND)
CLEAR = "clear"        # drop every object the requester owns here; answers their ids
MOVE_IN = "move_in"    # a move's objects at its destination: every one stored, or none; one answer
MOVE_OUTCOME = "move_outcome"  # did the move with this id happen? (asked after a wait gave up)
PING = "ping"          # who are you?
SHUTDOWN = "shutdown"  # stop serving
RENEW = "renew"        # the sender is alive: renew the lease on everything it owns here
BATCH = "batch"        # nothing of its own: carries queued messages in ``before``
REPLY = "reply"

# The line a worker process prints on stdout once it serves: this prefix, then JSON with its
# endpoint and incarnation. Its launcher waits for it.
READY_PREFIX = "SYFTZMQ-READY "

OBSERVATIONS = frozenset({GET, OBJECTS, INFO, MOVE, FLUSH, PING, SHUTDOWN, SEARCH, CLEAR,
                          MOVE_OUTCOME})
FIRE_AND_FORGET = frozenset({STORE, MOVE_IN, CMD, DEL, FORK, RENEW, BATCH})
# Any request may carry ``before``: fire-and-forget messages the sender queued for this worker
# (see :mod:`syftzmq.client.outbox`), applied in order before the request itself.
BEFORE = "before"
BATCHABLE = frozenset({STORE, MOVE_IN, CMD, DEL, FORK})
# Messages carry ``to``: the incarnation (``WorkerRef.incarnation``) they are meant for. A worker
# restarted under the same id and address is a new incarnation and refuses them; a worker of
# another id drops them unanswered (a message captured on its way to one worker and replayed to
# another is not answered). Replies name the requester's incarnation the same way. The connect
# probe, sent before the incarnation is known, names "any incarnation of worker X, which I reach
# at this address" (``*X@tcp://...``; ``*@tcp://...`` when the id is not known): see
# :func:`probe_destination`.
ADDRESSED_TO = "to"
ANY_INCARNATION = "*"
# Any request may carry ``release``: ids the sender's dead pointers owned on this worker, to be
# deleted before the request is handled (a ``DEL`` riding along instead of a message of its own).
RELEASES = "release"
# Any request may carry ``confirm``: ids of objects the sender fetched with ``GET`` and received;
# the worker kept them until then (see :mod:`syftzmq.worker.deliveries`).
CONFIRMS = "confirm"

# A ``CMD`` may carry ``ids_at``: the positions in ``args`` of arguments that are object ids
# stored on the receiver, sent as plain ints (a :class:`~syftzmq.core.refs.Ref` costs a
# reduction to pickle and an object to unpickle; an int costs neither). Other positions hold
# values; a ``Ref`` elsewhere (an attribute, a nested or keyword argument) still names an object.
IDS_AT = "ids_at"
# Every message a client sends a worker carries ``seq``: its number among the client's messages
# to that worker (1, 2, ...). A message to a chain holder carries ``after`` (incarnation ->
# seq): what each other worker must have received from this client before what the holder
# forwards applies there; the holder passes it on with what it forwards. See
# :mod:`syftzmq.worker.arrival_order`.
SEQ = "seq"
AFTER = "after"
# A ``GET``'s ``refs`` name its targets: a whole object (taken) by its plain id, an attribute
# (which stays) by a :class:`~syftzmq.core.refs.Ref` (as ``ids_at`` does for commands).
# A client's message to the destination of a move still in flight (from its side) may carry
# ``moves_first``: the ids of those moves. The destination holds it, and the client's later
# messages behind it, until each move's ``MOVE_IN`` (which carries its ``move_id``) was applied
# there, or the client names the move in ``moves_abandoned`` (it failed: what waited runs).
# See :mod:`syftzmq.worker.move_arrivals`.
MOVES_FIRST = "moves_first"
MOVES_ABANDONED = "moves_abandoned"
# A ``STORE`` may name, instead of ``obj``, what a ``GET`` of its sender took and it has not
# confirmed: ``held`` (that object's id; the store consumes it, as a confirmation would) and
# ``requires_grad`` (bool): the parameter is stored again over that copy's data, a new leaf
# without a gradient. The client sends it only for a parameter bitwise equal to what it got.
HELD = "held"
# A ``STORE`` may also carry ``tags`` (a set of str) and ``description`` (a str): the worker
# indexes them for ``SEARCH`` and a ``MOVE`` carries them on. A ``SEARCH`` answers a list of
# records, one dict per match: ``id``, ``meta`` (a TensorMeta), ``tags`` (a sorted list),
# ``description`` and ``owned`` (whether the requester owns the object).

# The fields each kind of request must carry, and their types.
REQUIRED_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    STORE: {"id": int},
    MOVE_IN: {"ids": list, "objs": list, "owners": list, "labels": list},
    CMD: {"op": tuple, "args": (tuple, list), "kwargs": dict, "results": list},
    DEL: {"ids": list},
    FORK: {"id": int, "old_owner": str, "new_owner": str},
    GET: {"refs": list},
    INFO: {"ref": object},
    MOVE: {"ids": list, "new_ids": list, "dest": object},
    SEARCH: {"query": list},
    CLEAR: {},
    MOVE_OUTCOME: {"move_id": int},
    OBJECTS: {}, FLUSH: {}, PING: {}, SHUTDOWN: {}, RENEW: {}, BATCH: {},
}


def probe_destination(worker_id: str | None, address: str) -> str:
    """The ``to`` of a connect probe: any incarnation of ``worker_id`` (any worker, if
    ``None``) reached at ``address``."""
    return f"{ANY_INCARNATION}{worker_id or ''}@{address}"


def check_routing_fields(msg: dict) -> None:
    """Raise :class:`ProtocolError` unless the fields every message may carry have their
    types: ``req`` an int, ``origin`` and ``to`` strings (before anything uses them as keys)."""
    req = msg.get("req", 0)
    if type(req) is not int:
        raise ProtocolError(f"field 'req' must be an int, got {type(req).__name__}")
    if type(msg.get("origin", "")) is not str or type(msg.get(ADDRESSED_TO, "")) is not str:
        for name in ("origin", ADDRESSED_TO):
            value = msg.get(name, "")
            if type(value) is not str:
                raise ProtocolError(f"field {name!r} must be a string, got "
                                    f"{type(value).__name__}")


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
    kind = msg["kind"]
    if kind == CMD:  # the most frequent message, checked in one expression (else: below, by name)
        args = msg.get("args")
        if type(msg.get("op")) is tuple and (type(args) is tuple or type(args) is list) \
                and type(msg.get("kwargs")) is dict and type(msg.get("results")) is list:
            return
    elif kind == GET:  # the most frequent observation, likewise
        if type(msg.get("refs")) is list:
            return
    fields = REQUIRED_FIELDS.get(kind)
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


def message(kind: str, *, req: int = 0, origin: str = "", unique: bool = True, **fields) -> dict:
    """Build a message dict. ``nonce`` makes every message unique, so that two identical
    commands are never mistaken for a replay. ``unique=False`` leaves it out, for a client's
    message to a worker, which is unique without it: it leaves numbered (``seq``, see
    :mod:`syftzmq.client.sending`) or inside one that is (``before``)."""
    if unique:
        return {"kind": kind, "req": req, "origin": origin, "nonce": new_id(), **fields}
    return {"kind": kind, "req": req, "origin": origin, **fields}


def reply(req: int, *, value=None, error: Failure | None = None, failures: list | None = None) -> dict:
    """Build a reply; ``error`` makes it a failed reply, ``failures`` are earlier command errors."""
    return {"kind": REPLY, "req": req, "nonce": new_id(), "value": value, "error": error,
            "failures": failures or []}

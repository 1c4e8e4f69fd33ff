"""Every exception a user of syftzmq can meet, in one place.

Remote failures come back as data (type name, message, traceback) and are re-raised here as a
class that is both a :class:`RemoteError` and, where the remote type is a builtin exception, an
instance of that builtin: ``pytest.raises(RuntimeError)`` works on a remote ``RuntimeError``.
"""

from __future__ import annotations

import sys
from functools import lru_cache


class SyftZmqError(Exception):
    """Base class of everything syftzmq raises on its own account."""


class WorkerUnavailable(SyftZmqError, TimeoutError):
    """A worker is dead as far as this process can tell: killed, frozen, unreachable (it
    answered no liveness probe for the liveness deadline), or it cannot be reached at all."""

    def __init__(self, worker: str, address: str | None, detail: str = "") -> None:
        self.worker = worker
        self.address = address
        self.detail = detail
        where = f" at {address}" if address else ""
        super().__init__(f"worker {worker!r}{where} is unavailable" + (f": {detail}" if detail else ""))


class WorkerTimeout(SyftZmqError, TimeoutError):
    """A call bounded by the user (``timeout=``, ``sy.set_timeout``) ran out while the worker
    was alive and still working on it. Not a :class:`WorkerUnavailable`: nothing is wrong with
    the worker; wait longer (a larger bound, or none) or ask for less."""

    def __init__(self, worker: str, address: str | None, seconds: float, detail: str = "") -> None:
        self.worker = worker
        self.address = address
        self.seconds = seconds
        self.detail = detail
        where = f" at {address}" if address else ""
        super().__init__(f"worker {worker!r}{where} gave no answer within {seconds:.1f} s"
                         + (f"; {detail}" if detail else ""))


class WorkerShutDown(WorkerUnavailable):
    """The worker was shut down by this client (``worker.shutdown()``): anything sent to it,
    any operation on its pointers and any observation raises this at once, without waiting."""

    def __init__(self, worker: str, address: str | None) -> None:
        super().__init__(worker, address, "it was shut down (shutdown() was called); its objects "
                                          "are gone. Start a new worker to go on")


class NotConnected(WorkerUnavailable):
    """A connection to a worker could not be made, with the likely cause and the fix: nothing
    listening, a CURVE mismatch, an unauthorized client key, a key the worker rejects."""


class StaleIncarnationError(SyftZmqError, LookupError):
    """A message or pointer names an earlier incarnation of a worker that has since restarted:
    the objects it referred to died with that process."""


class ObjectGoneError(SyftZmqError):
    """A pointer is used after its data was fetched with ``.get()`` (or handed on)."""


class WorkerMismatchError(SyftZmqError, ValueError):
    """One operation names pointers on different workers; nothing was sent."""


class ProtocolError(SyftZmqError):
    """A message does not follow the wire format (wrong frames, version, sizes or signature)."""


class MessageTooLarge(ProtocolError):
    """A message is larger than its receiver accepts; nothing was sent (or, for a reply, the
    worker said so instead of answering). ``size`` and ``limit`` are in bytes."""

    def __init__(self, what: str, size: int, limit: int, fix: str = "") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes ({size / 2**30:.2f} GiB) exceeds the limit of "
                         f"{limit} bytes ({limit / 2**30:.2f} GiB)" + (f": {fix}" if fix else ""))


class WorkerIdMismatch(SyftZmqError, ValueError):
    """The worker at an address is not the one the client asked for."""


class OperationRefused(SyftZmqError, PermissionError):
    """A worker refuses an operation: in safe mode, anything that is not an allowed, named
    torch operation; anywhere, an operation the worker cannot run honestly."""


class RefusedByPolicy(ProtocolError):
    """A safe worker refused to unpickle a global outside its allow-list."""


class IdCollisionError(SyftZmqError, KeyError):
    """An object already lives under this id; it is never overwritten silently."""


class InvalidTensorForRemoteGet(SyftZmqError, TypeError):
    """``remote_get()`` was called on a pointer to data; it needs a chain (me -> alice -> bob)."""


class NeedsGetError(SyftZmqError, TypeError):
    """An operation would produce a plain Python value, which a pointer cannot hold."""


class RemoteError(SyftZmqError):
    """An exception raised on a worker, carried back as data.

    ``remote_type`` is the qualified name of the exception type on the worker,
    ``remote_message`` its message and ``remote_traceback`` the formatted remote traceback.
    """

    remote_type: str = "Exception"
    remote_message: str = ""
    remote_traceback: str = ""
    worker: str = ""

    def __str__(self) -> str:
        where = f" on worker {self.worker!r}" if self.worker else ""
        text = f"{self.remote_type}{where}: {self.remote_message}"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback
        return text


@lru_cache(maxsize=None)
def _remote_error_class(remote_type: str) -> type[RemoteError]:
    """A RemoteError subclass that is also the remote exception's own type where possible.

    The type is looked up among modules this process has *already* imported (nothing is
    imported on a remote's say-so); if it is unknown or cannot be combined, the nearest
    combinable base class on its MRO is used, down to plain :class:`RemoteError`.
    """
    module_name, _, qualname = remote_type.rpartition(".")
    found: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        return RemoteError
    for base in found.__mro__:
        if base is Exception or not issubclass(base, Exception):
            break
        if issubclass(base, RemoteError):
            return base
        try:
            return type(f"Remote{base.__name__}", (RemoteError, base),
                        {"__module__": __name__, "__init__": Exception.__init__,
                         "__str__": RemoteError.__str__})
        except TypeError:  # incompatible instance layouts
            continue
    return RemoteError


class ObjectNotFoundError(SyftZmqError, KeyError):
    """A worker holds no object under the requested id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


def remote_error(remote_type: str, message: str, traceback: str, worker: str = "") -> RemoteError:
    """Build the exception to raise locally for a failure described by a worker."""
    cls = _remote_error_class(remote_type)
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.remote_type = remote_type
    err.remote_message = message
    err.remote_traceback = traceback
    err.worker = worker
    return err

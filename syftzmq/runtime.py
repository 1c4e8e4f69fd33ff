"""Who this process is: its own :class:`WorkerRef` and, on a client, its session.

Pointers rebuilt from a message take their ``owner`` from here. On a worker process there is no
session: stored pointers are records whose lifetime the worker's store manages explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .protocol import WorkerRef

if TYPE_CHECKING:
    from .client.session import ClientSession


@dataclass
class LocalContext:
    ref: WorkerRef
    session: "ClientSession | None" = None


_current: LocalContext | None = None


def set_current(context: LocalContext) -> None:
    global _current
    _current = context


def current() -> LocalContext:
    """This process's context; on first use in a client, the client session is created."""
    if _current is None:
        from .client.session import default_session
        default_session()
    assert _current is not None  # set by default_session(); internal invariant, not input
    return _current


def current_session() -> Any:
    return current().session

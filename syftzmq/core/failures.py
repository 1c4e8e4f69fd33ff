"""A failure as data: what a worker stores under the result ids of a command that failed, and
sends back in a failed reply. The one place that turns an exception into a record and back."""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass

from ..errors import RemoteError, WorkerUnavailable, remote_error


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
        if isinstance(exc, RemoteError) and getattr(exc, "remote_type", None):
            return cls(exc.remote_type, exc.remote_message, exc.remote_traceback, exc.worker)
        name = f"{exc_type.__module__}.{exc_type.__qualname__}"
        text = "".join(_traceback.format_exception(exc_type, exc, exc.__traceback__))
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        details = None
        if isinstance(exc, WorkerUnavailable):
            details = {"unavailable": exc.worker, "address": exc.address, "detail": exc.detail}
        return cls(name, message, text, worker, details)

    def to_exception(self) -> Exception:
        """The exception to raise locally. A peer found dead by a worker raises
        :class:`WorkerUnavailable` naming the dead peer, not the worker that noticed."""
        if self.details and self.details.get("unavailable"):
            return WorkerUnavailable(self.details["unavailable"], self.details.get("address"),
                                     f"{self.details.get('detail', '')} (noticed by {self.worker!r})")
        return remote_error(self.type, self.message, self.traceback, self.worker)

    def __repr__(self) -> str:
        return f"<Failure {self.type.rsplit('.', 1)[-1]} on {self.worker}: {self.message}>"

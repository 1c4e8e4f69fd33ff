"""The worker's failure record: what went wrong for each client, kept until that client looks.

Commands are fire-and-forget, so a command that fails has nobody to answer. Its failure is
recorded under the command's *origin* (the client it was issued for) and surfaces at that
client's next observation: the observation is answered with a failed reply that carries every
recorded failure, and the record of that origin is emptied (popped at observation). A client
never sees another client's failures, and a silent client cannot grow the record without bound:
at most :data:`MAX_FAILURES_KEPT` per origin and :data:`MAX_ORIGINS_WITH_FAILURES` origins are
kept (the oldest origin's reports go first).

This module is also the one place that turns a stored failure into something a requester
meets: :func:`raise_if_failed` (a stored failure read by a handler raises its exception) and
:meth:`FailureRecord.failed_reply` / :meth:`FailureRecord.report` (a failure becomes a failed
reply, or waits in the record for the next observation).
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.failures import Failure
from ..core.messages import reply

log = logging.getLogger("syftzmq.worker")

MAX_FAILURES_KEPT = 100
MAX_ORIGINS_WITH_FAILURES = 1024


def raise_if_failed(obj: Any) -> Any:
    """``obj``, unless it is the stored failure of an earlier command: then its exception."""
    if isinstance(obj, Failure):
        raise obj.to_exception()
    return obj


class FailureRecord:
    """Failures by origin, bounded, popped when their origin observes."""

    def __init__(self, worker_id: str, per_origin: int = MAX_FAILURES_KEPT,
                 origins: int = MAX_ORIGINS_WITH_FAILURES) -> None:
        self.worker_id = worker_id
        self._per_origin = per_origin
        self._origins = origins
        self._by_origin: dict[str, list[Failure]] = {}

    def __len__(self) -> int:
        """How many origins have failures waiting."""
        return len(self._by_origin)

    def failure(self, exc: BaseException) -> Failure:
        """``exc`` as a record of this worker."""
        return Failure.from_exception(exc, self.worker_id)

    def record(self, origin: str, failure: Failure) -> None:
        """Keep ``failure`` for ``origin``'s next observation."""
        if origin not in self._by_origin and len(self._by_origin) >= self._origins:
            self._by_origin.pop(next(iter(self._by_origin)))  # the oldest origin's reports go
        kept = self._by_origin.setdefault(origin, [])
        if len(kept) < self._per_origin:
            kept.append(failure)

    def forget(self, origin: str) -> None:
        """``origin`` is gone (its lease expired): nobody will observe its failures."""
        self._by_origin.pop(origin, None)

    def failed_reply(self, req: int, origin: str) -> dict | None:
        """The failed reply to ``origin``'s observation ``req`` if failures wait for it
        (they are popped), else ``None``: the observation may go ahead."""
        failures = self._by_origin.pop(origin, None)
        if not failures:
            return None
        return reply(req, error=failures[0], failures=failures[1:])

    def error_reply(self, req: int, exc: BaseException) -> dict:
        """The failed reply to request ``req``, which raised ``exc``."""
        return reply(req, error=self.failure(exc))

    def report(self, msg: dict, exc: BaseException) -> dict | None:
        """A request failed: returns the failed reply if one is awaited (``req``), else records
        the failure for the origin's next observation and returns ``None``."""
        failure = self.failure(exc)
        log.info("request %s failed: %s", msg.get("kind"), failure.message)
        if msg.get("req"):
            return reply(msg["req"], error=failure)
        self.record(msg.get("origin", ""), failure)
        return None

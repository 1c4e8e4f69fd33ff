"""Rejection notices: the worker tells a sender whose message it dropped at the envelope why
(see :mod:`syftzmq.wire.notice` for the format and why it may be unsigned).

Sent without blocking and at most :data:`NOTICES_PER_SECOND` a second in all, in bursts of as
many (:class:`~syftzmq.worker.ratelimit.TokenBucket`), so a flood of bad messages gets a trickle
of small answers; a notice that cannot be sent is simply not sent.
"""

from __future__ import annotations

import zmq

from ..wire.notice import encode_notice
from .ratelimit import TokenBucket

NOTICES_PER_SECOND = 20.0


class Notices:
    """Sends rejection notices on a worker's ROUTER (from the loop's thread only)."""

    def __init__(self, router: zmq.Socket, per_second: float = NOTICES_PER_SECOND) -> None:
        self._router = router
        self._allowance = TokenBucket(per_second)
        self.sent = 0

    def rejected(self, identity: bytes, reason: str, detail: str) -> None:
        if not self._allowance.take():
            return
        try:
            self._router.send_multipart([identity, encode_notice(reason, detail)], zmq.NOBLOCK)
            self.sent += 1
        except zmq.ZMQError:  # the sender is gone or does not read: nothing to tell
            pass

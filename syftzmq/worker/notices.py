"""Rejection notices: the worker tells a sender whose message it dropped at the envelope why
(see :mod:`syftzmq.wire.notice` for the format and why it may be unsigned).

Sent without blocking and at most :data:`NOTICES_PER_SECOND` a second in all (a token bucket),
so a flood of bad messages gets a trickle of small answers; a notice that cannot be sent is
simply not sent.
"""

from __future__ import annotations

import time

import zmq

from ..wire.notice import encode_notice

NOTICES_PER_SECOND = 20.0


class Notices:
    """Sends rejection notices on a worker's ROUTER (from the loop's thread only)."""

    def __init__(self, router: zmq.Socket, per_second: float = NOTICES_PER_SECOND) -> None:
        self._router = router
        self._rate = per_second
        self._budget = per_second
        self._last = time.monotonic()
        self.sent = 0

    def rejected(self, identity: bytes, reason: str, detail: str) -> None:
        now = time.monotonic()
        self._budget = min(self._rate, self._budget + (now - self._last) * self._rate)
        self._last = now
        if self._budget < 1:
            return
        self._budget -= 1
        try:
            self._router.send_multipart([identity, encode_notice(reason, detail)], zmq.NOBLOCK)
            self.sent += 1
        except zmq.ZMQError:  # the sender is gone or does not read: nothing to tell
            pass

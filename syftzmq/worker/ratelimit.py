"""A token bucket: what a flood of bad messages may cost a worker in log lines and notices.

Both the log of rejected messages (:mod:`syftzmq.worker.rejects`) and the rejection notices
(:mod:`syftzmq.worker.notices`) answer every bad message only while the bucket has a token.
It holds at most ``rate`` tokens and refills at ``rate`` a second, so over any long stretch at
most ``rate`` events a second pass, and a quiet spell saves up one second's worth, no more
(a window of one second can therefore see up to twice ``rate``: a full bucket, then its refill).
"""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` events a second, in bursts of at most ``rate``; one loop thread uses it."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> bool:
        """Spend a token if there is one; whether the event may happen."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

"""Counting and logging what a worker refuses, without letting a flood fill the log.

Every dropped or refused message increments a counter by reason (readable through ``PING``);
the log gets one line per rejection, up to a few per second, then a summary of how many lines
were suppressed — a fuzzer or an attacker cannot turn the log into the denial of service.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger("syftzmq.worker")


class Rejections:
    """Counters by reason, and a rate-limited log of rejected messages."""

    def __init__(self, lines_per_second: float = 10.0) -> None:
        self.by_reason: Counter[str] = Counter()
        self._budget = lines_per_second
        self._rate = lines_per_second
        self._last = time.monotonic()
        self._suppressed = 0

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def record(self, reason: str, sender: bytes, detail: str) -> None:
        self.by_reason[reason] += 1
        now = time.monotonic()
        self._budget = min(self._rate, self._budget + (now - self._last) * self._rate)
        self._last = now
        if self._budget < 1:
            self._suppressed += 1
            return
        self._budget -= 1
        if self._suppressed:
            log.warning("(%d more rejected messages were not logged)", self._suppressed)
            self._suppressed = 0
        log.warning("rejected a message from %r (%s): %s", sender[:64], reason, detail[:300])


def reason_of(text: str) -> str:
    """A short counter name for a :class:`ProtocolError` message."""
    for key, reason in (("dropped unread", "oversized"), ("unsigned", "unsigned"), ("bad signature", "bad_signature"),
                        ("replayed", "replayed"), ("signed message received", "unexpected_signature"),
                        ("protocol", "wrong_protocol"), ("frames", "bad_frames"),
                        ("exceeds", "too_large"), ("safe mode", "refused_by_policy"),
                        ("deserialize", "undecodable"), ("needs", "bad_tensor")):
        if key in text:
            return reason
    return "malformed"

"""Counting and logging what a worker refuses, without letting a flood fill the log.

Every dropped or refused message increments a counter by reason (readable through ``PING``);
the log gets one line per rejection, about ten a second (:class:`~syftzmq.worker.ratelimit.TokenBucket`),
then a summary of how many lines were suppressed — a fuzzer or an attacker cannot turn the log
into the denial of service. The summary is written before the next logged line, or by
:meth:`Rejections.flush` (the loop calls it) when a flood stopped and no line follows.
"""

from __future__ import annotations

import logging
from collections import Counter

from .ratelimit import TokenBucket

log = logging.getLogger("syftzmq.worker")


class Rejections:
    """Counters by reason, and a rate-limited log of rejected messages."""

    def __init__(self, lines_per_second: float = 10.0) -> None:
        self.by_reason: Counter[str] = Counter()
        self._lines = TokenBucket(lines_per_second)
        self._suppressed = 0

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    @property
    def owes_summary(self) -> bool:
        """Whether lines were suppressed and their summary is not written yet."""
        return self._suppressed > 0

    def record(self, reason: str, sender: bytes, detail: str) -> None:
        self.by_reason[reason] += 1
        if not self._lines.take():
            self._suppressed += 1
            return
        self._write_summary()
        log.warning("rejected a message from %r (%s): %s", sender[:64], reason, detail[:300])

    def flush(self) -> None:
        """Write the summary a flood that stopped still owes, once the log may take a line."""
        if self._suppressed and self._lines.take():
            self._write_summary()

    def _write_summary(self) -> None:
        if self._suppressed:
            log.warning("(%d more rejected messages were not logged)", self._suppressed)
            self._suppressed = 0


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

"""What this client put on the wire, counted where it happens (``sy.stats()`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    """Counters of what this client put on the wire: messages sent and blocking round trips,
    and the liveness probes sent (and answered) while round trips waited long."""

    messages_sent: int = 0
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    liveness_probes: int = 0
    liveness_answers: int = 0

    def snapshot(self) -> "Stats":
        return Stats(**vars(self))

    def __sub__(self, other: "Stats") -> "Stats":
        return Stats(**{name: value - getattr(other, name) for name, value in vars(self).items()})

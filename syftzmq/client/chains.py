"""Which workers may forward this client's work to other workers: the chain holders.

A worker that stores a pointer this client put there (``x.send(alice).send(bob)``: bob holds a
record pointing into alice) forwards every command that names it. What it forwards must reach
alice *after* what this client queued for alice itself, so before anything goes to a chain
holder every other queue leaves first (see :class:`syftzmq.client.sending.Sender`), and the
message says how many messages each other worker was sent, so that alice holds back a forward
that overtook them on the way (:mod:`syftzmq.worker.arrival_order`). That costs
a flush of the other queues per message, so a worker is a chain holder only while it has a
reason to be: this client still has, stored there, a record or something computed from one.

The registry therefore counts *targets*, not workers: per worker, the ids of this client's
objects there that are (or may be) pointer records. A worker is a holder while that set is not
empty. Ids enter when this client stores a pointer, when a command on a chain target stores its
results next to it, when a chain target moves, and when a fetched chain hop comes back as an
owning pointer (its target may be a record too; we cannot tell, so we assume it is). They leave
when the pointer is released, fetched (``GET`` removes the target), handed on (``send``: the
record now belongs to the next holder, which is the one this client talks to), or moved away.
"""

from __future__ import annotations

from typing import Iterable


class ChainHolders:
    """Per worker incarnation, the ids of this client's chain targets there.

    Not locked itself: the session calls it under its lock.
    """

    def __init__(self) -> None:
        self._targets: dict[str, set[int]] = {}

    def stored(self, incarnation: str, object_ids: Iterable[int]) -> None:
        """``object_ids`` on ``incarnation`` are (or may be) pointer records of this client."""
        ids = set(object_ids)
        if ids:
            self._targets.setdefault(incarnation, set()).update(ids)

    def released(self, incarnation: str, object_ids: Iterable[int]) -> None:
        """These targets are gone from ``incarnation`` (released, fetched, handed on, moved)."""
        targets = self._targets.get(incarnation)
        if targets is None:
            return
        targets.difference_update(object_ids)
        if not targets:
            del self._targets[incarnation]

    def moved(self, source: str, object_ids: list[int], dest: str, new_ids: list[int]) -> None:
        """Objects moved from ``source`` to ``dest``: a chain target stays one at its new place."""
        targets = self._targets.get(source, ())
        chained = [(old, new) for old, new in zip(object_ids, new_ids) if old in targets]
        self.stored(dest, (new for _, new in chained))
        self.released(source, (old for old, _ in chained))

    def is_chain(self, incarnation: str, object_id: int) -> bool:
        return object_id in self._targets.get(incarnation, ())

    def forget(self, incarnation: str) -> None:
        """The worker is gone: nothing of ours is stored there any more."""
        self._targets.pop(incarnation, None)

    def incarnations(self) -> set[str]:
        return set(self._targets)

    def __contains__(self, incarnation: object) -> bool:
        return incarnation in self._targets

    def __len__(self) -> int:
        return len(self._targets)

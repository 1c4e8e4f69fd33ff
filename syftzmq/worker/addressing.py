"""Is this message for this worker? The ``to`` field of a verified message, judged.

Every message a syftzmq process sends names its destination in its signed header (``to``, see
:data:`syftzmq.core.messages.ADDRESSED_TO`): the incarnation it is meant for, or, for the
connect probe sent before any incarnation is known, ``*<id>@<address>``: any incarnation of
worker ``<id>`` (of any id, if empty), reached at ``<address>``. So a message captured on its
way to one worker and replayed to another is refused by the other, although its replay window
has never seen it.

The outcomes: :data:`MINE`; :data:`STALE`, meant for an earlier incarnation of this worker (an
observation is answered with :class:`~syftzmq.errors.StaleIncarnationError`, so that a client
that missed a restart learns of it); :data:`WRONG_ID`, a probe for another worker id at an
address this worker serves (answered with an error naming both ids: the user gave the wrong
address or id); :data:`ELSEWHERE`, meant for another worker (dropped unanswered and counted as
rejected, reason ``misaddressed``). A message with no ``to`` at all is accepted: every syftzmq
sender names one, so such a message was made by hand by a key holder, never captured from
anyone.
"""

from __future__ import annotations

from ..core.messages import ANY_INCARNATION
from ..core.refs import WorkerRef

MINE, STALE, WRONG_ID, ELSEWHERE = "mine", "stale", "wrong id", "elsewhere"


class Addressing:
    """Judges the ``to`` of messages for the worker ``me``, bound at ``endpoint``."""

    def __init__(self, me: WorkerRef, endpoint: str) -> None:
        self.me = me
        self.endpoint = endpoint

    def judge(self, to: str | None) -> str:
        if to is None or to == self.me.incarnation:
            return MINE
        if to.startswith(ANY_INCARNATION):
            wanted_id, _, address = to[len(ANY_INCARNATION):].partition("@")
            if wanted_id == self.me.id:
                return MINE
            if not self.serves(address):
                return ELSEWHERE
            return WRONG_ID if wanted_id else MINE
        worker_id = to.rpartition("#")[0]
        return STALE if worker_id == self.me.id else ELSEWHERE

    def serves(self, address: str) -> bool:
        """Whether ``address`` names this worker: its advertised address or its endpoint, or a
        ``tcp://`` address with its port (the host part has many spellings: ``localhost``,
        ``127.0.0.1``, a name, the address of one interface of a worker bound to all)."""
        if address in (self.me.address, self.endpoint):
            return True
        if not (address.startswith("tcp://") and self.endpoint.startswith("tcp://")):
            return False
        return address.rpartition(":")[2] == self.endpoint.rpartition(":")[2]

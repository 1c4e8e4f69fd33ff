"""Requesters on this host, which get bulk reply bytes through ``/dev/shm``, and the clean-up
after those that went away.

A requester says it shares this host (``shm`` in its requests); its replies' large buffers are
then written into shared-memory segments tagged with its routing identity
(:mod:`syftzmq.wire.shm`). A requester killed after the reply left but before it opened the
segments never takes them, and nobody else will. So, periodically (:meth:`housekeeping`), the
worker asks ZeroMQ whether each requester with segments still waiting is connected, by sending
it an empty reply (``req`` 0, which every client ignores): a requester that is gone makes the
ROUTER refuse it (``ROUTER_MANDATORY``), and its segments are discarded. The same pass expires
this worker's own segments that nobody took in time, and removes segments whose creator
process no longer exists.

At most :data:`MAX_REQUESTERS` identities are remembered (the oldest is forgotten first: its
replies then travel as frames, which always works).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable

from ..wire import shm

log = logging.getLogger("syftzmq.worker")

MAX_REQUESTERS = 4096
HOUSEKEEPING_SECONDS = 1.0  # how often the pass runs
UNTAKEN_SECONDS = 1.0  # segments waiting this long make their requester worth asking about
ORPHAN_SWEEP_SECONDS = 10.0  # how often the directory is searched for dead creators' segments


class SharedMemoryRequesters:
    """Which requesters share this host, and the periodic clean-up of their segments."""

    def __init__(self, max_requesters: int = MAX_REQUESTERS) -> None:
        self._identities: OrderedDict[bytes, None] = OrderedDict()
        self._max = max_requesters
        self.next_pass = time.monotonic() + HOUSEKEEPING_SECONDS
        self._next_orphan_sweep = time.monotonic()
        self.discarded_for_gone = 0

    def note(self, identity: bytes, msg: dict) -> None:
        """``msg`` came from ``identity``: remember it if it says it shares this host."""
        if msg.get("shm") is True and identity not in self._identities and shm.enabled():
            while len(self._identities) >= self._max:
                self._identities.popitem(last=False)
            self._identities[identity] = None

    def __contains__(self, identity: bytes) -> bool:
        return identity in self._identities

    def housekeeping(self, now: float, connected: Callable[[bytes], bool]) -> None:
        """Run the clean-up pass if due. ``connected(identity)`` says whether a requester is
        still connected (and may send it something harmless to find out)."""
        if now < self.next_pass:
            return
        self.next_pass = now + HOUSEKEEPING_SECONDS
        shm.expire_own()
        for tag in shm.pending_tags(UNTAKEN_SECONDS, now):
            if isinstance(tag, bytes) and not connected(tag):
                shm.discard_tagged(tag)
                self._identities.pop(tag, None)
                self.discarded_for_gone += 1
                log.info("requester %r is gone: discarded the segments it never took", tag[:64])
        if now >= self._next_orphan_sweep:
            self._next_orphan_sweep = now + ORPHAN_SWEEP_SECONDS
            shm.sweep_orphans()

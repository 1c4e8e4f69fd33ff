"""``sy.TorchHook(torch, verbose=True)``: print one line per message this client sends.

PySyft's verbose hook printed every message its workers received. Here a message is what
actually leaves on the wire, and a batch carries several commands (see
:mod:`syftzmq.client.outbox`), so a line names the message's kind, its worker, and the kinds of
what it carries: ``syftzmq: me -> bob: get, carrying cmd x2, store; 1 delete``. It costs nothing
while off (the sender tests one attribute) and one ``print`` per message while on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, TextIO

from ..core.messages import BEFORE, RELEASES
from ..core.refs import WorkerRef


def describe_sent(location: WorkerRef, msg: dict) -> str:
    """The line printed for ``msg`` sent to ``location``."""
    line = f"syftzmq: me -> {location.id}: {msg.get('kind')}"
    carried = Counter(inner.get("kind") for inner in msg.get(BEFORE) or () if isinstance(inner, dict))
    if carried:
        line += ", carrying " + ", ".join(kind if count == 1 else f"{kind} x{count}"
                                          for kind, count in carried.items())
    releases = len(msg.get(RELEASES) or ())
    if releases:
        line += f"; {releases} delete" + ("s" if releases > 1 else "")
    return line


def printer(stream: TextIO | None = None) -> Callable[[WorkerRef, dict], Any]:
    """What the sender calls after each message when verbose: prints :func:`describe_sent`."""
    def on_sent(location: WorkerRef, msg: dict) -> None:
        print(describe_sent(location, msg), file=stream, flush=True)
    return on_sent

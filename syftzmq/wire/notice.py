"""The one unsigned thing a worker sends: a *rejection notice*, telling a peer that its message
was dropped at the envelope, and why.

A message that fails at the envelope (bad or missing signature, unknown protocol version, too
large) is not authenticated, so nobody is owed an answer, and until now nobody got one: a
client with the wrong key waited out its deadline and was told "no answer". A notice names the
reason instead, so the client can say what to fix within a round trip.

Why an unauthenticated notice is acceptable:

- it leaks nothing secret: it repeats what the sender got wrong (the reason, the sizes, the
  protocol versions) to the connection that sent it, and that a syftzmq worker listens here
  (which the protocol frame already tells anyone who connects);
- it carries no data and causes no action beyond ending a wait with a diagnostic error; a
  forged notice can do no more than an attacker who can already inject into the connection
  (who could simply drop its packets). With CURVE nobody can inject at all;
- it is small and sent at most a few times a second per worker (see
  :mod:`syftzmq.worker.notices`), so it cannot amplify a flood.

Format: one frame, :data:`NOTICE_PREFIX` followed by JSON ``{"reason": ..., "detail": ...}``.
"""

from __future__ import annotations

import json

NOTICE_PREFIX = b"syftzmq/notice "
MAX_NOTICE_BYTES = 1024


def encode_notice(reason: str, detail: str) -> bytes:
    body = json.dumps({"reason": reason[:64], "detail": detail[:512]}).encode()
    return NOTICE_PREFIX + body


def decode_notice(frames) -> dict | None:
    """The notice in ``frames`` (as received, routing frames removed), or ``None`` if they are
    not one."""
    if len(frames) != 1:
        return None
    frame = frames[0]
    view = frame.buffer if hasattr(frame, "buffer") else memoryview(frame)
    if view.nbytes > MAX_NOTICE_BYTES or bytes(view[:len(NOTICE_PREFIX)]) != NOTICE_PREFIX:
        return None  # (checked on a view: a large one-frame message is not copied)
    data = bytes(view)
    try:
        notice = json.loads(data[len(NOTICE_PREFIX):])
    except (ValueError, RecursionError):  # (the latter: nested too deep for the parser)
        return None
    if not isinstance(notice, dict) or not isinstance(notice.get("reason"), str):
        return None
    return {"reason": notice["reason"], "detail": str(notice.get("detail", ""))}

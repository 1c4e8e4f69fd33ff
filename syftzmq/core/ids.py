"""Object and request ids that cannot collide across processes.

An id is ``(process tag << 32) | counter``: the tag is 31 random bits drawn once per process (and
again after ``fork``), the counter never repeats within the process. Two processes collide only
if they draw the same tag; even then a worker refuses to overwrite an existing id, loudly.
"""

from __future__ import annotations

import itertools
import os
import secrets

_tag = secrets.randbits(31) | 1
_counter = itertools.count(1)


def _reseed() -> None:
    global _tag, _counter
    _tag = secrets.randbits(31) | 1
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_id() -> int:
    """A fresh id, unique within this process and practically unique across processes."""
    return (_tag << 32) | (next(_counter) & 0xFFFFFFFF)


def new_token(nbytes: int = 4) -> str:
    """A short random hex token, used to name process incarnations."""
    return secrets.token_hex(nbytes)

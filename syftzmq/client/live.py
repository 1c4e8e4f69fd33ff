"""The pointers a session has handed out that are still alive, held weakly, by id.

The session needs them only rarely (at exit, to release what they own; to know which workers
they point into; when a worker's gradients become uncertain), but registers one per operation.
``weakref.WeakValueDictionary`` costs about a microsecond and a half per pointer in Python code
(a keyed reference built in Python on insert, a Python callback on death). Here an insert is
one ``weakref.ref`` without callback; dead entries stay until the table has doubled since the
last prune, which removes them in place, so the cost per insert stays constant.

Thread safety: inserts and prunes touch only their own keys (ids are never reused), and
:meth:`values` copies the table in one step under the GIL, so a pointer created or dying on
another thread at the same time is never lost or double-counted.
"""

from __future__ import annotations

import weakref
from typing import Any

MIN_PRUNE = 1024  # entries before the first prune


class LivePointers:
    """``id -> pointer`` for the pointers still alive (a subset of ``WeakValueDictionary``)."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}
        self._prune_at = MIN_PRUNE

    def __setitem__(self, object_id: int, pointer: Any) -> None:
        self._refs[object_id] = weakref.ref(pointer)
        if len(self._refs) >= self._prune_at:
            self._prune()

    def _prune(self) -> None:
        refs = self._refs
        for object_id, ref in list(refs.items()):
            if ref() is None:
                refs.pop(object_id, None)
        self._prune_at = max(MIN_PRUNE, 2 * len(refs))

    def values(self) -> list[Any]:
        """The pointers alive now."""
        return [pointer for ref in list(self._refs.values()) if (pointer := ref()) is not None]

    def __len__(self) -> int:
        return len(self.values())

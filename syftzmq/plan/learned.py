"""The client's table of plan templates stored on workers for replay, and how long each lives.

A stored template (:class:`~syftzmq.plan.runner.LearnedCall`) is an object in the worker's
store like any other, so it shows in ``worker._objects`` and counts in ``object_count()``. It
must not outlive the data it serves: a test (or a user) that drops every pointer of a training
loop expects the workers' stores to empty. So a template lives while some remote operand of a
call that used it lives (a batch, a parameter), and while its plan lives; when the last of them
is garbage collected its pointer dies here and the worker deletes it, like any object whose
pointer is gone. A later call stores it again.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Hashable, Sequence

KEPT = 64  # templates one plan keeps stored (the oldest is deleted beyond)


class _Entry:
    __slots__ = ("stored", "keepers")

    def __init__(self, stored: Any) -> None:
        self.stored = stored                             # the pointer to the stored template
        self.keepers: dict[int, weakref.ref] = {}        # id(operand) -> weak reference to it


class LearnedTemplates:
    """Stored templates by key, each kept alive by the operands of the calls that used it."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, operands: Sequence[Any]) -> Any:
        """The pointer to the template stored under ``key`` (``operands`` now keep it), or
        ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        self._keep(key, entry, operands)
        return entry.stored

    def add(self, key: Hashable, stored: Any, operands: Sequence[Any]) -> None:
        entry = _Entry(stored)
        self._entries[key] = entry
        self._keep(key, entry, operands)
        while len(self._entries) > KEPT:
            self._entries.popitem(last=False)  # its pointer dies: the stored copy is deleted

    def clear(self) -> None:
        self._entries.clear()

    def _keep(self, key: Hashable, entry: _Entry, operands: Sequence[Any]) -> None:
        keepers = entry.keepers
        if len(keepers) == len(operands) and all(id(op) in keepers for op in operands):
            return  # (a training loop's usual call: the same operands as the last one)
        table = weakref.ref(self)
        for operand in operands:
            if id(operand) not in keepers:
                keepers[id(operand)] = weakref.ref(operand, _forgetter(table, key, entry,
                                                                       id(operand)))


def _forgetter(table: "weakref.ref[LearnedTemplates]", key: Hashable, entry: _Entry,
               operand_id: int) -> Any:
    """The callback of one keeper's weak reference: the last keeper gone, the entry goes."""
    def forget(_: weakref.ref) -> None:
        entry.keepers.pop(operand_id, None)
        templates = table()
        if not entry.keepers and templates is not None \
                and templates._entries.get(key) is entry:
            del templates._entries[key]
    return forget

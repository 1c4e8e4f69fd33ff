"""A worker's objects, with single ownership that tolerates reordered messages.

Every stored object has one owner: the process whose pointer keeps it alive. Only the owner's
delete removes it. When a pointer is handed to a third process, the old owner announces the
hand-off with a ``FORK`` (old owner -> new owner). Messages from different senders are not
ordered, so a delete from the new owner can arrive before the fork that makes it the owner, and
two forks can arrive out of order: both are *deferred* until the forks that explain them arrive.
This is torch RRef's G2 guarantee (a reference handed on keeps the target alive until the holder
knows of the new reference), reached without any blocking round trip.

The store also keeps the tag index (:mod:`syftzmq.worker.tags`), the owners (by how many
objects each owns) and the owning chain hops: every way an object leaves passes through
:meth:`ObjectStore._forget`, which drops it from all three. The lease tick asks for the owners
and the hops every few seconds, and walking 100,000 objects for them held the loop for 15-30 ms
each time. Nothing is kept per plain object beyond its entry and its owner's (each owner's ids,
or each tensor's size, would cost every object memory; only a lease's expiry or a
``clear_objects`` asks for an owner's ids, and only ``syftzmq cluster status`` for the bytes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator

from ..core.refs import ChainRef
from ..errors import IdCollisionError, ObjectNotFoundError
from .tags import TagIndex


class ObjectStore:
    """Objects by id, each with its owner; deletes and forks from non-owners wait."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._owners: dict[int, str] = {}
        self._owned_counts: dict[str, int] = {}  # how many objects each owner owns here
        self._owning_hops: dict[int, None] = {}  # ids of the owning chain hops stored here
        self._deferred_deletes: defaultdict[int, set[str]] = defaultdict(set)
        self._deferred_forks: defaultdict[int, list[tuple[str, str]]] = defaultdict(list)
        self.tags = TagIndex()

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, object_id: int) -> bool:
        return object_id in self._objects

    def items(self) -> Iterator[tuple[int, Any]]:
        return iter(list(self._objects.items()))

    def owners(self) -> set[str]:
        """Every process that owns something here (lease bookkeeping)."""
        return set(self._owned_counts)

    def owned_by(self, owner: str) -> list[int]:
        """Ids of the objects ``owner`` owns here."""
        if owner not in self._owned_counts:
            return []
        return [object_id for object_id, incarnation in self._owners.items() if incarnation == owner]

    def owning_hops(self) -> list[ChainRef]:
        """The stored chain hops that keep their targets alive (renewed at their peers)."""
        return [self._objects[object_id] for object_id in self._owning_hops]

    def values(self) -> list[Any]:
        return list(self._objects.values())

    def put(self, object_id: int, obj: Any, owner: str) -> None:
        if object_id in self._objects:
            raise IdCollisionError(f"an object already lives under id {object_id}; not overwritten")
        self._objects[object_id] = obj
        self._own(object_id, owner)  # (a new id: nobody owned it before)
        if isinstance(obj, ChainRef) and obj.owning:
            self._owning_hops[object_id] = None

    def get(self, object_id: int) -> Any:
        try:
            return self._objects[object_id]
        except KeyError:
            raise ObjectNotFoundError(f"no object with id {object_id} on this worker "
                                      f"(deleted, fetched with .get(), or moved)") from None

    def owner(self, object_id: int) -> str | None:
        return self._owners.get(object_id)

    def take(self, object_id: int) -> Any:
        """Remove and return an object, whoever owns it (``get`` and completed moves)."""
        obj = self.get(object_id)
        self._forget(object_id)
        return obj

    def delete(self, object_id: int, requester: str) -> list[Any]:
        """The owner's delete removes the object; anyone else's waits for a fork.

        Returns the removed objects (so that pointers among them can cascade). Deleting an
        unknown id is a no-op: deletes are idempotent.
        """
        if object_id not in self._objects:
            return []
        if self._owners[object_id] != requester:
            self._deferred_deletes[object_id].add(requester)
            return []
        obj = self._objects[object_id]
        self._forget(object_id)
        return [obj]

    def fork(self, object_id: int, old_owner: str, new_owner: str) -> list[Any]:
        """Ownership passes ``old_owner`` -> ``new_owner``; applies whatever was waiting on it."""
        if object_id not in self._objects:
            return []
        if self._owners[object_id] != old_owner:
            self._deferred_forks[object_id].append((old_owner, new_owner))
            return []
        self._set_owner(object_id, new_owner)
        return self._settle(object_id)

    def _settle(self, object_id: int) -> list[Any]:
        """Apply deferred forks and deletes made valid by the current owner."""
        while object_id in self._objects:
            owner = self._owners[object_id]
            if owner in self._deferred_deletes.get(object_id, ()):
                obj = self._objects[object_id]
                self._forget(object_id)
                return [obj]
            forks = self._deferred_forks.get(object_id, [])
            ready = next((f for f in forks if f[0] == owner), None)
            if ready is None:
                return []
            forks.remove(ready)
            self._set_owner(object_id, ready[1])
        return []

    def _set_owner(self, object_id: int, owner: str) -> None:
        self._unown(object_id)
        self._own(object_id, owner)

    def _own(self, object_id: int, owner: str) -> None:
        self._owners[object_id] = owner
        self._owned_counts[owner] = self._owned_counts.get(owner, 0) + 1

    def _unown(self, object_id: int) -> None:
        old = self._owners.pop(object_id, None)
        if old is not None:
            left = self._owned_counts[old] - 1
            if left:
                self._owned_counts[old] = left
            else:
                del self._owned_counts[old]

    def _forget(self, object_id: int) -> None:
        self._owning_hops.pop(object_id, None)
        self._objects.pop(object_id, None)
        self._unown(object_id)
        self._deferred_deletes.pop(object_id, None)
        self._deferred_forks.pop(object_id, None)
        self.tags.drop(object_id)

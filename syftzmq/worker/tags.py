"""A worker's tag index: which stored objects carry which tags, their descriptions, and search.

PySyft 0.2 lets a tensor carry tags (a set of exact strings, ``"#x"`` is not ``"x"``) and a
description; both travel with ``send`` and the worker indexes the tags so that
``worker.search(...)`` finds the object again. The index lives beside the store
(:class:`~syftzmq.worker.store.ObjectStore` owns one and drops an id from it whenever the
object leaves: delete, ``get``, a completed move, lease expiry), so it never names an object
that is gone — PySyft's index kept stale ids, and an empty query could then raise.

Search semantics (:meth:`TagIndex.search`): a query is a list of terms, all of which must
match (AND). A term that is an int naming a stored object matches that object only; any other
term matches the objects tagged with exactly that string. An empty query matches every tagged
object. Unlike PySyft, a term with no hits makes the whole result empty: PySyft skipped such a
term, so ``["#missing", "#x"]`` returned the ``#x`` objects, which contradicts "AND".
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..errors import ProtocolError

Term = str | int


def check_tags(tags: Any) -> frozenset[str]:
    """``tags`` (as carried by a ``STORE``) as a frozenset of strings, or a ProtocolError."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str) or not isinstance(tags, (set, frozenset, list, tuple)):
        raise ProtocolError(f"tags must be a set or list of strings, got {type(tags).__name__}")
    if not all(isinstance(tag, str) for tag in tags):
        raise ProtocolError(f"every tag must be a string, got {sorted(map(repr, tags))!r:.80}")
    return frozenset(tags)


def check_description(description: Any) -> str | None:
    if description is not None and not isinstance(description, str):
        raise ProtocolError(f"a description must be a string, got {type(description).__name__}")
    return description


def check_terms(query: Any) -> list[Term]:
    """A ``SEARCH`` query as a list of terms (str or int), or a ProtocolError."""
    if not isinstance(query, (list, tuple)):
        raise ProtocolError(f"a search query must be a list of terms, got {type(query).__name__}")
    for term in query:
        if type(term) not in (str, int):
            raise ProtocolError(f"a search term must be a str (a tag) or an int (an object id), "
                                f"got {type(term).__name__}")
    return list(query)


class TagIndex:
    """Tags and descriptions of stored objects, by id; objects by tag."""

    def __init__(self) -> None:
        self._tags: dict[int, frozenset[str]] = {}        # insertion order = search order
        self._descriptions: dict[int, str] = {}
        self._ids_by_tag: dict[str, set[int]] = {}

    def __len__(self) -> int:
        """How many objects carry tags or a description."""
        return len(self._tags.keys() | self._descriptions.keys())

    def add(self, object_id: int, tags: Iterable[str] = (), description: str | None = None) -> None:
        """Index ``object_id`` under ``tags`` (added to any it had) and set its description."""
        tags = frozenset(tags)
        if tags:
            self._tags[object_id] = self._tags.get(object_id, frozenset()) | tags
            for tag in tags:
                self._ids_by_tag.setdefault(tag, set()).add(object_id)
        if description is not None:
            self._descriptions[object_id] = description

    def drop(self, object_id: int) -> None:
        """``object_id`` left the store: forget its tags and description (a no-op if none)."""
        self._descriptions.pop(object_id, None)
        for tag in self._tags.pop(object_id, ()):
            ids = self._ids_by_tag[tag]
            ids.discard(object_id)
            if not ids:
                del self._ids_by_tag[tag]

    def tags_of(self, object_id: int) -> frozenset[str]:
        return self._tags.get(object_id, frozenset())

    def description_of(self, object_id: int) -> str | None:
        return self._descriptions.get(object_id)

    def labels_of(self, object_id: int) -> dict:
        """What a ``STORE`` carries for this object's tags and description (empty if none), so
        that a move keeps them on the destination."""
        labels: dict[str, Any] = {}
        if object_id in self._tags:
            labels["tags"] = set(self._tags[object_id])
        if object_id in self._descriptions:
            labels["description"] = self._descriptions[object_id]
        return labels

    def search(self, terms: list[Term], is_stored: Callable[[int], bool]) -> list[int]:
        """The ids matching every term (see the module docstring); tagged ids in the order they
        were first tagged. ``is_stored(id)`` says whether an int term names a stored object."""
        if not terms:
            return list(self._tags)
        matched = self._hits(terms[0], is_stored)
        for term in terms[1:]:
            if not matched:
                break
            matched = matched & self._hits(term, is_stored)
        ordered = [object_id for object_id in self._tags if object_id in matched]
        return ordered + sorted(matched.difference(ordered))  # untagged objects named by id

    def _hits(self, term: Term, is_stored: Callable[[int], bool]) -> set[int]:
        if type(term) is int:
            return {term} if is_stored(term) else set()
        return set(self._ids_by_tag.get(term, ()))

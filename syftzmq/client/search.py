"""Search: PySyft's query forms, and ``sy.PrivateGridNetwork(...).search``.

A query is a str or an int (one term) or a list/tuple of terms, which must all match (AND);
an empty one matches every tagged object. Strings are tags, matched exactly (``"#x"`` is not
``"x"``); an int naming an object on the worker matches that object. The worker does the
matching (:mod:`syftzmq.worker.tags`), so only the matching objects' metadata travels.
"""

from __future__ import annotations

from typing import Any

Term = str | int


def search_terms(query: Any) -> list[Term]:
    """``query`` as a list of terms, or a :class:`TypeError` that says what a query is."""
    terms = [query] if isinstance(query, (str, int)) else query
    if not isinstance(terms, (list, tuple)) or any(type(term) not in (str, int) for term in terms):
        raise TypeError(f"a search query is a tag (str), an object id (int), or a list or tuple "
                        f"of those (all must match); got {query!r:.80}")
    return list(terms)


class PrivateGridNetwork:
    """``sy.PrivateGridNetwork(bob, alice)``: search several workers at once.

    ``search(*query)`` asks each worker in turn with the terms as one AND query and returns
    ``{worker_id: [pointers]}``, leaving out workers with no match (with no terms: every tagged
    object of each worker).
    """

    def __init__(self, *workers: Any) -> None:
        if len(workers) == 1 and isinstance(workers[0], (list, tuple)):
            workers = tuple(workers[0])
        if not workers:
            raise ValueError("PrivateGridNetwork needs at least one worker")
        self.workers = list(workers)

    def search(self, *query: Term) -> dict[str, list]:
        terms = search_terms(list(query))
        results = {}
        for worker in self.workers:
            found = worker.search(terms)
            if found:
                results[worker.id] = found
        return results

    def __repr__(self) -> str:
        return f"<PrivateGridNetwork {[worker.id for worker in self.workers]}>"

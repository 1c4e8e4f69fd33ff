"""``MultiPointerTensor``: one value on several workers, operated on all at once.

``torch.tensor([1, 2]).send(bob, alice)`` stores a copy on each worker and returns one of these;
``sy.combine_pointers(p_bob, p_alice)`` groups existing pointers. Every operation runs on every
child — one fire-and-forget command per worker — and returns a new multi-pointer, as in PySyft
0.2 (``syft/generic/pointers/multi_pointer.py``):

* ``.child`` is ``{worker_id: PointerTensor}`` in argument order; a worker named twice keeps
  its position and the later pointer.
* the children must have the same shape (``ValueError`` otherwise; PySyft asserted).
* in an operation with another multi-pointer, the children are matched by worker id; a
  worker missing from one of them is an error (:class:`~syftzmq.errors.WorkerMismatchError`).
* ``.get()`` fetches (and removes) every child and returns a **list** of tensors in worker
  order; ``.get(sum_results=True)`` returns their sum.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from ..core import argtree
from ..core.vocabulary import OPERATORS, tensor_property
from ..errors import WorkerMismatchError
from .operand import RemoteOperand


class MultiPointerTensor:
    """Pointers to the same-shaped tensors on several workers (see the module docstring)."""

    def __init__(self, children: Iterable[Any] = ()) -> None:
        child: dict[str, Any] = {}
        for pointer in children:
            if not isinstance(pointer, RemoteOperand):
                raise TypeError(f"a MultiPointerTensor groups pointers, got "
                                f"{type(pointer).__name__}; send the tensor first")
            child[pointer._location.id] = pointer
        pointers = list(child.values())
        if pointers:
            shape = pointers[0].shape
            for pointer in pointers[1:]:
                if pointer.shape != shape:
                    raise ValueError(f"the pointers of a MultiPointerTensor must have one shape; "
                                     f"got {tuple(shape)} on {pointers[0]._location.id!r} and "
                                     f"{tuple(pointer.shape)} on {pointer._location.id!r}")
        object.__setattr__(self, "child", child)

    # ------------------------------------------------------------------ description
    @property
    def shape(self) -> torch.Size:
        return self._first().shape

    @property
    def dtype(self) -> torch.dtype:
        return self._first().dtype

    @property
    def locations(self) -> list[Any]:
        """The workers holding the children, in order."""
        return [pointer.location for pointer in self.child.values()]

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self._first())

    def _first(self) -> Any:
        if not self.child:
            raise ValueError("this MultiPointerTensor has no pointers")
        return next(iter(self.child.values()))

    def __repr__(self) -> str:
        return "[MultiPointerTensor]" + "".join(f"\n\t-> {p!r}" for p in self.child.values())

    __str__ = __repr__

    # ------------------------------------------------------------------ data movement
    def get(self, sum_results: bool = False) -> Any:
        """Fetch every child (they are removed from their workers): a list in worker order, or
        with ``sum_results=True`` the sum of that list."""
        results = [pointer.get() for pointer in self.child.values()]
        return sum(results) if sum_results else results

    # ------------------------------------------------------------------ garbage collection
    @property
    def garbage_collection(self) -> bool:
        """True if dropping the children deletes their targets (they all agree)."""
        return all(pointer.garbage_collection for pointer in self.child.values())

    @garbage_collection.setter
    def garbage_collection(self, value: bool) -> None:
        for pointer in self.child.values():
            pointer.garbage_collection = value

    gc = garbage_collection

    def set_garbage_collect_data(self, value: bool) -> None:
        self.garbage_collection = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("garbage_collection", "gc"):
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"cannot set {name!r} on a MultiPointerTensor; set it on each "
                                 f"pointer in .child")

    # ------------------------------------------------------------------ operations
    def _each(self, call: Callable[[str, tuple, dict], Any], args: tuple, kwargs: dict) -> Any:
        """Run ``call`` once per worker with every multi-pointer replaced by that worker's
        child; regroup the results."""
        results = {worker: call(worker, *_dispatch(worker, args, kwargs)) for worker in self.child}
        return _regroup(list(results.values()))

    @classmethod
    def __torch_function__(cls, func: Callable, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        first = next(leaf for leaf in argtree.leaves(args, kwargs)
                     if isinstance(leaf, MultiPointerTensor))
        return first._each(lambda worker, a, k: func(*a, **k), tuple(args), kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if tensor_property(name):
            return _regroup([getattr(p, name) for p in self.child.values()])
        if not callable(getattr(torch.Tensor, name, None)):
            raise AttributeError(f"'MultiPointerTensor' has no attribute {name!r}")

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._each(lambda worker, a, k: getattr(self.child[worker], name)(*a, **k),
                              args, kwargs)
        method.__name__ = name
        return method

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a MultiPointerTensor needs the data: call .get() first")


def _dispatch(worker: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def pick(value: Any) -> Any:
        if isinstance(value, MultiPointerTensor):
            if worker not in value.child:
                raise WorkerMismatchError(
                    f"a MultiPointerTensor on {sorted(value.child)} has no pointer on worker "
                    f"{worker!r}, so it cannot be combined with one that has")
            return value.child[worker]
        return value
    return argtree.map_args(pick, args, kwargs)


def _regroup(results: list[Any]) -> Any:
    """Per-worker results as one value: pointers become a multi-pointer, tuples stay tuples
    of multi-pointers, equal plain values (``dim()``) collapse to one, ``None`` stays."""
    first = results[0]
    if isinstance(first, RemoteOperand):
        return MultiPointerTensor(results)
    if isinstance(first, (tuple, list)) and first and all(isinstance(r, type(first)) for r in results):
        return type(first)(_regroup(list(parts)) for parts in zip(*results))
    if all(r is None for r in results):
        return None
    if all(r == first for r in results):
        return first
    return results


def combine_pointers(*pointers: Any) -> MultiPointerTensor:
    """``sy.combine_pointers(p_bob, p_alice)``: one multi-pointer over pointers on different
    workers (PySyft 0.2's name)."""
    return MultiPointerTensor(pointers)


def _make_operator(name: str) -> Callable:
    def operator(self: MultiPointerTensor, *args: Any) -> Any:
        return self._each(lambda worker, a, k: getattr(self.child[worker], name)(*a), args, {})
    operator.__name__ = name
    return operator


for _form in OPERATORS:
    setattr(MultiPointerTensor, _form, _make_operator(_form))
MultiPointerTensor.__hash__ = lambda self: id(self)  # type: ignore[method-assign]

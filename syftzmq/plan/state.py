"""A plan's state (PySyft 0.2's ``State``): tensors a plan function receives as its last argument.

``@sy.func2plan(args_shape=[(1,)], state=(bias,))`` makes ``plan(x)`` call the function as
``f(x, state)``, and ``state.read()`` returns the list of state tensors. The state travels with
each remote call like any other argument — local tensors by value, pointers as references to
the worker's tensors — which is why :class:`State` is a pytree node: its tensors are the
leaves the plan machinery sees.

This module imports only torch: a worker unpickling a plan call imports it too.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch.utils import _pytree as pytree


class State:
    """The state tensors of a plan, in the order given."""

    def __init__(self, tensors: Iterable[Any] = ()) -> None:
        self._tensors = list(tensors)

    def read(self) -> list[Any]:
        """The state tensors, as a list (PySyft: ``bias, = state.read()``)."""
        return list(self._tensors)

    def tensors(self) -> list[Any]:
        return list(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"State: {', '.join(type(t).__name__ for t in self._tensors) or 'empty'}"


pytree.register_pytree_node(
    State, lambda state: (list(state._tensors), None), lambda tensors, _: State(tensors),
    serialized_type_name="syftzmq.plan.state.State")

"""PySyft 0.2's plan surface on top of :class:`~syftzmq.plan.plan.Plan`: what ``plan.send(w)``
returns, and the example tensors ``@sy.func2plan(args_shape=...)`` builds on.

In PySyft, ``build`` traced the function into a list of actions, and a sent plan replayed them
on the worker. Here the function itself travels (see :mod:`syftzmq.plan.plan`), so ``build``
runs it once on the example arguments — which finds the errors tracing found — and marks the
plan built; ``send`` then stores it on the worker. Calling the result of ``send`` runs the plan
there.

What differs, on purpose: results of a sent plan are owning pointers, garbage-collected like
any other (PySyft turned their GC off, which would leak them on a real worker).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..core.refs import WorkerRef


def placeholders(args_shape: Sequence[Sequence[int]], args_dtypes: Sequence[Any] = ()) -> list[torch.Tensor]:
    """Zero tensors of the given shapes (``-1`` stands for any size and becomes 1); a size
    below -1 raises ``ValueError("Invalid shape ...")``."""
    tensors = []
    for index, shape in enumerate(args_shape):
        shape = tuple(shape)
        if any(size < -1 for size in shape):
            raise ValueError(f"Invalid shape {shape}")
        dtype = args_dtypes[index] if index < len(args_dtypes) else None
        tensors.append(torch.zeros(tuple(1 if size == -1 else size for size in shape),
                                   dtype=dtype or torch.float32))
    return tensors


class PointerPlan:
    """A plan stored on one or more workers (what ``plan.send(w)`` returns).

    Calling it runs the plan on the worker that holds the arguments, which must be one it
    was sent to (``RuntimeError`` otherwise, before anything is sent). ``get()`` drops the
    stored copies and returns the plan.
    """

    def __init__(self, plan: Any, locations: Sequence[WorkerRef]) -> None:
        self.plan = plan
        self._locations = list(locations)

    @property
    def location(self) -> Any:
        """The worker holding the plan (a list when it was sent to several)."""
        handles = [self.plan._stored[ref.incarnation].location for ref in self._locations
                   if ref.incarnation in self.plan._stored]
        return handles[0] if len(handles) == 1 else handles

    @property
    def name(self) -> str:
        return self.plan.name

    def check_arguments(self, pointers: list[Any]) -> None:
        where = ", ".join(repr(ref.id) for ref in self._locations)
        if not pointers:
            raise RuntimeError(f"plan {self.plan.name!r} lives on {where}: call it with pointers "
                               f"to data there (x.send(worker)), or call the plan itself with "
                               f"local values")
        stored = {ref.incarnation for ref in self._locations
                  if ref.incarnation in self.plan._stored}
        for pointer in pointers:
            if pointer._location.incarnation not in stored:
                raise RuntimeError(
                    f"plan {self.plan.name!r} was sent to {where}, but an argument lives on "
                    f"{pointer._location.id!r}: send the plan there first (plan.send(worker))")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.plan._run(args, kwargs, where=self)

    def get(self) -> Any:
        """Remove the plan from its workers; returns the (local) plan."""
        for ref in self._locations:
            self.plan._stored.pop(ref.incarnation, None)
            self.plan._pointer_plans.pop(ref.incarnation, None)
        return self.plan

    def parameters(self) -> list[Any]:
        return self.plan.parameters()

    def __repr__(self) -> str:
        where = ", ".join(ref.id for ref in self._locations)
        return f"<PointerPlan {self.plan.name} on {where}>"

"""Replaying a remembered inference with gradients: result mirrors wired into the autograd graph.

The client must know, without asking the worker, which tensors get a ``.grad`` when
``loss.backward()`` runs (see :mod:`syftzmq.tensor.mirrors`). Inferring an operation on mirrors
builds that graph, but it runs torch's Python decompositions — about a millisecond for a loss
function, more than the real operation on a small batch. A training loop repeats the same
operations on the same shapes every step, so the graph's *shape* is learned once per operation
key (:mod:`syftzmq.tensor.inference_cache`): which result sends a gradient to which operand.

A replay then makes the result mirrors with one :class:`_Replayed` node whose backward passes an
(empty, meta) gradient to exactly those operands, and nothing to the others. Defined and
undefined gradients then flow through the client's graph as they flow through the worker's,
so leaves get a ``.grad`` exactly where the worker's do.

Why the edges are learned on fresh leaves (:func:`learn_edges`): on the operands themselves, a
gradient could reach an operand *through* another operand that was computed from it, and the
next call with the same key need not have that history.

What a replay cannot reproduce is refused at learning time (:func:`replayable`): results that are
views or aliases of an operand (an in-place change of one rewrites the other's history), leaves
that require grad, non-contiguous results. Differentiating a replayed node twice
(``create_graph=True``) raises :class:`NotImplementedError`, which the dispatcher treats as
"unknown": the pointers then ask the worker for their gradients.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils import _pytree as pytree

from ..core import argtree
from ..core.meta import TensorMeta
from .operand import RemoteOperand

# Per operand that requires grad: the indices of the results whose gradient reaches it.
Edges = tuple[frozenset[int], ...]


def grad_operands(args: tuple, kwargs: dict) -> list[RemoteOperand]:
    """The pointer operands whose tensors require grad, in argument order (the replay's inputs).

    A pointer with only a pending meta builds its mirror here: a leaf, as it is on the worker
    (a tensor sent or fetched with ``requires_grad`` has no history there either)."""
    return [leaf for leaf in argtree.leaves(args, kwargs)
            if isinstance(leaf, RemoteOperand) and _requires_grad(leaf)]


def _requires_grad(operand: RemoteOperand) -> bool:
    meta = operand._pending_meta
    if meta is not None:
        return meta.requires_grad
    mirror = operand._built_mirror
    return mirror is not None and mirror.requires_grad


def replayable(leaves: Sequence[torch.Tensor], operand_mirrors: Sequence[torch.Tensor]) -> bool:
    """Whether results inferred as ``leaves`` can be rebuilt by a replay exactly."""
    for leaf in leaves:
        if not leaf.is_contiguous() or leaf._is_view():
            return False
        if any(leaf is mirror for mirror in operand_mirrors):
            return False
        if leaf.requires_grad and leaf.grad_fn is None:
            return False
    return True


def learn_edges(call: Callable[..., Any], args: tuple, kwargs: dict,
                operands: Sequence[RemoteOperand]) -> Edges | None:
    """Run the operation once more on fresh leaves standing for ``operands`` and record which
    result reaches which of them; ``None`` if that cannot be learned (the call is then not
    remembered)."""
    # one fresh leaf per position, in the order the arguments are walked: an operand passed
    # twice (``x * x``) is learned as two, so the edges hold for ``x * y`` too
    inputs = [torch.empty_like(operand._mirror).requires_grad_(True) for operand in operands]
    pending = iter(inputs)

    def stand_in(value: Any) -> Any:
        if isinstance(value, RemoteOperand):
            return next(pending) if _requires_grad(value) else value._mirror
        if isinstance(value, torch.Tensor):
            return value.detach().to("meta")
        return value

    try:
        meta_args, meta_kwargs = argtree.map_args(stand_in, args, kwargs)
        results, _ = pytree.tree_flatten(call(*meta_args, **meta_kwargs))
        reached: list[set[int]] = [set() for _ in inputs]
        for index, result in enumerate(results):
            if not (isinstance(result, torch.Tensor) and result.requires_grad):
                continue
            grads = torch.autograd.grad(result, inputs, grad_outputs=torch.empty_like(result),
                                        retain_graph=True, allow_unused=True)
            for position, grad in enumerate(grads):
                if grad is not None:
                    reached[position].add(index)
    except Exception:
        return None
    return tuple(frozenset(found) for found in reached)


class _Replayed(torch.autograd.Function):
    """One remembered operation in the client's autograd graph (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, metas: tuple[TensorMeta, ...], edges: Edges,
                *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        ctx.edges = edges
        ctx.inputs = [(tensor.shape, tensor.dtype) for tensor in inputs]
        results = tuple(torch.empty(meta.shape, dtype=meta.dtype, device="meta")
                        for meta in metas)
        constant = [result for result, meta in zip(results, metas) if not meta.requires_grad]
        if constant:
            ctx.mark_non_differentiable(*constant)
        return results

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise NotImplementedError("a replayed inference cannot be differentiated twice")
        defined = {index for index, grad in enumerate(grads) if grad is not None}
        return (None, None, *(
            torch.empty(shape, dtype=dtype, device="meta") if reached & defined else None
            for (shape, dtype), reached in zip(ctx.inputs, ctx.edges)))


def replay(metas: tuple[TensorMeta, ...], edges: Edges,
           operands: Sequence[RemoteOperand]) -> list[torch.Tensor]:
    """Result mirrors for a remembered operation, connected to ``operands``' mirrors."""
    return list(_Replayed.apply(metas, edges, *(operand._mirror for operand in operands)))

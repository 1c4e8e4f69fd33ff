"""Inference on mirrors: a pointer operation's result shape, dtype and autograd graph, computed
on the client from the operands' meta mirrors (see :mod:`syftzmq.core.meta`) before anything is
sent.

Running an operation on the mirrors gives the result's shape and dtype, or raises the very error
local torch would raise (a shape mismatch, say) at the line that caused it. Because mirrors carry
``requires_grad`` and ``grad_fn``, ``loss.backward()`` on the mirrors tells the client exactly
which leaves now have a gradient, and its shape, without a round trip. Operations without a meta
kernel, or whose result shape depends on the data, give no mirror: the pointer then learns its
shape from the worker on first use.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..core import argtree
from .operand import RemoteOperand


class Unknown(Exception):
    """The result's shape cannot be known without the data."""


def as_mirror(value: Any) -> Any:
    """The meta stand-in for one argument: pointers give their mirror, tensors a meta copy."""
    if isinstance(value, RemoteOperand):
        mirror = value._mirror
        if mirror is None:
            raise Unknown("an operand's shape is not known locally")
        return mirror
    if isinstance(value, torch.Tensor):
        meta = value.detach().to("meta")
        return meta.requires_grad_(True) if value.requires_grad else meta
    return value


def _unsupported(exc: BaseException) -> bool:
    """True when ``exc`` says 'meta cannot do this', not 'this is wrong'."""
    if isinstance(exc, (NotImplementedError, Unknown)):
        return True
    text = str(exc).lower()
    return ("meta" in text or "data-dependent" in text or "cannot be converted to scalar" in text
            or "symbolic" in text)


def infer(call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run ``call`` on mirrors. Returns the meta result, or raises :class:`Unknown`.

    A genuine error (wrong shapes, wrong types) propagates unchanged, as in local torch.
    """
    try:
        meta_args, meta_kwargs = argtree.map_args(as_mirror, args, kwargs)
        return call(*meta_args, **meta_kwargs)
    except Exception as exc:
        if _unsupported(exc):
            raise Unknown(str(exc)) from exc
        raise


_warm = False


def warm_up() -> None:
    """Run a few operations on meta tensors once per process.

    The first operation inferred on the meta device costs about a second (torch imports and
    traces its Python decompositions). :class:`~syftzmq.client.handles.VirtualWorker` calls
    this while its worker process starts, so that second overlaps the worker's own start-up
    instead of landing on the user's first operation.
    """
    global _warm
    if _warm:
        return
    _warm = True
    a = torch.empty(2, 2, device="meta")
    b = torch.empty(2, 2, device="meta", requires_grad=True)
    for result in (a + a, a * 2, a - 1, a / 2, a @ a, a.sum(), a.mean(0), a.t(), a.view(4),
                   torch.relu(a), torch.cat([a, a])):
        del result
    (b * a + 1).sum().backward()

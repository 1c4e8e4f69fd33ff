"""Shapes and dtypes of results, computed on the client without data (PyTorch's ``meta`` device).

Running an operation on meta tensors gives the result's shape and dtype, or raises the very error
local torch would raise (a shape mismatch, say) at the line that caused it, before anything is
sent. Operations without a meta kernel, or whose result shape depends on the data, give ``None``:
the pointer then learns its shape from the worker on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree


@dataclass(frozen=True)
class TensorMeta:
    shape: torch.Size
    dtype: torch.dtype
    requires_grad: bool = False


class Unknown(Exception):
    """The result's shape cannot be known without the data."""


def as_meta(value: Any) -> Any:
    """The meta stand-in for one argument: pointers and tensors become meta tensors."""
    from .pointer import PointerTensor
    if isinstance(value, PointerTensor):
        meta = value._meta_or_none()
        if meta is None:
            raise Unknown("operand shape not known locally")
        tensor = torch.empty(meta.shape, dtype=meta.dtype, device="meta")
        return tensor.requires_grad_(meta.requires_grad) if meta.requires_grad else tensor
    if isinstance(value, torch.Tensor):
        meta = value.detach().to("meta")
        return meta.requires_grad_(True) if value.requires_grad else meta
    return value


def _unsupported(exc: BaseException) -> bool:
    """True when ``exc`` says 'meta cannot do this', not 'this is wrong'."""
    if isinstance(exc, (NotImplementedError, Unknown)):
        return True
    text = str(exc).lower()
    return "meta" in text or "data-dependent" in text or "cannot be converted to scalar" in text


def infer(call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run ``call`` on meta stand-ins. Returns the meta result, or raises :class:`Unknown`.

    A genuine error (wrong shapes, wrong types) propagates unchanged, as in local torch.
    """
    try:
        meta_args, meta_kwargs = pytree.tree_map(as_meta, (args, kwargs))
        return call(*meta_args, **meta_kwargs)
    except Exception as exc:
        if _unsupported(exc):
            raise Unknown(str(exc)) from exc
        raise


def describe(tensor: torch.Tensor) -> TensorMeta:
    return TensorMeta(tensor.shape, tensor.dtype, bool(tensor.requires_grad))

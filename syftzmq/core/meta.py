"""What travels about a remote tensor without its data: :class:`TensorMeta`, and the mirror built
from it — a tensor on PyTorch's ``meta`` device with the remote's shape, dtype and autograd
graph (the client's inference on mirrors is :mod:`syftzmq.tensor.mirrors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorMeta:
    """What travels on the wire about a remote tensor (mirrors themselves stay local)."""

    shape: torch.Size
    dtype: torch.dtype
    requires_grad: bool = False
    grad: "TensorMeta | None" = None  # the tensor's .grad, which travels with it


def mirror_of(meta: TensorMeta) -> torch.Tensor:
    """A fresh leaf mirror for a tensor described by ``meta``."""
    mirror = torch.empty(meta.shape, dtype=meta.dtype, device="meta")
    if meta.requires_grad:
        mirror.requires_grad_(True)
    if meta.grad is not None:
        mirror.grad = mirror_of(meta.grad)
    return mirror


def describe(tensor: torch.Tensor) -> TensorMeta:
    """Shape, dtype, requires_grad, and the same for a leaf's ``.grad``."""
    grad = tensor.grad if tensor.is_leaf else None
    return TensorMeta(tensor.shape, tensor.dtype, bool(tensor.requires_grad),
                      None if grad is None else describe(grad))

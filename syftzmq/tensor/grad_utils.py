"""``torch.nn.utils`` gradient and parameter utilities that work on remote tensors.

Torch's versions test ``isinstance(parameters, torch.Tensor)``: a pointer is not a tensor, so
``clip_grad_norm_(x_ptr, 1)`` iterated over the pointer's rows (whose ``.grad`` is ``None``),
returned ``tensor(0.)`` and clipped nothing — a wrong number. Given remote tensors (pointers,
or parameters of a sent model), each utility here computes on the worker, with the same
arithmetic as torch, and returns a pointer where torch returns a tensor:

* ``get_total_norm`` / ``clip_grad_norm_`` (and the deprecated ``clip_grad_norm``): the norm of
  each gradient, then the norm of those norms, on the worker; the clip coefficient
  ``clamp(max_norm / (total + 1e-6), max=1)`` multiplies every gradient in place there
  (PySyft 0.2's ``clip_grad_norm_remote_`` did the same with ``grad.data.norm(p) ** p``).
  ``error_if_nonfinite=True`` costs one round trip: whether the norm is finite is data.
* ``clip_grads_with_norm_``, ``clip_grad_value_``: in place on the worker.
* ``parameters_to_vector``: one remote ``cat`` of flattened views.
* ``vector_to_parameters``: each parameter's ``.data`` set from its slice (of a local vector:
  the slice travels; of a remote one: sliced where it lives).

They refuse, before anything is sent, what cannot be computed honestly in one place: tensors
on several workers (:class:`~syftzmq.errors.WorkerMismatchError`) or a mix of local and remote
tensors (``ValueError``). On local tensors the original torch function runs, unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.utils as nn_utils

from .operand import RemoteOperand
from .remote_call import common_location, unwrap

_FUNCTIONS = ("get_total_norm", "clip_grads_with_norm_", "clip_grad_norm_", "clip_grad_norm",
              "clip_grad_value_", "parameters_to_vector", "vector_to_parameters")
_ORIGINALS: dict[str, Callable] = {}


def _as_list(tensors: Any) -> list[Any]:
    if isinstance(tensors, (torch.Tensor, RemoteOperand)):
        return [tensors]
    return list(tensors)


def _pointers(tensors: list[Any], name: str) -> list[Any] | None:
    """The pointers standing for ``tensors`` if they are all remote, on one worker; ``None`` if
    they are all local. A mix, or several workers, raises before anything is sent."""
    pointers = [unwrap(t) for t in tensors]
    remote = [isinstance(p, RemoteOperand) for p in pointers]
    if not any(remote):
        return None
    if not all(remote):
        raise ValueError(f"torch.nn.utils.{name}() got both local and remote tensors; their "
                         f"gradients cannot be combined in one place. Send the local ones to "
                         f"the worker (or .get() the remote ones) first")
    common_location(pointers, f"torch.nn.utils.{name}")
    return pointers


def _grads(pointers: list[Any]) -> list[Any]:
    return [g for g in (p.grad for p in pointers) if g is not None]


def _remote_total_norm(grads: list[Any], norm_type: float, error_if_nonfinite: bool) -> Any:
    if not grads:
        return torch.tensor(0.0)
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(g, norm_type) for g in grads]
        total = torch.linalg.vector_norm(torch.stack(norms), norm_type)
        if error_if_nonfinite and bool(torch.logical_or(total.isnan(), total.isinf()).get()):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is "
                f"non-finite, so it cannot be clipped. To disable this error and scale the "
                f"gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return total


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Any:
    """The norm of ``tensors`` as one vector; a pointer when they are remote."""
    tensors = _as_list(tensors)
    pointers = _pointers(tensors, "get_total_norm")
    if pointers is None:
        return _ORIGINALS["get_total_norm"](tensors, norm_type, error_if_nonfinite, foreach)
    return _remote_total_norm(pointers, float(norm_type), error_if_nonfinite)


def clip_grads_with_norm_(parameters: Any, max_norm: float, total_norm: Any,
                          foreach: bool | None = None) -> None:
    """Scale the gradients by ``min(max_norm / (total_norm + 1e-6), 1)``, on the worker."""
    parameters = _as_list(parameters)
    pointers = _pointers(parameters, "clip_grads_with_norm_")
    if pointers is None:
        return _ORIGINALS["clip_grads_with_norm_"](parameters, max_norm, unwrap(total_norm), foreach)
    _scale(_grads(pointers), float(max_norm), unwrap(total_norm))
    return None


def _scale(grads: list[Any], max_norm: float, total_norm: Any) -> None:
    if not grads:
        return
    with torch.no_grad():
        clamped = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
        for grad in grads:
            grad.mul_(clamped)


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Any:
    """Clip the gradient norm; on remote parameters computed on their worker. Returns the total
    norm (a pointer when remote)."""
    parameters = _as_list(parameters)
    pointers = _pointers(parameters, "clip_grad_norm_")
    if pointers is None:
        return _ORIGINALS["clip_grad_norm_"](parameters, max_norm, norm_type, error_if_nonfinite,
                                             foreach)
    grads = _grads(pointers)
    total = _remote_total_norm(grads, float(norm_type), error_if_nonfinite)
    _scale(grads, float(max_norm), total)
    return total


def clip_grad_norm(parameters: Any, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Any:
    """Torch's deprecated name for :func:`clip_grad_norm_`."""
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient to ``[-clip_value, clip_value]``, in place where it lives."""
    parameters = _as_list(parameters)
    pointers = _pointers(parameters, "clip_grad_value_")
    if pointers is None:
        return _ORIGINALS["clip_grad_value_"](parameters, clip_value, foreach)
    clip_value = float(clip_value)
    with torch.no_grad():
        for grad in _grads(pointers):
            grad.clamp_(min=-clip_value, max=clip_value)
    return None


def parameters_to_vector(parameters: Iterable[Any]) -> Any:
    """The parameters flattened into one vector; a pointer when they are remote."""
    parameters = list(parameters)
    pointers = _pointers(parameters, "parameters_to_vector")
    if pointers is None:
        return _ORIGINALS["parameters_to_vector"](parameters)
    return torch.cat([p.view(-1) for p in pointers])


def vector_to_parameters(vec: Any, parameters: Iterable[Any]) -> None:
    """Copy slices of ``vec`` into the parameters' ``.data`` (local or remote)."""
    parameters = list(parameters)
    vector = unwrap(vec)
    remote_vector = isinstance(vector, RemoteOperand)
    if not remote_vector and not isinstance(vector, torch.Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {torch.typename(vec)}")
    remote = [isinstance(unwrap(p), RemoteOperand) for p in parameters]
    if not remote_vector and not any(remote):
        return _ORIGINALS["vector_to_parameters"](vec, parameters)
    if remote_vector and not all(remote):
        raise ValueError("vector_to_parameters() got a remote vector and local parameters: "
                         "call .get() on the vector first")
    if remote_vector:
        common_location([vector] + [unwrap(p) for p in parameters], "vector_to_parameters")
    offset = 0
    for param in parameters:
        count = param.numel()
        param.data = vector[offset:offset + count].view(param.shape)
        offset += count
    return None


def install() -> None:
    """Replace the ``torch.nn.utils`` functions (and their home modules' names) with these;
    installing twice is harmless."""
    homes = [nn_utils, nn_utils.clip_grad, nn_utils.convert_parameters]
    for name in _FUNCTIONS:
        original = getattr(nn_utils, name, None)
        if original is None or getattr(original, "_syftzmq", False):
            continue
        _ORIGINALS[name] = original
        replacement = globals()[name]
        replacement._syftzmq = True  # type: ignore[attr-defined]
        for home in homes:
            if getattr(home, name, None) is original:
                setattr(home, name, replacement)

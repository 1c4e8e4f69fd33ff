"""The keyword arguments of PySyft 0.2's ``send``, checked in one place.

PySyft's ``tensor.send(*workers, inplace=False, user=None, local_autograd=False,
requires_grad=False, preinitialize_grad=False, no_wrap=False, garbage_collect_data=True)``
accepted all of these; code written for it passes them. Each is either honoured here, or
refused with an error that says why, never silently dropped when it would change a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SendOptions:
    """What a ``send`` call asked for (see :func:`parse`)."""

    garbage_collect_data: bool = True
    requires_grad: bool = False
    preinitialize_grad: bool = False
    inplace: bool = False


_ACCEPTED = ("inplace", "user", "local_autograd", "requires_grad", "preinitialize_grad",
             "no_wrap", "garbage_collect_data")


def parse(kwargs: dict[str, Any]) -> SendOptions:
    """Check PySyft's ``send`` keywords; raise for one that cannot be honoured.

    * ``garbage_collect_data=False``: dropping the pointer leaves the remote object alive.
    * ``requires_grad=True``: the remote copy requires grad, and ``ptr.grad`` is the remote
      gradient. PySyft also pushed that gradient back into the *local* tensor's ``.grad`` from
      the worker; a worker here never calls into a client, so bring it home with
      ``x.grad = ptr.grad.get()``.
    * ``preinitialize_grad=True``: the remote copy starts with a zero gradient.
    * ``no_wrap``: meaningless here (pointers are not wrapped), accepted.
    * ``local_autograd=True`` and ``user=...``: refused (no equivalent; see the messages).
    """
    unknown = sorted(set(kwargs) - set(_ACCEPTED))
    if unknown:
        raise TypeError(f"send() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"it accepts {', '.join(_ACCEPTED)}")
    if kwargs.get("local_autograd"):
        raise NotImplementedError(
            "send(..., local_autograd=True) is not supported: autograd already runs on the "
            "worker that holds the data. Send a tensor that requires grad, call "
            "loss.backward() on the result pointer and read ptr.grad")
    if kwargs.get("user") is not None:
        raise NotImplementedError("send(..., user=...) is not supported: workers here have no "
                                  "user accounts; connect with the cluster key instead")
    return SendOptions(garbage_collect_data=bool(kwargs.get("garbage_collect_data", True)),
                       requires_grad=bool(kwargs.get("requires_grad", False)),
                       preinitialize_grad=bool(kwargs.get("preinitialize_grad", False)),
                       inplace=bool(kwargs.get("inplace", False)))

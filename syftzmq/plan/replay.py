"""When a plan call may be replayed from what the worker learnt at an earlier call.

A plan call's message carries, besides its remote operands, a *template*: the arguments'
structure, plain values, and a skeleton copy of every module argument (the module without its
remote tensors). Pickling that skeleton is most of what a call costs the client (about a third
of a millisecond for an ``nn.Linear`` with its hook tables), and it is the same at every call
of a training loop. So once a call's result layout is known, the client stores the template on
the worker once, and later calls that would send the very same template name the stored copy
instead: one small command, the operands and the result ids (see
:func:`syftzmq.plan.runner.run_learned`).

*The very same* is decided without pickling: :func:`replay_key` describes everything of the
template the worker would see, and is ``None`` — no replay, the template travels as before —
when it cannot tell for sure: a local tensor (its values are not in the key), a value that is
not a plain immutable one, a module attribute that is not plain, a hook registered, a module
class with its own pickling. Refusing to replay costs a few hundred microseconds; replaying a
stale template would compute with the wrong arguments.
"""

from __future__ import annotations

from typing import Any, Hashable

import torch
from torch import nn

from .runner import ModuleArgument, Slot

_PLAIN = frozenset({int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device})
_TABLES = ("_parameters", "_buffers", "_modules")
# ``__getstate__`` of classes that pickle their instance ``__dict__`` and nothing else
_PICKLES_ITS_DICT = (object.__getstate__, nn.Module.__getstate__)


class _NotReplayable(Exception):
    """Raised inside :func:`replay_key` at anything the key cannot describe exactly."""


def replay_key(arguments: Any) -> Hashable | None:
    """A key equal for two calls exactly when their templates would unpickle alike on the
    worker (given equal call signatures); ``None`` if that cannot be told cheaply."""
    try:
        return _key(arguments)
    except _NotReplayable:
        return None


def _key(value: Any) -> Hashable:
    kind = type(value)
    if kind is list or kind is tuple:
        return (kind, tuple(_key(item) for item in value))
    if kind is dict:
        return (dict, tuple((_plain(key), _key(item)) for key, item in value.items()))
    if kind is Slot:
        return value
    if kind is ModuleArgument:
        return ("m", _module_key(value.skeleton), tuple(value.slots))
    return _plain(value)


def _plain(value: Any) -> Hashable:
    kind = type(value)
    if kind in _PLAIN:
        if kind is float and value != value:  # NaN: never equal to itself, a key would not hit
            raise _NotReplayable
        return (kind, value)
    if kind is tuple or kind is frozenset:
        return (kind, tuple(_plain(item) for item in value))
    raise _NotReplayable


def _module_key(skeleton: nn.Module) -> Hashable:
    """The skeleton's structure and plain attributes; shared submodules keep their sharing."""
    seen: dict[int, int] = {}
    parts: list[Hashable] = []

    def visit(module: nn.Module | None) -> None:
        if module is None:
            parts.append(None)
            return
        if id(module) in seen:
            parts.append(("same", seen[id(module)]))
            return
        seen[id(module)] = len(seen)
        kind = type(module)
        if kind.__reduce_ex__ is not object.__reduce_ex__ \
                or kind.__reduce__ is not object.__reduce__ \
                or kind.__getstate__ not in _PICKLES_ITS_DICT or getattr(kind, "__slots__", None):
            raise _NotReplayable  # it pickles more (or other) than its __dict__
        attributes: list[Hashable] = []
        for name, value in module.__dict__.items():
            if name in _TABLES:
                continue
            if isinstance(value, dict):  # hook tables: a hook is code, not in the key
                if value:
                    raise _NotReplayable
                attributes.append((name, type(value)))
            elif type(value) is set:
                attributes.append((name, set, _plain(frozenset(value))))
            else:
                attributes.append((name, _plain(value)))
        for table in ("_parameters", "_buffers"):
            for name, tensor in module.__dict__[table].items():
                if tensor is not None:  # a local tensor travels by value: not in the key
                    raise _NotReplayable
                attributes.append((table, name))
        parts.append((kind, tuple(attributes), tuple(module._modules)))
        for child in module._modules.values():
            visit(child)

    visit(skeleton)
    return tuple(parts)

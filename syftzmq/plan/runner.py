"""The worker's half of plans: rebuild a call's arguments around the stored tensors, run the
plan's function, and report the result's layout on a first call.

Everything here travels by name to the worker inside a plan command, so this module imports only
:mod:`syftzmq.core` and torch: a worker never imports the client or the tensor proxy. The
client's half is :mod:`syftzmq.plan.plan`.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..core.meta import TensorMeta, describe

FUNCTIONS_KEPT = 64       # unpickled plan functions a worker keeps


# ------------------------------------------------------------------------------ the function
@dataclass(frozen=True, eq=False)
class Code:
    """A plan's function, pickled once on the client. Unpickling it on the worker yields the
    function itself (from the worker's cache when it has seen these bytes before)."""

    digest: bytes
    payload: bytes

    def __reduce__(self) -> tuple:
        return load_function, (self.digest, self.payload)


_LOADED: OrderedDict[bytes, Callable] = OrderedDict()


def load_function(digest: bytes, payload: bytes) -> Callable:
    """Worker side: the function for ``payload``, unpickled at most once per cache lifetime."""
    function = _LOADED.get(digest)
    if function is None:
        function = pickle.loads(payload)
        _LOADED[digest] = function
        while len(_LOADED) > FUNCTIONS_KEPT:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(digest)
    return function


# ------------------------------------------------------------------------------ the arguments
@dataclass(frozen=True)
class ModuleSlot:
    """Where one stored tensor goes in a rebuilt module: ``<path>.<table>[<name>]``."""

    path: str
    table: str   # "_parameters" or "_buffers"
    name: str
    index: int   # into the command's tensor operands


@dataclass(frozen=True)
class Slot:
    """Stands, in a plan call's arguments, for the command's ``index``-th remote operand."""

    index: int


@dataclass(eq=False)
class ModuleArgument:
    """A module argument without its remote tensors, and where each of them goes back."""

    skeleton: nn.Module
    slots: list[ModuleSlot]


@dataclass(eq=False)
class Template:
    """Everything of a plan call but its remote operands, which travel as the command's flat
    arguments (so the worker resolves them, and a chain hop can rename them).

    ``arguments`` is ``(args, kwargs)`` with every pointer replaced by a :class:`Slot` and every
    module holding remote tensors by a :class:`ModuleArgument`: plain containers, no pytree
    spec (whose pickled form torch is deprecating).
    """

    name: str
    arguments: tuple[tuple, dict]
    outputs: int | None = None       # None: first call for this signature, report the results


# ------------------------------------------------------------------------------ worker side
@dataclass(eq=False)
class Held:
    """A first call's whole result, kept on the worker until the client has learnt its layout."""

    value: Any


@dataclass(frozen=True)
class Out:
    """Stands, in a reported result structure, for the ``index``-th stored result."""

    index: int


@dataclass(frozen=True)
class Report:
    """What a first call tells the client: the result with every stored leaf replaced by an
    :class:`Out` (``None`` leaves stay ``None`` and get no pointer), and each one's meta."""

    structure: Any
    metas: tuple[TensorMeta | None, ...]  # per stored result: its meta if it is a tensor


def run_plan(function: Callable, template: Template, *operands: Any) -> Any:
    """Worker side: rebuild the arguments around the stored tensors and call the function."""
    def fill(leaf: Any) -> Any:
        if isinstance(leaf, Slot):
            return operands[leaf.index]
        if isinstance(leaf, ModuleArgument):
            return rebuild_module(leaf, operands)
        return leaf

    def fill_plain(value: Any) -> Any:  # lists, tuples and dicts without a pytree walk
        kind = type(value)
        if kind is list or kind is tuple:
            return kind([fill_plain(item) for item in value])
        if kind is dict:
            return {key: fill_plain(item) for key, item in value.items()}
        if kind is Slot or kind is ModuleArgument or pytree.tree_is_leaf(value):
            return fill(value)
        return pytree.tree_map(fill, value)  # a namedtuple, an OrderedDict...

    args, kwargs = fill_plain(template.arguments)
    value = function(*args, **kwargs)
    if template.outputs is None:
        return [Held(value), report_of(value)]
    results = stored_leaves(value)
    if len(results) != template.outputs:
        raise TypeError(f"plan {template.name!r} returned {len(results)} values; its first call "
                        f"with arguments of these shapes returned {template.outputs}. A plan "
                        f"must return the same structure on every call")
    return results if results else None


def stored_leaves(value: Any) -> list[Any]:
    """The leaves of a result that get stored: all but ``None``."""
    return [leaf for leaf in pytree.tree_leaves(value) if leaf is not None]


def report_of(value: Any) -> Report:
    metas: list[TensorMeta | None] = []

    def mark(leaf: Any) -> Any:
        if leaf is None:
            return None
        metas.append(describe(leaf) if isinstance(leaf, torch.Tensor) else None)
        return Out(len(metas) - 1)

    return Report(pytree.tree_map(mark, value), tuple(metas))


def rebuild_module(argument: ModuleArgument, operands: Sequence[Any]) -> nn.Module:
    """Put the stored tensors themselves (not copies) into the module: in-place updates by an
    optimizer then change what the client's pointers name."""
    owners = dict(argument.skeleton.named_modules(remove_duplicate=False))
    for slot in argument.slots:
        getattr(owners[slot.path], slot.table)[slot.name] = operands[slot.index]
    return argument.skeleton


def unpack_held(held: Held) -> list[Any]:
    """Worker side: a first call's stored leaves, one per result id."""
    return stored_leaves(held.value)




# ------------------------------------------------------------------------------ replays
@dataclass(eq=False)
class LearnedCall:
    """A plan call's function and template, stored on the worker once so that later calls
    with the very same template name it instead of carrying it (see
    :mod:`syftzmq.plan.replay`). On the client ``function`` is the plan's :class:`Code`; it
    unpickles on the worker as the function itself."""

    function: Any
    template: Template


def run_learned(learned: LearnedCall, *operands: Any) -> Any:
    """Worker side: :func:`run_plan` with a stored template. Each run gets its own copy of the
    template's module skeletons, as a template that travelled would unpickle afresh: what one
    run does to a module (``model.eval()``, an attribute set) never reaches the next run."""
    template = learned.template
    fresh = Template(template.name, _fresh(template.arguments), template.outputs)
    return run_plan(learned.function, fresh, *operands)


def _fresh(value: Any) -> Any:
    """``value`` with each module skeleton copied; a template that can be replayed holds only
    plain containers, slots, skeletons and immutable values (see :mod:`syftzmq.plan.replay`)."""
    kind = type(value)
    if kind is list or kind is tuple:
        return kind([_fresh(item) for item in value])
    if kind is dict:
        return {key: _fresh(item) for key, item in value.items()}
    if kind is ModuleArgument:
        return ModuleArgument(_fresh_skeleton(value.skeleton), value.slots)
    return value


def _fresh_skeleton(skeleton: nn.Module) -> nn.Module:
    """A copy of ``skeleton`` as deep as a pickle round trip's: a replayable skeleton's
    attributes are immutable values or containers (hook tables, which are empty; its tensor
    and child tables; sets of names), so fresh containers make the copy a deep one. A submodule
    reachable by two paths is copied once."""
    copies: dict[int, nn.Module] = {}

    def copy_of(module: nn.Module | None) -> nn.Module | None:
        if module is None:
            return None
        done = copies.get(id(module))
        if done is not None:
            return done
        clone = object.__new__(type(module))
        copies[id(module)] = clone
        state = {name: type(value)(value) if isinstance(value, (dict, set)) else value
                 for name, value in module.__dict__.items()}
        state["_modules"] = {name: copy_of(child) for name, child in module._modules.items()}
        clone.__dict__.update(state)
        return clone

    return copy_of(skeleton)

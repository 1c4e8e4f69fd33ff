"""Plans: a Python function shipped to a worker once and run there by one command per call.

Every operation on a pointer is one command: shape inference on the client's meta mirrors,
pickling, a message, and execution on the worker — a hundred microseconds or more of Python
per operation. A training loop is hundreds of operations on small tensors, so that overhead
dwarfs the arithmetic. PySyft 0.2's answer, kept here under its names, is the *plan*::

    @sy.func2plan()
    def train(model, batches, lr):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for x, y in batches:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return model.weight.sum()

    model.send(bob)
    result = train(model, batch_pointers, 0.1)   # one command to bob; a pointer back

How a call travels:

* Called with local values only, a plan is just its function, run here.
* Called with pointers (all on one worker, else :class:`WorkerMismatchError`, as for any
  operation), the function runs on that worker as ONE fire-and-forget command, and the call
  returns pointers to its results, nested as the function nests them.
* The function travels by value (cloudpickle, with the helpers of its own module), serialized
  once per plan at its first remote call — later edits to the globals it reads are not seen.
  Other modules it uses (torch, installed packages) must be importable on the worker; a helper
  module of your own can travel too with ``cloudpickle.register_pickle_by_value(module)``.
  The worker keeps the unpickled function in a small cache. ``plan.send(worker)`` stores it on
  the worker so calls there stop carrying it at all.
* Everything else in the arguments travels by value: local tensors, numbers, a module whose
  parameters are all local (the worker trains a copy). An optimizer cannot be passed (its
  remote parameters do not pickle): make it inside the plan.
* A module argument whose parameters were sent (``model.send(w)``) travels as its structure
  with each remote parameter and buffer replaced by a reference; the worker rebuilds the module
  over the very tensors it stores. An optimizer made inside the plan updates them in place, so
  the client's parameter pointers stay valid and ``model.get()`` returns the trained weights.
  (Optimizer state made inside the plan — momentum, say — lives for one call only.)
* No shape inference on the client: running the user's whole loop on meta tensors would cost
  what plans save. Instead the *first* call for a given argument signature (structure, shapes,
  dtypes, plain values) waits for the worker to report how many results there are and their
  shapes — one round trip, so an error in that first run raises at the call. Later calls with
  the same signature reuse the report, send one command and wait for nothing; an error in them
  surfaces at the next observation, like any command's. A function whose result structure
  depends on the data fails (clearly) on a later call instead.
* Later calls skip the template too: the second call with a signature stores its template
  (arguments' structure, plain values, module skeletons) on the worker, and the calls after it
  that would send the very same template name the stored copy — one small command with the
  operands and result ids (:mod:`syftzmq.plan.replay`; a template the client cannot compare
  without pickling travels every time). The stored copy is an object in the worker's store,
  alive while an operand of a call that used it lives (:mod:`syftzmq.plan.learned`).
* After a remote call the client no longer knows which gradients changed, so ``.grad`` of any
  pointer passed to a plan is asked of the worker from then on (``_grad_unknown``).
* A worker in ``--safe`` mode never unpickles code, so it cannot run plans: the call raises
  :class:`~syftzmq.errors.OperationRefused` before anything is sent (the worker's mode is asked
  once per worker), and the worker keeps serving.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import pickle
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import cloudpickle
import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..core.ids import new_id
from ..core.refs import WorkerRef
from ..errors import OperationRefused
from ..tensor.pointer import PointerTensor
from ..tensor.remote_call import common_location, session_of, unwrap
from .pysyft import PointerPlan, placeholders
from .state import State
from .learned import LearnedTemplates
from .replay import replay_key
from .runner import (Code, LearnedCall, ModuleArgument, ModuleSlot, Out, Report, Slot, Template,
                     run_learned, run_plan, unpack_held)

_SIGNATURES_KEPT = 64      # argument signatures whose result layout a plan remembers
_BY_REFERENCE = ("syftzmq", "torch")  # packages a worker imports itself; never sent by value


def _pickle_function(function: Callable) -> Code:
    """cloudpickle ``function`` by value, with its own module's helpers: the worker may not be
    able to import the module that defined it (a script, a test file)."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    by_value = (module is not None and module.__name__ != "__main__"
                and module.__name__.split(".")[0] not in _BY_REFERENCE
                and module.__name__ not in cloudpickle.list_registry_pickle_by_value())
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps(function, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    return Code(hashlib.blake2b(payload, digest_size=16).digest(), payload)


@dataclass
class _CallArguments:
    """A call's arguments, split into the remote operands and a picklable structure."""

    arguments: tuple[tuple, dict]
    pointers: list[PointerTensor]
    signature: tuple[Hashable, ...]  # what decides the result's layout and shapes


def _split_arguments(args: tuple, kwargs: dict) -> _CallArguments:
    pointers: list[PointerTensor] = []
    signature: list[Hashable] = []
    try:
        arguments = _split_plain((args, kwargs), pointers, signature)
    except _NotPlain:  # a namedtuple, an OrderedDict, a registered node: pytree knows them
        return _split_with_pytree(args, kwargs)
    return _CallArguments(arguments, pointers, tuple(signature))


class _NotPlain(Exception):
    """Raised by :func:`_split_plain` at a container other than a list, tuple or dict."""


def _split_plain(value: Any, pointers: list[PointerTensor], signature: list[Hashable]) -> Any:
    """``value`` with every remote operand replaced as :func:`_split_with_pytree` does, for
    arguments nested in plain lists, tuples and dicts only (the common case, several times
    cheaper than a pytree walk); the structure goes into ``signature`` in pre-order."""
    kind = type(value)
    if kind is list or kind is tuple:
        signature.append((kind, len(value)))
        return kind([_split_plain(item, pointers, signature) for item in value])
    if kind is dict:
        signature.append((dict, tuple(value)))
        return {key: _split_plain(item, pointers, signature) for key, item in value.items()}
    if kind not in _LEAVES and not isinstance(value, (PointerTensor, torch.Tensor, nn.Module)) \
            and not pytree.tree_is_leaf(value):
        raise _NotPlain
    return _split_leaf(value, pointers, signature)


_LEAVES = frozenset({int, float, bool, str, bytes, complex, type(None), torch.dtype})


def _split_with_pytree(args: tuple, kwargs: dict) -> _CallArguments:
    leaves, spec = pytree.tree_flatten((args, kwargs))
    pointers: list[PointerTensor] = []
    signature: list[Hashable] = [spec]
    wire = [_split_leaf(leaf, pointers, signature) for leaf in leaves]
    return _CallArguments(pytree.tree_unflatten(wire, spec), pointers, tuple(signature))


def _split_leaf(leaf: Any, pointers: list[PointerTensor], signature: list[Hashable]) -> Any:
    """What one argument leaf travels as (a :class:`Slot`, a :class:`ModuleArgument`, or
    itself), its remote operands appended to ``pointers`` and its key to ``signature``."""
    pointer = _pointer_of(leaf)
    if pointer is not None:
        signature.append(("p", _pointer_key(pointer)))
        pointers.append(pointer)
        return Slot(len(pointers) - 1)
    if isinstance(leaf, nn.Module) and _has_remote_state(leaf):
        argument = _module_argument(leaf, pointers)
        signature.append(("m", type(leaf), tuple(_pointer_key(pointers[s.index])
                                                 for s in argument.slots)))
        return argument
    signature.append(_value_key(leaf))
    return leaf


def _pointer_of(value: Any) -> PointerTensor | None:
    if isinstance(value, PointerTensor):
        return value
    pointer = unwrap(value)  # a remote parameter, a tensor sent in place: their pointer
    return pointer if isinstance(pointer, PointerTensor) else None


def _pointer_key(pointer: PointerTensor) -> Hashable:
    """Shape, dtype and requires_grad of the target, as far as the client knows them (read
    from the mirror without building a :class:`TensorMeta`: this runs for every operand)."""
    mirror = pointer._built_mirror
    if mirror is not None:
        return (mirror.shape, mirror.dtype, mirror.requires_grad)
    meta = pointer._pending_meta
    return None if meta is None else (meta.shape, meta.dtype, meta.requires_grad)


def _value_key(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        return ("t", tuple(value.shape), value.dtype, value.requires_grad)
    if value is None or isinstance(value, (bool, int, float, complex, str, torch.dtype)):
        return ("v", type(value), value)
    return ("v", type(value))


def _has_remote_state(module: nn.Module) -> bool:
    return any(_pointer_of(p) is not None for p in module.parameters()) or \
        any(isinstance(b, PointerTensor) for b in module.buffers())


def _module_argument(module: nn.Module, pointers: list[PointerTensor]) -> ModuleArgument:
    """A copy of ``module`` without its remote tensors, and where each of them goes back.

    Each submodule is copied shallowly (it is only pickled, never used here) with fresh
    parameter, buffer and child tables; remote tensors are left out as ``None`` and their
    pointers appended to ``pointers``. Local parameters, if any, travel by value. A submodule
    reachable by two paths is copied once, so the worker's module shares it too.
    """
    slots: list[ModuleSlot] = []
    copies: dict[int, nn.Module] = {}

    def strip(owner: nn.Module, path: str) -> nn.Module:
        if id(owner) in copies:
            return copies[id(owner)]
        clone = copy.copy(owner)
        copies[id(owner)] = clone
        for table in ("_parameters", "_buffers"):
            kept: dict[str, Any] = {}
            for name, tensor in getattr(owner, table).items():
                pointer = _pointer_of(tensor)
                if pointer is None:
                    kept[name] = tensor
                else:
                    kept[name] = None
                    slots.append(ModuleSlot(path, table, name, len(pointers)))
                    pointers.append(pointer)
            clone.__dict__[table] = kept
        clone.__dict__["_modules"] = {
            name: None if child is None else strip(child, f"{path}.{name}" if path else name)
            for name, child in owner._modules.items()}
        return clone

    return ModuleArgument(strip(module, ""), slots)


# ------------------------------------------------------------------------------ client side
def _refuse_safe_worker(session: Any, location: WorkerRef, name: str) -> None:
    """Raise before sending a plan to a worker in safe mode (asked once per worker)."""
    if session.runs_safe(location):
        raise OperationRefused(
            f"plan {name!r} cannot run on worker {location.id!r}: it runs in safe mode (--safe), "
            f"which never unpickles code, and a plan ships its Python function. Nothing was "
            f"sent; use pointer operations there (they travel as named torch operations)")


# never pickled with a plan
_CLIENT_ONLY = ("_code", "_stored", "_layouts", "_pointer_plans", "_learned")


class Plan:
    """A function that runs where its pointer arguments live, as one command per call.

    Build one with :func:`func2plan`, or subclass it (PySyft 0.2's ``class Net(sy.Plan)``:
    call ``super().__init__()``, keep layers as attributes, define ``forward(self, x)``); see
    this module's docstring for the rules, and :mod:`syftzmq.plan.pysyft` for ``build``,
    ``is_built``, ``state`` and what ``send`` returns.
    """

    def __init__(self, function: Callable | None = None, name: str | None = None, *,
                 state: Any = None) -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", None) or type(self).__name__
        if function is not None:
            functools.update_wrapper(self, function)
        self.include_state = state is not None
        self.state = State(state) if state is not None else None
        self.is_built = False
        self._code: Code | None = None
        self._stored: dict[str, PointerTensor] = {}  # worker incarnation -> stored function
        self._layouts: OrderedDict[tuple, Report] = OrderedDict()
        self._pointer_plans: dict[str, Any] = {}     # worker incarnation -> its PointerPlan
        # (worker incarnation, signature, replay key) -> the LearnedCall stored there
        self._learned = LearnedTemplates()

    def _target(self) -> Callable:
        """What the plan runs: the function, or a subclass's ``forward``."""
        if self.function is not None:
            return self.function
        forward = getattr(self, "forward", None)
        if forward is None:
            raise TypeError(f"plan {self.name!r} has nothing to run: pass a function "
                            f"(sy.func2plan) or define forward(self, ...) in a Plan subclass")
        return forward

    def __getstate__(self) -> dict:
        """A class plan travels with its ``forward`` (and so its layers); the client's caches
        of stored copies and result layouts stay here."""
        state = dict(self.__dict__)
        for name in _CLIENT_ONLY:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._code, self._stored, self._layouts, self._pointer_plans = None, {}, OrderedDict(), {}
        self._learned = LearnedTemplates()

    def __repr__(self) -> str:
        where = ", ".join(p._location.id for p in self._stored.values())
        built = " built" if self.is_built else ""
        return f"<{type(self).__name__} {self.name}{built}{' on ' + where if where else ''}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(args, kwargs)

    def _run(self, args: tuple, kwargs: dict, where: Any = None) -> Any:
        """Run the plan; ``where`` (a :class:`PointerPlan`) checks the arguments' worker."""
        if self.include_state:
            args = (*args, self.state)
        split = _split_arguments(args, kwargs)
        if where is not None:
            where.check_arguments(split.pointers)
        if not split.pointers:
            return self._target()(*args, **kwargs)
        location = common_location(split.pointers, f"plan {self.name}")
        session = split.pointers[0]._require_session()
        _refuse_safe_worker(session, location, self.name)
        function: Any = self._stored.get(location.incarnation)  # a pointer: truth needs data
        if function is None:
            function = self._pickled()
        report = self._layouts.get(split.signature)
        try:
            if report is None:
                report, results = self._first_call(session, location, function, split)
                self._layouts[split.signature] = report
                while len(self._layouts) > _SIGNATURES_KEPT:
                    self._layouts.popitem(last=False)
                return results
            template = Template(self.name, split.arguments, len(report.metas))
            result_ids = [new_id() for _ in report.metas]
            learned = self._learned_call(session, location, split, template)
            if learned is not None:  # the template is on the worker: name it
                op, operands = ("func", run_learned), (learned, *split.pointers)
            else:
                op, operands = ("func", run_plan), (function, template, *split.pointers)
            session.command(location, op, operands, {}, result_ids=result_ids,
                            metas=list(report.metas))
            return _results(session, location, result_ids, report)
        finally:
            for pointer in split.pointers:  # the plan may have run backward() on them
                object.__setattr__(pointer, "_grad_unknown", True)

    def _first_call(self, session: Any, location: WorkerRef, function: Any,
                    split: _CallArguments) -> tuple[Report, Any]:
        """Run the plan keeping its whole result, learn the result's layout (one round trip),
        then split the result into one stored object per leaf."""
        template = Template(self.name, split.arguments, None)
        held_id, report_id = new_id(), new_id()
        session.command(location, ("func", run_plan), (function, template, *split.pointers), {},
                        result_ids=[held_id, report_id])
        held = session.new_pointer(location, held_id)
        report_pointer = session.new_pointer(location, report_id)
        try:
            report: Any = report_pointer.get()
            while isinstance(report, PointerTensor):  # on a chain: one hop at a time
                report = report.get()
            result_ids = [new_id() for _ in report.metas]
            if result_ids:
                session.command(location, ("func", unpack_held), (held,), {}, result_ids=result_ids,
                                metas=list(report.metas))
        finally:
            del held, report_pointer  # released with the next message
        return report, _results(session, location, result_ids, report)

    def _learned_call(self, session: Any, location: WorkerRef, split: _CallArguments,
                      template: Template) -> PointerTensor | None:
        """The worker's stored copy of this call's template (stored now, by the call that
        first meets it after its layout is known), or ``None`` if the call cannot be
        replayed (see :mod:`syftzmq.plan.replay`): then the template travels."""
        if session.holds_chains(location):  # forwarded, the call would need the template at
            return None                     # the data's worker, not here: it travels
        key = replay_key(split.arguments)
        if key is None:
            return None
        key = (location.incarnation, split.signature, key)
        stored = self._learned.get(key, split.pointers)
        if stored is None:
            stored = session.store_object_queued(location, LearnedCall(self._pickled(), template))
            self._learned.add(key, stored, split.pointers)
        return stored

    def _pickled(self) -> Code:
        if self._code is None:
            self._code = _pickle_function(self._target())
        return self._code

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """PySyft's ``build``: run the plan once on example arguments and mark it built;
        returns the results. What a later ``send`` ships is the plan as it is now (a class
        plan's layers included); copies sent before are dropped."""
        self._forget_sent()
        results = self._run(args, kwargs)
        self.is_built = True
        return results

    def _forget_sent(self) -> None:
        self._code = None
        self._stored.clear()  # their pointers die: the stored copies are deleted
        self._pointer_plans.clear()
        self._learned.clear()

    def send(self, *workers: Any) -> Any:
        """Store the plan on each worker, so calls there no longer carry it; returns a
        :class:`~syftzmq.plan.pysyft.PointerPlan` (one per worker, cached). The plan must be
        built first (PySyft's rule). It stays stored until the plan is garbage collected, or
        ``pointer_plan.get()``."""
        if not self.is_built:
            raise RuntimeError("A plan needs to be built before being sent to a worker.")
        if not workers:
            raise TypeError("send() needs at least one worker, e.g. plan.send(bob)")
        refs = []
        for worker in workers:
            session = session_of(worker)
            dest = session.ref_of(worker)
            refs.append(dest)
            if dest.incarnation not in self._stored:
                _refuse_safe_worker(session, dest, self.name)
                self._stored[dest.incarnation] = session.store_object(dest, self._pickled())
        if len(refs) == 1:
            pointer_plan = self._pointer_plans.get(refs[0].incarnation)
            if pointer_plan is None:
                pointer_plan = PointerPlan(self, refs)
                self._pointer_plans[refs[0].incarnation] = pointer_plan
            return pointer_plan
        return PointerPlan(self, refs)

    def parameters(self) -> list[Any]:
        """The state tensors: ``state`` for a function plan, the parameters of layer
        attributes and tensor attributes for a class plan (PySyft's ``parameters()``)."""
        if self.state is not None:
            return self.state.tensors()
        found: list[Any] = []
        for value in vars(self).values():
            if isinstance(value, nn.Module):
                found.extend(value.parameters())
            elif isinstance(value, torch.Tensor):
                found.append(value)
        return found

    def get(self) -> "Plan":
        """Drop every copy sent to workers; returns the plan (PySyft's ``plan.get()``)."""
        self._forget_sent()
        return self

    get_ = get


def _results(session: Any, location: WorkerRef, result_ids: list[int], report: Report) -> Any:
    """Pointers to the stored results, nested as the function nested them."""
    pointers = [session.new_pointer(location, rid, meta=meta)
                for rid, meta in zip(result_ids, report.metas)]
    return pytree.tree_map(lambda leaf: pointers[leaf.index] if isinstance(leaf, Out) else leaf,
                           report.structure)


def func2plan(function: Callable | None = None, *, args_shape: Any = None, state: Any = None,
              trace_autograd: bool = False, args_dtypes: Any = ()) -> Any:
    """Decorator: make ``function`` a :class:`Plan` (``@sy.func2plan()`` or ``@sy.func2plan``).

    ``args_shape=[(2, 3), (-1, 3)]`` builds the plan at once, by running it on zero tensors of
    those shapes (``-1`` becomes 1; ``args_dtypes`` gives their dtypes, float32 by default).
    ``state=(t, ...)`` passes a :class:`~syftzmq.plan.state.State` as the function's last
    argument (``state.read()`` is the list of tensors). ``trace_autograd`` is accepted and has
    nothing to do: the function itself runs on the worker, autograd included.
    """
    del trace_autograd

    def decorate(target: Callable) -> Plan:
        plan = Plan(target, state=state)
        if args_shape:
            examples = placeholders(args_shape, args_dtypes)
            try:
                plan.build(*examples)
            except TypeError as exc:
                raise ValueError(
                    "Automatic build using @func2plan failed!\nCheck that:\n"
                    " - you have provided the correct number of shapes in args_shape\n"
                    " - you have no simple numbers like int or float as args. If you do so, "
                    "please consider using a tensor instead.") from exc
        return plan

    if function is not None:
        return decorate(function)
    return decorate

"""How a plan call's arguments are split into what travels and what decides the result layout:
plain lists, tuples and dicts are walked directly, any other container by torch's pytree, and
both give the worker the same structure back."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import torch

from syftzmq.plan import runner
from syftzmq.plan.plan import _split_arguments, _split_with_pytree

Pair = namedtuple("Pair", "x y")


def _filled(split) -> tuple:
    """What the worker rebuilds from the travelling structure (no remote operands here)."""
    template = runner.Template("f", split.arguments, None)
    captured = []
    runner.run_plan(lambda *args, **kwargs: captured.append((args, kwargs)), template)
    return captured[0]


def test_plain_containers_travel_as_they_came():
    t = torch.ones(2)
    args, kwargs = ([1, (2.5, "s")], {"k": [t, None]}), {"lr": 0.1}
    split = _split_arguments(args, kwargs)
    assert split.pointers == []
    (got_args, got_kwargs) = _filled(split)
    assert got_args[0] == [1, (2.5, "s")] and got_kwargs == {"lr": 0.1}
    assert got_args[1]["k"][0] is t and got_args[1]["k"][1] is None


def test_the_signature_tells_structures_apart():
    signatures = {_split_arguments(args, {}).signature for args in
                  [([1, 2],), ((1, 2),), ([1, [2]],), ([[1], 2],), ({"a": 1, "b": 2},),
                   ({"b": 1, "a": 2},), ([1, 2, 3],), ([1.0, 2],)]}
    assert len(signatures) == 8
    same_shapes = [_split_arguments(([torch.full((2,), v), 1],), {}).signature for v in (1., 2.)]
    assert same_shapes[0] == same_shapes[1]  # plain values count, tensor values do not


def test_other_containers_go_through_pytree_and_keep_their_type():
    args = (Pair(1, [2, 3]), OrderedDict(a=torch.zeros(1)))
    split = _split_arguments(args, {})
    assert split.signature == _split_with_pytree(args, {}).signature
    (got_args, _) = _filled(split)
    assert isinstance(got_args[0], Pair) and got_args[0] == Pair(1, [2, 3])
    assert isinstance(got_args[1], OrderedDict) and torch.equal(got_args[1]["a"], torch.zeros(1))

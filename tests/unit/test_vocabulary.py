"""The vocabulary both processes share: message kinds and their fields, operations by name,
and references (what a chain hop names, how a connection names its process)."""

from __future__ import annotations

import pytest
import torch

from syftzmq.core import messages as m
from syftzmq.core.meta import TensorMeta
from syftzmq.core.ops import op_from_wire, op_name, op_to_wire, resolve_op
from syftzmq.core.vocabulary import (INPLACE_OPERATORS, OPERATORS, SETTABLE_ATTRIBUTES, is_inplace,
                                     tensor_property)
from syftzmq.core.refs import ChainRef, Ref, WorkerRef, routing_identity, sender_incarnation
from syftzmq.errors import OperationRefused, ProtocolError

BOB = WorkerRef("bob", "tcp://127.0.0.1:5555", "bob#0a1b2c3d")

# A valid message of every request kind (the fields each must carry, correctly typed).
VALID = {
    m.STORE: {"id": 1},
    m.MOVE_IN: {"ids": [1], "objs": [2], "owners": ["me#1"], "labels": [{}]},
    m.CMD: {"op": ("method", "add"), "args": (Ref(1), 2), "kwargs": {}, "results": [3]},
    m.DEL: {"ids": [1, 2]},
    m.FORK: {"id": 1, "old_owner": "me#1", "new_owner": "alice#2"},
    m.GET: {"refs": [Ref(1)]},
    m.INFO: {"ref": Ref(1)},
    m.MOVE: {"ids": [1], "new_ids": [2], "dest": BOB},
    m.SEARCH: {"query": ["#x", 1]}, m.CLEAR: {},
    m.MOVE_OUTCOME: {"move_id": 7},
    m.OBJECTS: {}, m.FLUSH: {}, m.PING: {}, m.SHUTDOWN: {}, m.RENEW: {}, m.BATCH: {},
}


# ------------------------------------------------------------------------------ messages


def test_every_request_kind_is_an_observation_or_fire_and_forget_never_both():
    assert not m.OBSERVATIONS & m.FIRE_AND_FORGET
    assert m.OBSERVATIONS | m.FIRE_AND_FORGET == set(m.REQUIRED_FIELDS) == set(VALID)
    assert m.BATCHABLE <= m.FIRE_AND_FORGET and m.REPLY not in m.REQUIRED_FIELDS


@pytest.mark.parametrize("kind", sorted(VALID))
def test_a_complete_message_of_each_kind_passes(kind):
    m.check_fields(m.message(kind, **VALID[kind]))


@pytest.mark.parametrize("kind,field", [(k, f) for k in sorted(VALID) for f in VALID[k]])
def test_a_missing_field_is_named(kind, field):
    msg = m.message(kind, **VALID[kind])
    del msg[field]
    with pytest.raises(ProtocolError, match=f"message {kind!r} lacks field {field!r}"):
        m.check_fields(msg)


@pytest.mark.parametrize("kind,field,value,type_name", [
    (m.STORE, "id", "1", "str"),
    (m.CMD, "op", ["method", "add"], "list"),
    (m.CMD, "args", {"a": 1}, "dict"),
    (m.CMD, "kwargs", [], "list"),
    (m.CMD, "results", (3,), "tuple"),
    (m.DEL, "ids", 1, "int"),
    (m.FORK, "old_owner", b"me#1", "bytes"),
    (m.GET, "refs", None, "NoneType"),
    (m.MOVE, "new_ids", {2}, "set"),
])
def test_a_mistyped_field_is_named_with_its_type(kind, field, value, type_name):
    msg = m.message(kind, **{**VALID[kind], field: value})
    with pytest.raises(ProtocolError, match=f"field {field!r} of message {kind!r} has type "
                                            f"{type_name}"):
        m.check_fields(msg)


def test_an_unknown_kind_is_named():
    with pytest.raises(ProtocolError, match="unknown message kind 'launch'"):
        m.check_fields({"kind": "launch"})
    with pytest.raises(ProtocolError, match="unknown message kind 'reply'"):
        m.check_fields(m.reply(1))                 # a reply is not a request


@pytest.mark.parametrize("msg,complete", [
    ({"kind": m.OBJECTS}, True),
    ({"kind": m.FLUSH, "complete": True}, True),
    ({"kind": m.FLUSH}, False),
    ({"kind": m.FLUSH, "complete": "yes"}, False),   # only the flag itself, not any truthy value
    ({"kind": m.FLUSH, "complete": 1}, False),
    ({"kind": m.GET}, False),
    ({"kind": m.INFO}, False),
    ({"kind": m.MOVE}, False),
    ({"kind": m.GET, "complete": True}, True),
])
def test_which_observations_wait_for_deletes_and_hand_offs_in_flight(msg, complete):
    assert m.needs_complete_flush(msg) is complete


def test_messages_and_replies_are_unique_and_carry_their_defaults():
    first, second = m.message(m.DEL, ids=[1]), m.message(m.DEL, ids=[1])
    assert first["nonce"] != second["nonce"]       # identical commands are not replays
    assert (first["kind"], first["req"], first["origin"], first["ids"]) == (m.DEL, 0, "", [1])
    answer = m.reply(7, value=3)
    assert (answer["kind"], answer["req"], answer["value"], answer["error"]) == (m.REPLY, 7, 3, None)
    other = m.reply(8)
    answer["failures"].append("x")
    assert other["failures"] == []                  # no list shared between replies


# ------------------------------------------------------------------------------ operations


@pytest.mark.parametrize("function,name", [
    (torch.add, "torch.add"),
    (torch.matmul, "torch.matmul"),
    (torch.nn.functional.relu, "torch.nn.functional.relu"),
])
def test_torch_functions_travel_by_name(function, name):
    assert op_to_wire(("func", function)) == ("func", name)


@pytest.mark.parametrize("function", [torch.add, torch.nn.functional.relu, torch.linalg.norm,
                                      torch.fft.fft, torch.special.erf, torch.nn.functional.conv2d])
def test_a_named_function_comes_back_as_itself(function):
    kind, name = op_to_wire(("func", function))
    assert kind == "func" and isinstance(name, str) and name.startswith("torch.")
    assert op_from_wire((kind, name), safe=True) == ("func", function)


def test_tensor_methods_called_as_functions_travel_as_methods():
    assert op_to_wire(("func", torch.Tensor.add)) == ("method", "add")
    assert op_to_wire(("func", torch.Tensor.__mul__)) == ("method", "__mul__")
    assert op_to_wire(("method", "add_")) == ("method", "add_")


def test_code_travels_pickled_and_only_an_unsafe_worker_runs_it():
    def double(x):
        return x * 2
    assert op_to_wire(("func", double)) == ("func", double)
    assert op_from_wire(("func", double), safe=False) == ("func", double)
    with pytest.raises(OperationRefused, match="allow-list"):
        op_from_wire(("func", double), safe=True)


@pytest.mark.parametrize("name", ["torch.load", "torch.save", "torch.hub.load", "os.system",
                                  "torch._C._nn"])
@pytest.mark.parametrize("safe", [True, False])
def test_names_outside_the_tensor_operations_are_refused_by_every_worker(name, safe):
    with pytest.raises(OperationRefused, match="allow-list" if safe else "unknown torch operation"):
        op_from_wire(("func", name), safe=safe)


@pytest.mark.parametrize("method", ["apply_", "map_", "storage", "untyped_storage", "data_ptr",
                                    "numpy", "tolist", "share_memory_", "set_", "_base",
                                    "__reduce_ex__", "register_hook"])
def test_a_safe_worker_refuses_tensor_methods_that_reach_memory_or_code(method):
    with pytest.raises(OperationRefused, match=repr(method)):
        op_from_wire(("method", method), safe=True)
    assert op_from_wire(("method", method), safe=False) == ("method", method)


@pytest.mark.parametrize("method", ["add", "add_", "sum", "view", "__add__", "__radd__",
                                    "__iadd__", "__getitem__", "__setitem__", "backward"])
def test_a_safe_worker_runs_tensor_operations_and_operators(method):
    """A safe worker resolves an allowed method through its fixed table: to a function that
    applies exactly that tensor method (the name from the wire is only a key)."""
    kind, function = op_from_wire(("method", method), safe=True)
    assert kind == "func" and callable(function)
    if method in ("add", "add_", "__add__", "__radd__", "__iadd__"):
        x = torch.tensor([1.0, 2.0])
        torch.testing.assert_close(function(x.clone(), 1.0), getattr(x.clone(), method)(1.0))


@pytest.mark.parametrize("op,error", [
    (("func",), ValueError), ("add", ValueError), (["method", "add"], ValueError),
    (("exec", "x"), ValueError),
    (("method", 3), OperationRefused), (("op", 3), OperationRefused),  # safe: not a listed name
    (("getattr", None), OperationRefused),
    (("op", "prims::add"), OperationRefused),          # safe: aten only
    (("getattr", "sum"), OperationRefused),            # a method, not a property
    (("getattr", "_cdata"), OperationRefused),
    (("setattr", "shape"), OperationRefused),          # not settable
    (("setattr", "T"), OperationRefused),
])
def test_malformed_or_refused_operations(op, error):
    with pytest.raises(error):
        op_from_wire(op, safe=True)


@pytest.mark.parametrize("op", [("method", 3), ("op", 3), ("getattr", None)])
def test_a_default_worker_calls_a_malformed_name_malformed(op):
    with pytest.raises(ValueError):
        op_from_wire(op, safe=False)


def test_named_operators_and_properties_pass():
    assert op_from_wire(("op", "aten::add.Tensor"), safe=True) == \
        ("func", torch.ops.aten.add.Tensor)  # safe: resolved through the allow-list's table
    assert op_from_wire(("op", "prims::add"), safe=False) == ("op", "prims::add")
    for safe in (False, True):
        assert op_from_wire(("getattr", "T"), safe=safe) == ("getattr", "T")
        for name in sorted(SETTABLE_ATTRIBUTES):
            assert op_from_wire(("setattr", name), safe=safe) == ("setattr", name)


def test_torch_ops_operators_are_named_and_resolved_back():
    assert op_name(torch.ops.aten.add.Tensor) == "aten::add.Tensor"
    assert resolve_op("aten::add.Tensor") is torch.ops.aten.add.Tensor
    assert op_name(torch.ops.aten.add) == "aten::add"
    assert resolve_op("aten::add") is torch.ops.aten.add


@pytest.mark.parametrize("name,inplace", [
    ("add_", True), ("__iadd__", True), ("__imatmul__", True), ("__ior__", True),
    ("__setitem__", True), ("zero_", True),
    ("add", False), ("__add__", False), ("__radd__", False), ("__getitem__", False),
    ("__init__", False), ("__eq__", False), ("sum", False),
])
def test_is_inplace(name, inplace):
    assert is_inplace(name) is inplace


def test_operator_vocabulary():
    assert {"__add__", "__radd__", "__iadd__", "__rmatmul__", "__neg__", "__getitem__",
            "__setitem__", "__eq__", "__ilshift__"} <= OPERATORS
    assert {op for op in INPLACE_OPERATORS if hasattr(torch.Tensor, op)} <= OPERATORS
    assert "__imatmul__" not in OPERATORS  # torch.Tensor has none: the vocabulary follows torch
    assert all(name.startswith("__i") for name in INPLACE_OPERATORS)
    assert "__iadd_" not in OPERATORS and "__rneg__" not in OPERATORS


@pytest.mark.parametrize("name,is_property", [
    ("T", True), ("shape", True), ("grad", True), ("data", True), ("requires_grad", True),
    ("is_cuda", True), ("mT", True),
    ("sum", False), ("add_", False), ("__add__", False), ("no_such_thing", False),
])
def test_tensor_property(name, is_property):
    assert tensor_property(name) is is_property


# ------------------------------------------------------------------------------ references


def test_a_chain_hop_names_its_target_not_itself():
    hop = ChainRef(BOB, id_at_location=11, id=22, meta=TensorMeta(torch.Size([2]), torch.float32))
    assert hop.as_ref() == Ref(11)
    assert ChainRef(BOB, 11, 22, attr="grad").as_ref() == Ref(11, "grad")
    assert hop.owning is True and hop.owner is None


def test_worker_refs_are_equal_by_incarnation_not_by_shared_memory_namespace():
    assert WorkerRef("bob", "tcp://a", "bob#1", shm="x") == WorkerRef("bob", "tcp://a", "bob#1")
    assert WorkerRef("bob", "tcp://a", "bob#1") != WorkerRef("bob", "tcp://a", "bob#2")
    assert len({WorkerRef("bob", "tcp://a", "bob#1", shm="x"),
                WorkerRef("bob", "tcp://a", "bob#1", shm="y")}) == 1
    assert repr(BOB) == "WorkerRef('bob', 'tcp://127.0.0.1:5555')"


def test_each_connection_gets_its_own_identity_that_names_its_process():
    first, second = routing_identity("me#a1b2c3"), routing_identity("me#a1b2c3")
    assert first != second and isinstance(first, bytes)
    assert sender_incarnation(first) == sender_incarnation(second) == "me#a1b2c3"
    assert sender_incarnation(b"lease-watcher") == "lease-watcher"   # a raw peer's own identity
    assert sender_incarnation(b"\xff\xfe|1") == "\ufffd\ufffd"       # undecodable: never raises


def test_an_incarnation_with_a_bar_survives_its_routing_identity():
    assert sender_incarnation(routing_identity("a|b#1234")) == "a|b#1234"

"""Serialization: tensor bytes in and out of band, the C pickler unless only cloudpickle can,
and the safe worker's unpickler (an allow-list of globals). No sockets: headers and buffers are
handed over in memory, as the envelope would."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

from syftzmq.core.failures import Failure
from syftzmq.core.meta import TensorMeta
from syftzmq.core.refs import ChainRef, Ref, WorkerRef
from syftzmq.errors import ProtocolError, RefusedByPolicy
from syftzmq.wire.safe import TRAVELS_BY_NAME, SafeUnpickler
from syftzmq.wire.serde import INLINE_LIMIT, dumps, loads, rebuild_tensor

BOB = WorkerRef("bob", "tcp://127.0.0.1:5555", "bob#0a1b2c3d")


def _safe_loads(obj):
    return loads(*dumps(obj), unpickler=SafeUnpickler)


# ------------------------------------------------------------------------------ in and out of band


def test_the_inline_limit_is_where_a_buffer_leaves_the_pickle():
    elements = INLINE_LIMIT // 4                          # float32
    _, at_limit = dumps(torch.ones(elements))
    _, below = dumps(torch.ones(elements - 1))
    assert [b.nbytes for b in at_limit] == [INLINE_LIMIT] and below == []


def test_each_large_tensor_is_its_own_buffer_in_order_and_a_repeated_one_travels_once():
    a, b = torch.full((2048,), 1.0), torch.full((4096,), 2.0)
    header, buffers = dumps({"a": a, "b": b, "again": a})
    assert [buf.nbytes for buf in buffers] == [a.nbytes, b.nbytes]
    back = loads(header, buffers)
    assert torch.equal(back["a"], a) and torch.equal(back["b"], b)
    assert back["again"] is back["a"]


def test_a_non_contiguous_tensor_travels_as_its_values():
    odd = torch.arange(4096.0).reshape(64, 64).t()
    header, buffers = dumps(odd)
    assert len(buffers) == 1
    back = loads(header, buffers)
    assert torch.equal(back, odd) and back.is_contiguous()


def test_a_writable_received_buffer_is_used_in_place_a_read_only_one_is_copied():
    header, (buffer,) = dumps(torch.zeros(2048))
    received = bytearray(buffer)
    in_place = loads(header, [memoryview(received)])      # as unpack() hands over a frame
    received[:4] = torch.tensor([5.0]).numpy().tobytes()
    assert in_place[0].item() == 5.0                      # no copy: the frame is the tensor
    copied = loads(header, [memoryview(bytes(buffer))])
    copied[0] = 7.0                                       # writable, though the frame was not
    assert copied[0].item() == 7.0 and copied[1].item() == 0.0


_CYCLES = """
import gc, torch
from syftzmq.wire import Signer, pack
from syftzmq.wire.serde import dumps

class Held:
    pass

def message_in_a_cycle():
    tensor = torch.ones(1 << 14)
    header, buffers = dumps({"x": tensor, "y": [tensor[:5000], torch.zeros(3000, dtype=torch.float64)]})
    held = Held()
    held.me = held                                   # a cycle, as a kept traceback makes one
    held.buffers, held.frames = buffers, pack(Signer(b"k" * 32), header, buffers)

for n in range(400):
    message_in_a_cycle()
    if n % 7 == 0:
        gc.collect()
print("collected")
"""


def test_a_message_kept_in_a_reference_cycle_is_collected_without_a_crash():
    """A failed send's traceback holds the message's buffers and frames; a caller that keeps
    the exception in a local of a frame on that traceback makes them garbage in one cycle.
    The garbage collector must clear them: with buffers that were views of views (``raw()`` of
    a PickleBuffer over a memoryview), CPython 3.11 crashed doing so. In a process of its own,
    so that a crash fails this test instead of ending the run."""
    result = subprocess.run([sys.executable, "-c", _CYCLES], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "collected" in result.stdout, result.stderr[-2000:]


def test_in_band_tensors_own_their_memory():
    header, buffers = dumps([torch.arange(4.0)])
    assert buffers == []
    (back,) = loads(header, [])
    back += 1
    assert torch.equal(back, torch.arange(1.0, 5.0))


def test_what_a_tensor_carries_besides_its_values():
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    back = loads(*dumps(frozen))
    assert isinstance(back, torch.nn.Parameter) and back.requires_grad is False
    leaf = torch.ones(3, requires_grad=True)
    leaf.grad = torch.full((3,), 4.0)
    back = loads(*dumps(leaf))
    assert back.requires_grad and back.is_leaf and torch.equal(back.grad, leaf.grad)
    assert loads(*dumps(torch.ones(3, dtype=torch.float16))).dtype == torch.float16
    assert loads(*dumps(torch.zeros(0, 5))).shape == (0, 5)


@pytest.mark.parametrize("nbytes", [0, 7, 9, 16])
def test_bytes_that_do_not_match_the_declared_shape_are_refused(nbytes):
    with pytest.raises(ProtocolError, match=r"shape \(2,\) and dtype torch.float32 needs 8 "
                                            rf"bytes, got {nbytes}"):
        rebuild_tensor(bytearray(nbytes), torch.float32, (2,), False, None, False)


def test_a_truncated_buffer_is_the_senders_error():
    header, (buffer,) = dumps(torch.ones(2048))
    with pytest.raises(ProtocolError, match="needs 8192 bytes, got 8188"):
        loads(header, [bytearray(buffer)[:-4]])
    with pytest.raises(ProtocolError, match="cannot deserialize"):
        loads(header, [])                                 # the buffer is missing


@pytest.mark.parametrize("header", [b"", b"not a pickle", pickle.dumps({"a": 1})[:-3]])
def test_an_unparsable_header_is_a_protocol_error(header):
    with pytest.raises(ProtocolError, match="cannot deserialize"):
        loads(header, [])


# ------------------------------------------------------------------------------ cloudpickle only when needed


def _importable(x):
    return x + 1


@pytest.mark.parametrize("message", [
    {"kind": "cmd", "op": ("func", "torch.add"), "args": (Ref(1), 2.5), "kwargs": {},
     "results": [3, 4], "nonce": 1 << 40},
    {"value": torch.randn(64, 64), "dtype": torch.float64, "size": torch.Size([2])},
    {"ref": ChainRef(BOB, 1, 2, TensorMeta(torch.Size([2]), torch.float32))},
    {"f": _importable, "g": os.path.join, "torch": torch.add},
])
def test_messages_of_importable_things_use_the_c_pickler(message):
    header, buffers = dumps(message)
    assert b"cloudpickle" not in header
    back = loads(header, buffers)
    assert set(back) == set(message)


def test_local_code_goes_by_value():
    def scale(x, factor=3):
        return x * factor

    class Local:
        def __init__(self, n):
            self.n = n

    header, buffers = dumps({"f": scale, "obj": Local(4), "t": torch.ones(2048)})
    assert b"cloudpickle" in header and len(buffers) == 1   # tensors stay out of band
    back = loads(header, buffers)
    assert back["f"](2) == 6 and back["obj"].n == 4 and torch.equal(back["t"], torch.ones(2048))


def test_a_function_of_the_main_script_goes_by_value(monkeypatch):
    """The C pickler would name it ``__main__.<name>``, which a worker cannot import."""
    def script_function(x):
        return x * 5
    script_function.__module__ = "__main__"
    script_function.__qualname__ = script_function.__name__ = "syftzmq_unit_script_function"
    monkeypatch.setattr(sys.modules["__main__"], "syftzmq_unit_script_function",
                        script_function, raising=False)
    pickle.dumps(script_function)                         # the C pickler alone would succeed
    header, buffers = dumps({"f": script_function})
    assert b"cloudpickle" in header
    monkeypatch.delattr(sys.modules["__main__"], "syftzmq_unit_script_function")
    assert loads(header, buffers)["f"](2) == 10           # rebuilt without __main__'s help


def test_a_string_that_names_main_costs_a_cloudpickle_pass_and_nothing_else():
    message = {"text": "if __name__ == '__main__':", "t": torch.ones(3)}
    back = loads(*dumps(message))
    assert back["text"] == message["text"] and torch.equal(back["t"], torch.ones(3))


# ------------------------------------------------------------------------------ the safe unpickler


@pytest.mark.parametrize("obj", TRAVELS_BY_NAME, ids=lambda o: o.__qualname__)
def test_every_name_that_travels_is_resolved_by_the_safe_unpickler(obj):
    unpickler = SafeUnpickler(io.BytesIO(b""))
    assert unpickler.find_class(obj.__module__, obj.__qualname__) is obj


def test_syftzmq_records_round_trip_through_the_safe_unpickler():
    meta = TensorMeta(torch.Size([2, 3]), torch.float32, True,
                      grad=TensorMeta(torch.Size([2, 3]), torch.float32))
    records = [BOB, Ref(5, "grad"), ChainRef(BOB, 1, 2, meta, owning=False, owner=BOB, attr="data"),
               Failure("builtins.ValueError", "bad", "Traceback ...", "bob", {"k": 1}), meta]
    assert _safe_loads(records) == records


def test_tensors_and_parameters_round_trip_through_the_safe_unpickler():
    leaf = torch.randn(64, 64, requires_grad=True)
    leaf.grad = torch.ones(64, 64)
    back = _safe_loads({"small": torch.arange(3), "large": leaf,
                        "param": torch.nn.Parameter(torch.ones(2))})
    assert torch.equal(back["small"], torch.arange(3))
    assert torch.equal(back["large"].detach(), leaf.detach())
    assert torch.equal(back["large"].grad, leaf.grad)
    assert isinstance(back["param"], torch.nn.Parameter)


@pytest.mark.parametrize("value", [
    torch.float32, torch.bfloat16, torch.complex64, torch.bool, torch.uint8,
    torch.Size([2, 3]), torch.device("cpu"), slice(1, None, 2), Ellipsis, 1 + 2j, range(2, 9),
    {1, 2}, frozenset({"a"}), bytearray(b"raw"), (None, True, 1.5, "s", b"b", [1], {"d": 2}),
])
def test_plain_values_pass_the_safe_unpickler(value):
    assert _safe_loads(value) == value


@pytest.mark.parametrize("value", [torch.strided, torch.channels_last, torch.contiguous_format],
                         ids=str)
def test_layouts_and_memory_formats_pass_the_safe_unpickler(value):
    assert _safe_loads({"memory_format": value}) == {"memory_format": value}


def test_the_layout_lookup_returns_layouts_only():
    """A pickle may name the layout lookup, but it finds layouts only: a dtype's name (or
    anything else) is refused."""
    forged = b"ctorch.serialization\n_get_layout\n(Vtorch.float32\ntR."
    with pytest.raises(ProtocolError, match="not a torch layout"):
        loads(forged, [], unpickler=SafeUnpickler)


def _pickle_naming(module: str, name: str) -> bytes:
    """A protocol-0 pickle that loads the global ``module.name`` (and nothing else)."""
    return f"c{module}\n{name}\n.".encode()


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "getattr"), ("builtins", "eval"),
    ("builtins", "__import__"), ("subprocess", "Popen"), ("torch", "load"), ("torch", "Tensor"),
    ("torch._utils", "_rebuild_tensor_v2"), ("cloudpickle.cloudpickle", "_make_function"),
    ("syftzmq.wire.serde", "loads"), ("syftzmq.core.refs", "routing_identity"),
])
def test_the_safe_unpickler_refuses_any_other_global_by_name(module, name):
    with pytest.raises(RefusedByPolicy, match=f"refuses to unpickle {module}.{name}:"):
        loads(_pickle_naming(module, name), [], unpickler=SafeUnpickler)


def test_the_safe_unpickler_refuses_before_importing():
    with pytest.raises(RefusedByPolicy, match="refuses to unpickle syftzmq_no_such_module.f"):
        loads(_pickle_naming("syftzmq_no_such_module", "f"), [], unpickler=SafeUnpickler)


def test_real_payloads_that_need_code_are_refused_by_a_safe_worker():
    with pytest.raises(RefusedByPolicy, match="cloudpickle"):
        _safe_loads({"f": lambda x: x})
    with pytest.raises(RefusedByPolicy, match="posix.system"):
        _safe_loads(os.system)
    with pytest.raises(RefusedByPolicy, match="torch._utils._rebuild_sparse_tensor"):
        _safe_loads(torch.ones(2).to_sparse())
    assert loads(*dumps(torch.ones(2).to_sparse())).to_dense().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("value", [torch.tensor(3.5), torch.arange(6.0).reshape(2, 3),
                                   torch.arange(8, dtype=torch.int16).reshape(2, 2, 2)[:, 1],
                                   torch.ones(3, requires_grad=True)])
def test_small_tensors_travel_in_band_as_bytes_and_come_back_alike(value):
    header, buffers = dumps(value)
    back = loads(header, buffers)
    assert buffers == [] and back.shape == value.shape and back.dtype == value.dtype
    assert torch.equal(back.detach(), value.detach()) and back.requires_grad == value.requires_grad


def test_reused_picklers_keep_messages_apart():
    """Picklers are reused (see ``serde._Pickling``): what one message shared is not shared
    with the next, a message pickled while another is being pickled gets a pickler of its own,
    and out-of-band buffers stay with their message."""
    from syftzmq.wire import serde

    shared = [1, 2, 3]
    first = serde.loads(*serde.dumps({"a": shared, "b": shared}))
    second = serde.loads(*serde.dumps({"c": shared}))
    assert first["a"] is first["b"] and first["a"] == shared and second == {"c": shared}

    class Nested:
        def __reduce__(self):
            inner, _ = serde.dumps({"inner": torch.ones(3)})  # pickled mid-way through another
            return bytes, (inner,)

    header, buffers = serde.dumps({"outer": Nested(), "big": torch.arange(4096.0)})
    outer = serde.loads(header, buffers)
    assert len(buffers) == 1 and torch.equal(outer["big"], torch.arange(4096.0))
    assert torch.equal(serde.loads(outer["outer"], [])["inner"], torch.ones(3))
    assert serde.dumps({"small": 1})[1] == []  # the big buffer did not stay behind

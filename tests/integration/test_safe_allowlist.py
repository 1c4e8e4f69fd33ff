"""``--safe`` is an allow-list: every operation a key holder can name is checked against
:mod:`syftzmq.core.allowlist`, and everything else is refused with an error naming it.

The attacks here are sent for real, signed with the cluster key, to a worker started with
``safe=True``: reading a file (``aten::from_file``), writing one (a shared, writable mapping),
reading the worker's heap through a view larger than its storage (``_reshape_alias``,
``as_strided``), and the other doors around them (``set_``, storages, ``__reduce_ex__``,
``__setstate__``, private attribute names). Each must come back as a refusal that names the
operation, and the worker must go on serving: every test ends with a small walkthrough on the
same worker.
"""

from __future__ import annotations

import gc
import os
import re

import pytest
import torch

import syftzmq as sy
from support.workers import started_workers
from syftzmq.core import allowlist
from syftzmq.core.ids import new_id
from syftzmq.core.ops import op_from_wire
from syftzmq.errors import OperationRefused
from syftzmq.core.messages import GET, message
from syftzmq.core.refs import Ref

PASSWD = "/etc/passwd"


@pytest.fixture(scope="module")
def safe_bob(hook):
    with started_workers(hook, "allowlist_bob", safe=True) as (bob,):
        yield bob


def send_command(worker, op: tuple, args: tuple, kwargs: dict | None = None):
    """Send one hand-named operation through the session's command path (signed with the
    cluster key, like any client command) and return a pointer to its result."""
    session = sy.default_session()
    result = new_id()
    session.command(worker.ref, op, args, kwargs or {}, result_ids=[result])
    return session.new_pointer(worker.ref, result)


def refusal(pointer) -> str:
    """The error text of the command behind ``pointer``, which must have failed. Nothing of it
    stays alive here (the traceback would keep the pointer, and so its stored failure)."""
    try:
        value = pointer.get()
    except sy.RemoteError as exc:
        return str(exc)
    raise AssertionError(f"not refused: it returned {value!r:.120}")


def assert_refused(text: str, name: str) -> None:
    assert "OperationRefused" in text, text
    assert "allow-list" in text and name in text, text


def assert_still_serving(worker) -> None:
    """send, add, get on the same worker: it is alive and computes correctly."""
    x = torch.tensor([1.0, 2.0, 3.0]).send(worker)
    y = (x + torch.tensor([10.0, 20.0, 30.0]).send(worker)) * 2
    assert torch.equal(y.get(), torch.tensor([22.0, 44.0, 66.0]))
    del x
    gc.collect()  # remote errors' tracebacks hold pointers in cycles
    assert worker._objects == {}


def passwd_bytes() -> bytes:
    with open(PASSWD, "rb") as f:
        return f.read()


# ------------------------------------------------------------------ file read
@pytest.mark.parametrize("op", [("op", "aten::from_file"), ("op", "aten::from_file.default"),
                                ("func", "torch.from_file"), ("op", "aten::from_file.out")])
def test_reading_a_file_is_refused(safe_bob, op):
    size = len(passwd_bytes())
    text = refusal(send_command(safe_bob, op, (PASSWD,),
                                {"shared": False, "size": size, "dtype": torch.uint8}))
    assert_refused(text, op[1])
    assert passwd_bytes()[:16].decode(errors="replace") not in text
    assert_still_serving(safe_bob)


# ------------------------------------------------------------------ file write
def test_writing_a_file_through_a_shared_mapping_is_refused(safe_bob, tmp_path):
    target = tmp_path / "evil.pth"
    payload = torch.tensor(list(b"import os; os.system('touch /tmp/pwned')\n"), dtype=torch.uint8)
    mapped = send_command(safe_bob, ("op", "aten::from_file"), (str(target),),
                          {"shared": True, "size": len(payload), "dtype": torch.uint8})
    copied = send_command(safe_bob, ("method", "copy_"), (mapped, payload.send(safe_bob)))
    assert_refused(refusal(mapped), "aten::from_file")
    assert_refused(refusal(copied), "aten::from_file")  # its operand is the refused command
    assert not target.exists()
    del mapped, copied
    assert_still_serving(safe_bob)


# ------------------------------------------------------------------ views beyond the storage
@pytest.mark.parametrize("op, extra", [
    (("op", "aten::_reshape_alias"), ([1 << 28], [1])),
    (("op", "aten::_reshape_alias.default"), ([1 << 28], [1])),
    (("op", "aten::as_strided"), ([1 << 28], [1])),
    (("op", "aten::as_strided.default"), ([1 << 28], [1])),
    (("method", "as_strided"), ([1 << 28], [1])),
    (("method", "as_strided_"), ([1 << 28], [1])),
    (("func", "torch.as_strided"), ([1 << 28], [1])),
    (("method", "_reshape_alias"), ([1 << 28], [1])),
    (("func", "torch.as_strided_copy"), ([1 << 28], [1])),
    (("func", "torch.as_strided_scatter"), (torch.zeros(4), [4], [1 << 20])),
])
def test_views_beyond_the_storage_are_refused(safe_bob, op, extra):
    x = torch.zeros(4, dtype=torch.uint8).send(safe_bob)
    extra = tuple(e.send(safe_bob) if isinstance(e, torch.Tensor) else e for e in extra)
    assert_refused(refusal(send_command(safe_bob, op, (x, *extra))), op[1])
    del x, extra
    assert_still_serving(safe_bob)


# ------------------------------------------------------------------ the doors around them
HOSTILE_OPS = [
    ("method", "set_"), ("method", "untyped_storage"), ("method", "storage"),
    ("method", "_typed_storage"), ("method", "share_memory_"), ("method", "data_ptr"),
    ("method", "storage_offset"), ("method", "new_tensor"), ("method", "__setstate__"),
    ("method", "__reduce_ex__"), ("method", "__reduce__"), ("method", "__getattribute__"),
    ("method", "__setattr__"), ("method", "__class__"), ("method", "__init_subclass__"),
    ("method", "_unsafe_view"), ("method", "_set_"), ("method", "resize_"),
    ("method", "apply_"), ("method", "map_"), ("method", "register_hook"),
    ("method", "type"), ("method", "__deepcopy__"), ("method", "_make_subclass"),
    ("method", "pin_memory"), ("method", "to_mkldnn"), ("method", "numpy"),
    ("func", "torch.load"), ("func", "torch.save"), ("func", "torch.frombuffer"),
    ("func", "torch.from_file"), ("func", "torch.empty"), ("func", "torch.empty_strided"),
    ("func", "torch.unsafe_split"), ("func", "torch.unsafe_chunk"), ("func", "torch.set_"),
    ("func", "torch._C._set_grad_enabled"), ("func", "torch.serialization.load"),
    ("func", "torch.hub.load"), ("func", "torch.jit.load"), ("func", "torch.ops.aten.set_"),
    ("func", "os.system"), ("func", "builtins.eval"), ("func", "torch.__dict__"),
    ("op", "aten::set_.source_Storage"), ("op", "aten::set_"), ("op", "aten::_unsafe_view"),
    ("op", "aten::_unsafe_index"), ("op", "aten::_unsafe_index_put"), ("op", "aten::empty"),
    ("op", "aten::empty.memory_format"), ("op", "aten::_make_per_tensor_quantized_tensor"),
    ("op", "aten::_nested_view_from_buffer"), ("op", "aten::unfold_backward"),
    ("op", "aten::__dict__"), ("op", "aten::add.__dict__"), ("op", "aten::add.__class__"),
    ("op", "aten::_ops"), ("op", "prim::device"), ("op", "quantized::linear"),
    ("op", "aten::add.Tensor.extra"), ("op", "aten::resize_"),
    ("getattr", "__dict__"), ("getattr", "_cdata"), ("getattr", "__class__"),
    ("getattr", "_base"), ("getattr", "untyped_storage"), ("getattr", "_python_dispatch"),
    ("getattr", "__reduce_ex__"), ("getattr", "_backward_hooks"), ("getattr", "grad_fn"),
    ("setattr", "__class__"), ("setattr", "__dict__"), ("setattr", "_backward_hooks"),
    ("setattr", "_cdata"), ("setattr", "__setstate__"), ("setattr", "names"),
]


@pytest.mark.parametrize("op", HOSTILE_OPS, ids=lambda op: f"{op[0]}:{op[1]}")
def test_operations_off_the_list_are_refused(safe_bob, op):
    x = torch.ones(2).send(safe_bob)
    assert_refused(refusal(send_command(safe_bob, op, (x, PASSWD))), op[1])
    assert torch.equal(x.get(), torch.ones(2))  # the operand is untouched
    assert_still_serving(safe_bob)


def test_a_private_attribute_in_a_reference_is_refused(safe_bob):
    """``Ref(id, attr)`` names ``x.grad`` or ``x.data``; no other attribute is looked up."""
    x = torch.ones(2).send(safe_bob)
    session = sy.default_session()
    for attr in ("__dict__", "_cdata", "untyped_storage", "__class__"):
        text = refusal(send_command(safe_bob, ("method", "add"),
                                    (Ref(x.id_at_location, attr), 1.0)))
        assert "OperationRefused" in text and repr(attr) in text, text
        with pytest.raises(sy.RemoteError, match=re.escape(repr(attr))):
            session.observe(safe_bob.ref, message(GET, req=new_id(),
                                                  refs=[Ref(x.id_at_location, attr)]))
    assert torch.equal(x.get(), torch.ones(2))
    assert_still_serving(safe_bob)


def test_a_reference_names_grad_or_data_only_on_a_default_worker_too(bob):
    """The reference rule holds in every mode (SECURITY.md): a default worker runs what a key
    holder sends, but an operand ``Ref(id, attr)`` still looks up ``.grad`` or ``.data``
    only, so no attribute walk starts from a reference."""
    x = torch.ones(2).send(bob)
    for attr in ("__dict__", "_cdata", "__class__"):
        text = refusal(send_command(bob, ("method", "add"), (Ref(x.id_at_location, attr), 1.0)))
        assert "OperationRefused" in text and repr(attr) in text, text
    assert torch.equal(x.get(), torch.ones(2))
    assert_still_serving(bob)


def test_a_listed_method_applies_to_tensors_only(safe_bob):
    """A method resolves to the unbound ``torch.Tensor`` method and runs on a tensor only: a
    stored non-tensor (here the number a ``size()`` command stored) as its target is refused
    by name. ``split`` is written in Python: without the check it would run its code on
    whatever object it was handed."""
    x = torch.ones(4).send(safe_bob)
    size = send_command(safe_bob, ("method", "size"), (x,))
    text = refusal(send_command(safe_bob, ("method", "split"), (size, 2)))
    assert "tensor method 'split' needs a tensor, got a" in text, text
    del size
    assert torch.equal(x.get(), torch.ones(4))
    assert_still_serving(safe_bob)


@pytest.mark.parametrize("mode", ["safe", "default"])
def test_error_texts_show_received_values_bounded(mode, safe_bob, bob):
    """A received value in an error text goes through a bounded ``repr`` (SECURITY.md): a name
    of ten million characters in a reference, or as the operation, comes back as a refusal
    of a few hundred characters, not as the value itself."""
    worker = safe_bob if mode == "safe" else bob
    huge = "A" * 10_000_000
    x = torch.ones(2).send(worker)
    texts = [refusal(send_command(worker, ("method", "add"), (Ref(x.id_at_location, huge), 1.0)))]
    if mode == "safe":
        texts += [refusal(send_command(worker, ("func", huge), (x,))),
                  refusal(send_command(worker, ("func", ["A" * 1000] * 1000), (x,)))]
    for text in texts:
        assert "AAAA" in text and len(text) < 10_000, text[:300]  # the traceback included
    assert torch.equal(x.get(), torch.ones(2))
    assert_still_serving(worker)


def test_listed_operations_still_compute(safe_bob):
    """The allow-list is not a deny-all: named aten overloads, functions, methods and the
    listed attributes work on the same worker."""
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]]).send(safe_bob)
    assert torch.equal(send_command(safe_bob, ("op", "aten::mul.Tensor"), (x, 2.0)).get(),
                       torch.tensor([[2.0, -4.0], [6.0, 8.0]]))
    assert torch.equal(send_command(safe_bob, ("op", "aten::relu.default"), (x,)).get(),
                       torch.tensor([[1.0, 0.0], [3.0, 4.0]]))
    assert torch.equal(send_command(safe_bob, ("func", "torch.fft.fft"), (x,)).get(),
                       torch.fft.fft(torch.tensor([[1.0, -2.0], [3.0, 4.0]])))
    assert torch.equal(x.view(4).get(), torch.tensor([1.0, -2.0, 3.0, 4.0]))
    assert torch.equal(x.T.get(), torch.tensor([[1.0, 3.0], [-2.0, 4.0]]))
    del x
    assert_still_serving(safe_bob)


# ------------------------------------------------------------------ listed ops, hostile arguments
BIG = 10 ** 7
HOSTILE_INDICES = [
    ("func", "torch.gather", lambda: (torch.ones(3), 0, torch.tensor([BIG])), {}),
    ("func", "torch.index_select", lambda: (torch.ones(3), 0, torch.tensor([BIG])), {}),
    ("func", "torch.take", lambda: (torch.ones(3), torch.tensor([BIG])), {}),
    ("method", "put_", lambda: (torch.zeros(3), torch.tensor([BIG]), torch.ones(1)), {}),
    ("method", "index_put_", lambda: (torch.zeros(3), (torch.tensor([BIG]),), torch.tensor(1.0)),
     {"accumulate": True}),
    ("method", "__setitem__", lambda: (torch.zeros(3), torch.tensor([BIG]), 1.0), {}),
    ("method", "scatter_", lambda: (torch.zeros(3), 0, torch.tensor([BIG]), torch.ones(1)), {}),
    ("method", "masked_scatter_", lambda: (torch.zeros(3), torch.ones(3, dtype=torch.bool),
                                           torch.ones(1)), {}),
    ("func", "torch.nn.functional.embedding", lambda: (torch.tensor([BIG]), torch.ones(3, 2)),
     {"max_norm": 1.0}),
    ("func", "torch.nn.functional.embedding_bag",
     lambda: (torch.tensor([1, 2]), torch.ones(3, 2), torch.tensor([0, BIG])), {}),
    ("func", "torch.nn.functional.max_unpool1d",
     lambda: (torch.ones(1, 1, 2), torch.tensor([[[BIG, 1]]]), 2), {}),
    ("func", "torch.repeat_interleave", lambda: (torch.tensor([3, 4]),), {"output_size": 1}),
    ("func", "torch.searchsorted", lambda: (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0])),
     {"sorter": torch.tensor([BIG, 0, 1])}),
    ("func", "torch.linalg.lu_solve",
     lambda: (torch.eye(3), torch.tensor([BIG, 2, 3], dtype=torch.int32), torch.ones(3, 1)), {}),
    ("func", "torch.lu_unpack",
     lambda: (torch.eye(3), torch.tensor([BIG, 2, 3], dtype=torch.int32)), {}),
    ("method", "unfold", lambda: (torch.zeros(3), 0, 5, 1), {}),
    ("method", "view", lambda: (torch.zeros(3), torch.int64), {}),
]


@pytest.mark.parametrize("kind, name, make_args, kwargs", HOSTILE_INDICES,
                         ids=[case[1] for case in HOSTILE_INDICES])
def test_listed_ops_check_hostile_indices_on_the_worker(safe_bob, kind, name, make_args, kwargs):
    """Listed ops that take indices, sizes or pivots are listed because torch checks them: an
    out-of-range value is an error on the worker, never a read or write outside the tensor."""
    def send(value):
        if isinstance(value, torch.Tensor):
            return value.send(safe_bob)
        if isinstance(value, tuple):
            return tuple(send(v) for v in value)
        return value

    args = send(make_args())
    remote_kwargs = {key: send(value) for key, value in kwargs.items()}
    text = refusal(send_command(safe_bob, (kind, name), args, remote_kwargs))
    assert "OperationRefused" not in text and re.search(
        r"IndexError|RuntimeError|out of (range|bounds)|invalid|must|size", text), text
    del args, remote_kwargs
    assert_still_serving(safe_bob)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.05),
], ids=["sgd-momentum", "adam"])
def test_a_safe_worker_trains_like_local_torch(safe_bob, make_opt):
    torch.manual_seed(0)
    data, target = torch.randn(8, 2), torch.randn(8, 1)
    local = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    remote = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    remote.load_state_dict(local.state_dict())
    local_opt, remote_opt = make_opt(local.parameters()), make_opt(remote.parameters())
    remote.send(safe_bob)
    r_data, r_target = data.send(safe_bob), target.send(safe_bob)
    for _ in range(3):
        for model, opt, x, y in ((local, local_opt, data, target),
                                 (remote, remote_opt, r_data, r_target)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    remote.get()
    for mine, theirs in zip(local.parameters(), remote.parameters()):
        torch.testing.assert_close(theirs.data, mine.data)
    del r_data, r_target, remote_opt, loss, model, opt, x, y
    assert_still_serving(safe_bob)


# ------------------------------------------------------------------ the list itself
def test_every_listed_name_resolves_in_this_torch():
    """A torch upgrade that renames or removes a listed operation fails here, loudly."""
    missing = allowlist.unresolved_names()
    assert missing == [], f"allow-listed names that this torch {torch.__version__} lacks: {missing}"
    assert len(allowlist.TORCH_FUNCTIONS) > 300 and len(allowlist.TENSOR_METHODS) > 300
    for name in sorted(allowlist.TORCH_FUNCTIONS):
        assert callable(allowlist.resolve_function(name)), name
    for name in sorted(allowlist.ATEN_OPERATORS):
        assert isinstance(allowlist.resolve_aten(name), torch._ops.OpOverload), name


DANGEROUS = re.compile(
    r"from_file|frombuffer|set_$|set_\.|_unsafe|unsafe_|storage|strided|_reshape_alias|"
    r"share_memory|"
    r"data_ptr|pin_memory|load|save|apply_|map2?_|hook|__reduce|__setstate|__getstate|__dict__|"
    r"__class__|__getattr|__setattr|__init|__new__|__del|_cdata|empty|resize|mkldnn|numpy|"
    r"tolist|cuda|record_stream|nested|quantiz|^_|::_|\._|\bsym_|_backward")


def test_no_listed_name_matches_a_dangerous_pattern():
    allowed_dunders = allowlist.OPERATOR_DUNDERS
    names = [*allowlist.TORCH_FUNCTIONS, *allowlist.ATEN_OPERATORS,
             *(allowlist.TENSOR_METHODS - allowed_dunders), *allowlist.READABLE_ATTRIBUTES,
             *allowlist.SETTABLE_ATTRIBUTES]
    flagged = sorted(name for name in names if DANGEROUS.search(name))
    assert flagged == [], flagged
    assert all(re.fullmatch(r"__[a-z]+__", name) for name in allowed_dunders)
    assert not {"__reduce__", "__reduce_ex__", "__setstate__", "__getattribute__",
                "__setattr__", "__dict__"} & allowed_dunders


def test_refusals_name_the_operation_locally():
    for op in [("op", "aten::from_file"), ("op", "aten::_reshape_alias"), ("method", "set_"),
               ("func", "torch.from_file"), ("getattr", "__dict__"), ("setattr", "_cdata")]:
        with pytest.raises(OperationRefused, match=re.escape(op[1]) + ".*allow-list"):
            op_from_wire(op, safe=True)
    # default mode: unchanged (the key is a licence to run code there)
    unchanged = ("op", "aten::_reshape_alias")
    assert op_from_wire(unchanged, safe=False) == unchanged
    assert op_from_wire(("method", "set_"), safe=False) == ("method", "set_")


def test_the_worker_survived_every_attack(safe_bob):
    assert safe_bob.ping()["safe"] is True
    assert os.path.exists(PASSWD)
    assert_still_serving(safe_bob)

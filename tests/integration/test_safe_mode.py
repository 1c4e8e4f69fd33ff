"""``--safe``: a worker that computes on data but never unpickles code."""

from __future__ import annotations

import pytest
import torch

import syftzmq as sy
from support.workers import started_workers
from support.hostile import RawPeer
from syftzmq.core.ids import new_id
from syftzmq.core.messages import CMD, STORE, message
from syftzmq.core.refs import Ref
from support.walkthrough import run_walkthrough


@pytest.fixture(scope="module")
def safe_pair(hook):
    with started_workers(hook, "safe_bob", "safe_alice", safe=True) as pair:
        yield pair


class _Exploit:
    """Unpickling this would run ``open(path, 'w')`` on the worker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_walkthrough_runs_on_safe_workers(safe_pair):
    bob, alice = safe_pair
    assert bob.ping()["safe"] is True
    run_walkthrough(bob, alice)
    assert bob._objects == {} and alice._objects == {}


def test_tutorial_operations_work_in_safe_mode(safe_pair):
    bob, alice = safe_pair
    x = torch.arange(6.0).reshape(2, 3).send(bob)
    y = torch.add(x, torch.ones(3), alpha=2) * 3 - 1
    z = torch.nn.functional.relu(y - 10).sum(dim=1)
    w = (x @ torch.ones(3, 1))[0]
    assert torch.equal(z.get(), torch.nn.functional.relu((torch.arange(6.0).reshape(2, 3) + 2) * 3 - 11).sum(1))
    assert torch.equal(w.get(), torch.tensor([3.0]))
    chain = x.send(alice)
    assert torch.equal((chain * 2).get().get(), torch.arange(6.0).reshape(2, 3) * 2)
    del chain, x, y
    assert bob._objects == {} and alice._objects == {}


def test_models_autograd_and_properties_work_in_safe_mode(safe_pair):
    """Properties, attribute setting, torch.ops operators and a training step travel by name."""
    bob, _ = safe_pair
    torch.manual_seed(0)
    x = torch.randn(3, 2, requires_grad=True).send(bob)
    assert torch.equal(x.T.get(), x.data.get().T)
    assert torch.equal(torch.ops.aten.mul.Tensor(x, 2.0).get(), x.data.get() * 2)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.5)
    model.send(bob)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = (model(x) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.get().item())
    assert losses[-1] < losses[0]
    assert x.grad is not None
    x.grad = None
    assert x.grad is None
    model.get()
    del x, opt


def test_pickled_code_is_refused_and_never_run(safe_pair, tmp_path):
    bob, _ = safe_pair
    target = tmp_path / "pwned"
    raw = RawPeer(bob.address)
    try:
        # an undecodable message has no request id to answer: the error comes with req 0
        raw.send(message(STORE, req=new_id(), id=new_id(), obj=_Exploit(str(target))))
        answer = raw.reply()
        assert "safe mode" in answer["error"].message and "io.open" in answer["error"].message
        assert not target.exists()
        raw.send(message(STORE, req=new_id(), id=new_id(), obj=lambda: 0))
        assert "safe mode" in raw.reply()["error"].message
        assert raw.stats()["rejected_by_reason"].get("refused_by_policy", 0) >= 2
    finally:
        raw.close()
    assert bob._objects == {}


def test_named_operations_outside_the_registry_are_refused(safe_pair, tmp_path):
    bob, _ = safe_pair
    x = torch.ones(2).send(bob)
    for op in [("func", "torch.load"), ("func", "torch.save"), ("method", "share_memory_"),
               ("method", "__reduce_ex__"), ("method", "apply_")]:
        result = new_id()
        sy.default_session()._send(bob.ref, message(CMD, origin=sy.default_session().ref.incarnation,
                                                    op=op, args=(Ref(x.id_at_location), str(tmp_path)),
                                                    kwargs={}, results=[result]))
        with pytest.raises(sy.RemoteError, match="safe mode|unknown torch operation"):
            bob._objects
        sy.default_session().release(bob.ref, result)  # the stored failure
    assert torch.equal(x.get(), torch.ones(2))
    assert list(tmp_path.iterdir()) == []


def test_a_client_function_is_refused_clearly(safe_pair):
    bob, _ = safe_pair
    x = torch.ones(2).send(bob)
    x.apply_(lambda v: v * 2)          # fire-and-forget: the refusal shows at the next observation
    with pytest.raises(sy.RemoteError, match="safe mode"):
        x.get()
    assert torch.equal(x.get(), torch.ones(2))   # the data is untouched
    assert bob._objects == {}


def test_tensor_on_the_left_of_a_pointer_works_in_safe_mode(safe_pair):
    """``tensor * ptr`` reaches the pointer as the function ``Tensor.__mul__``; it travels as
    the method name, which a safe worker accepts."""
    bob, _ = safe_pair
    x = torch.tensor([1.0, 2.0]).send(bob)
    y = torch.tensor([3.0, 4.0]) * x
    z = torch.tensor([10.0, 10.0]) - x
    assert torch.equal(y.get(), torch.tensor([3.0, 8.0]))
    assert torch.equal(z.get(), torch.tensor([9.0, 8.0]))
    del x


def test_operations_travel_by_name():
    from syftzmq.core.ops import op_from_wire, op_to_wire
    from syftzmq.errors import OperationRefused
    assert op_to_wire(("func", torch.add)) == ("func", "torch.add")
    assert op_to_wire(("func", torch.nn.functional.relu)) == ("func", "torch.nn.functional.relu")
    assert op_to_wire(("func", torch.Tensor.__mul__)) == ("method", "__mul__")
    assert op_from_wire(("func", "torch.add"), safe=True) == ("func", torch.add)
    for refused in [("func", "torch.load"), ("func", "os.system"), ("method", "apply_"),
                    ("method", "__reduce_ex__"), ("func", print)]:
        with pytest.raises(OperationRefused):
            op_from_wire(refused, safe=True)
    assert op_from_wire(("func", print), safe=False) == ("func", print)  # default mode: code runs


def test_a_model_with_kept_gradients_trains_on_a_safe_worker(safe_pair):
    """The gradients ``model.send`` keeps back arrive as a ``setattr`` of a tensor, which a
    safe worker accepts like any other gradient assignment."""
    bob, _ = safe_pair
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model(torch.ones(4, 3)).sum().backward()
    expected = [p.grad * 2 for p in model.parameters()]
    model.send(bob)
    model(torch.ones(4, 3).send(bob)).sum().backward()   # adds to the kept gradients
    model.get()
    assert all(torch.allclose(p.grad, g) for p, g in zip(model.parameters(), expected))

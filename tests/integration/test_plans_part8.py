"""Plans as PySyft 0.2.9's tutorial part 8 uses them: ``build``/``is_built``, ``args_shape``,
``state``, ``class Net(sy.Plan)``, ``send`` returning a callable plan pointer — on real workers."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import syftzmq as sy
from support.examples import run_script


class Net(sy.Plan):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=0)


def test_build_marks_the_plan_built_and_send_needs_it(bob):
    @sy.func2plan()
    def double_abs(x):
        return torch.abs(x + x)

    assert double_abs.is_built is False
    with pytest.raises(RuntimeError, match="A plan needs to be built before being sent to a worker."):
        double_abs.send(bob)
    assert bob.object_count() == 0  # nothing was stored
    built = double_abs.build(torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(built, torch.tensor([2.0, 4.0]))  # build ran the function
    assert double_abs.is_built is True
    pointer_plan = double_abs.send(bob)
    assert double_abs.send(bob) is pointer_plan  # cached per worker, stored once
    assert bob.object_count() == 1
    data = torch.tensor([-3.0, 0.5]).send(bob)
    result = pointer_plan(data)
    assert isinstance(result, sy.PointerTensor) and result.location == bob
    torch.testing.assert_close(result.get(), torch.tensor([6.0, 1.0]))
    assert pointer_plan.get() is double_abs  # the stored copy is dropped
    del data
    gc.collect()
    assert bob._objects == {}


def test_a_sent_plan_refuses_arguments_on_another_worker(bob, alice):
    plan = sy.func2plan(args_shape=[(2,)])(lambda x: x * 3)
    on_bob = plan.send(bob)
    elsewhere = torch.ones(2).send(alice)
    before = sy.stats()
    with pytest.raises(RuntimeError, match="sent to 'bob'.*lives on 'alice'"):
        on_bob(elsewhere)
    with pytest.raises(RuntimeError, match="call it with pointers"):
        on_bob(torch.ones(2))
    assert (sy.stats() - before).messages_sent == 0
    both = plan.send(bob, alice)
    torch.testing.assert_close(both(elsewhere).get(), torch.full((2,), 3.0))
    del on_bob, both, plan, elsewhere
    gc.collect()


def test_args_shape_builds_at_once_on_zeros(hook):
    seen = []

    @sy.func2plan(args_shape=[(1, 2), (-1, 2)])
    def sum_abs(x, y):
        seen.append((x.shape, y.shape, x.sum().item(), y.sum().item()))
        return torch.abs(x + y)

    assert sum_abs.is_built is True
    assert seen == [(torch.Size([1, 2]), torch.Size([1, 2]), 0.0, 0.0)]  # -1 became 1
    with pytest.raises(ValueError, match=r"Invalid shape \(-2, 1\)"):
        sy.func2plan(args_shape=[(-2, 1)])(lambda x: x)
    with pytest.raises(ValueError, match="Automatic build using @func2plan failed!"):
        sy.func2plan(args_shape=[(2,)])(lambda x, y: x + y)  # one shape for two arguments
    typed = sy.func2plan(args_shape=[(3,)], args_dtypes=[torch.int64])(lambda x: x + 1)
    assert typed.is_built


def test_state_is_the_last_argument_and_travels_with_the_call(bob):
    @sy.func2plan(args_shape=[(1,)], state=(torch.tensor([1]),))
    def plan_abs(x, state):
        bias, = state.read()
        return x.abs() + bias

    assert isinstance(plan_abs.state.read(), list) and len(plan_abs.state.read()) == 1
    torch.testing.assert_close(plan_abs(torch.tensor([-1, 0])), torch.tensor([2, 1]))  # locally
    pointer_plan = plan_abs.send(bob)
    x_ptr = torch.tensor([-1, 0]).send(bob)
    torch.testing.assert_close(pointer_plan(x_ptr).get(), torch.tensor([2, 1]))
    bias_ptr = torch.tensor([10]).send(bob)  # a state tensor on the worker stays there
    remote_state = sy.func2plan(state=(bias_ptr,))(lambda x, state: x + state.read()[0])
    torch.testing.assert_close(remote_state(x_ptr).get(), torch.tensor([9, 10]))
    assert bias_ptr.get().tolist() == [10]
    del pointer_plan, plan_abs, x_ptr
    gc.collect()


def test_class_plan_runs_its_layers_on_the_worker(bob, alice):
    torch.manual_seed(0)
    net = Net()
    x = torch.tensor([-1.0, 2.0])
    assert net.is_built is False
    local = net(x)  # before build: runs eagerly, here
    net.build(torch.tensor([1.0, 2.0]))
    assert net.is_built
    assert len(net.parameters()) == 4
    result = net.send(bob)(x.send(bob))
    torch.testing.assert_close(result.get(), local)
    torch.testing.assert_close(net.send(alice)(x.send(alice)).get(), local)

    with torch.no_grad():  # new weights: a rebuild ships them; the copies sent before go
        net.fc2.bias.add_(torch.tensor([3.0, -3.0]))  # not a common shift: log_softmax ignores those
    changed = net(x)
    net.build(x)
    assert bob.object_count() == 0 and alice.object_count() == 0
    torch.testing.assert_close(net.send(bob)(x.send(bob)).get(), changed)
    assert not torch.allclose(changed, local)
    del net
    gc.collect()


def test_tutorial_part8_runs(tmp_path):
    out = run_script("tutorial_part8.py", tmp_path)
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert "A plan needs to be built before being sent to a worker." in out
    assert lines["double_abs"] == "tensor([2., 4.])"
    assert lines["plan_abs"] == "tensor([2, 1])"
    # cell 6 prints what device_1.search('input_data')[0] found: a pointer to device_1's data
    assert "-> device_1:" in out.splitlines()[out.splitlines().index("<Plan plan_double_abs>") + 1]
    assert lines["net2 on device_1"] == lines["net2 on device_2"]  # same plan, same data
    assert out.count("True") >= 4  # is_built after build, and the three built by args_shape

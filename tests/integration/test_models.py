"""Models and optimizers on workers: in-place send, forward on the worker, stock optimizers,
state kept with the parameters, averaging on an aggregator, one round trip per step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn, optim

import syftzmq as sy
from syftzmq.tensor.modules import RemoteParameter

DATA = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGET = torch.tensor([[0.0], [0.0], [1.0], [1.0]])


class TwoLayer(nn.Module):
    """A model defined in a test file (its class never travels: only its parameters do)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(2, 3)
        self.out = nn.Linear(3, 1)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x))) * self.scale


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(2, 1)


def train_step(model, opt, data, target):
    opt.zero_grad()
    pred = model(data)
    loss = ((pred - target) ** 2).sum()
    loss.backward()
    opt.step()
    return loss


def test_send_keeps_parameter_objects_and_get_restores_them(bob):
    model = TwoLayer()
    params = list(model.parameters())
    values = [p.detach().clone() for p in params]
    assert model.send(bob) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(isinstance(p, RemoteParameter) and isinstance(p, nn.Parameter) for p in params)
    assert model.location == bob
    assert model.hidden.weight.shape == torch.Size([3, 2])
    model.get()
    assert model.location is None
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(type(p) is nn.Parameter for p in params)
    assert all(torch.equal(p, v) for p, v in zip(params, values))


def test_forward_runs_on_the_worker_and_matches_local(bob):
    model = TwoLayer()
    expected = model(DATA)
    model.send(bob)
    out = model(DATA.send(bob))
    assert isinstance(out, sy.PointerTensor) and out.shape == expected.shape
    assert torch.allclose(out.get(), expected)
    model.get()


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.1),
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: optim.Adam(p, lr=0.05),
], ids=["sgd", "sgd-momentum", "adam"])
def test_remote_training_equals_local_training(bob, make_opt):
    local, remote = TwoLayer(), None
    remote = copy.deepcopy(local)
    local_opt, remote_opt = make_opt(local.parameters()), make_opt(remote.parameters())
    remote.send(bob)
    data, target = DATA.send(bob), TARGET.send(bob)
    local_losses, remote_losses = [], []
    for _ in range(8):
        local_losses.append(train_step(local, local_opt, DATA, TARGET).item())
        remote_losses.append(train_step(remote, remote_opt, data, target).get().item())
    assert remote_losses == pytest.approx(local_losses, rel=1e-5, abs=1e-6)
    assert remote_losses[-1] < remote_losses[0]
    state = remote_opt.state[remote.out.weight]
    if state:  # momentum buffers / Adam moments live on the worker, beside the parameter
        kept = [v for v in state.values() if isinstance(v, sy.PointerTensor)]
        assert kept and all(v.location == bob for v in kept)
    remote.get()
    for p_local, p_remote in zip(local.parameters(), remote.parameters()):
        assert torch.allclose(p_local, p_remote, atol=1e-6)
        assert torch.allclose(p_local.grad, p_remote.grad, atol=1e-6)
    del remote_opt, state


def test_one_training_step_is_one_round_trip(bob):
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.send(bob)
    data, target = DATA.send(bob), TARGET.send(bob)
    train_step(model, opt, data, target).get()  # warm up (first step creates no state)
    before = sy.stats()
    loss = train_step(model, opt, data, target)
    loss.get()
    spent = sy.stats() - before
    assert spent.round_trips == 1, spent
    model.get()


def test_one_optimizer_for_a_model_that_visits_several_workers(bob, alice):
    local, remote = make_model(1), make_model(1)
    local_opt = optim.SGD(local.parameters(), lr=0.1, momentum=0.9)
    remote_opt = optim.SGD(remote.parameters(), lr=0.1, momentum=0.9)
    halves = [(DATA[:2], TARGET[:2]), (DATA[2:], TARGET[2:])]
    shards = [(d.send(w), t.send(w)) for (d, t), w in zip(halves, (bob, alice))]
    for _ in range(3):
        for (d, t), (rd, rt) in zip(halves, shards):
            expected = train_step(local, local_opt, d, t).item()
            remote.send(rd.location)
            assert train_step(remote, remote_opt, rd, rt).get().item() == pytest.approx(expected, rel=1e-5)
            remote.get()
    for p_local, p_remote in zip(local.parameters(), remote.parameters()):
        assert torch.allclose(p_local, p_remote, atol=1e-6)
    del remote_opt, shards


def test_one_optimizer_per_worker_built_before_the_model_is_sent(bob, alice):
    model = make_model(2)
    opts = {w.id: optim.SGD(model.parameters(), lr=0.1, momentum=0.5) for w in (bob, alice)}
    for worker in (bob, alice, bob):
        model.send(worker)
        data, target = DATA.send(worker), TARGET.send(worker)
        first = train_step(model, opts[worker.id], data, target).get().item()
        second = train_step(model, opts[worker.id], data, target).get().item()
        assert second < first
        model.get()
    del opts


def test_move_copy_and_averaging_on_an_aggregator(bob, alice, charlie):
    model = make_model(3)
    bobs_model = model.copy().send(bob)
    alices_model = model.copy().send(alice)
    with torch.no_grad():
        alices_model.weight.add_(1.0)       # the two copies now differ
    expected_weight = model.weight.detach() + 0.5
    before = sy.stats()
    bobs_model.move(charlie)
    alices_model.move(charlie)
    spent = sy.stats() - before
    assert spent.bytes_received < 2048      # parameters went worker to worker
    assert bobs_model.location == charlie and alices_model.location == charlie
    assert bob._objects == {} and alice._objects == {}
    average = ((alices_model.weight.data + bobs_model.weight.data) / 2).get()
    assert torch.allclose(average, expected_weight)
    bias = ((alices_model.bias.data + bobs_model.bias.data) / 2).get()
    assert torch.allclose(bias, model.bias.detach())
    assert len(charlie._objects) == 4         # only the two models' parameters remain


def test_model_with_buffers_and_custom_class_round_trips(bob):
    model = TwoLayer()
    expected = model(DATA).detach()
    model.send(bob)
    assert isinstance(model.scale, sy.PointerTensor)
    model.get()
    assert isinstance(model.scale, torch.Tensor) and not isinstance(model.scale, sy.PointerTensor)
    assert torch.allclose(model(DATA), expected)


MAIN_SCRIPT = '''
import sys, torch
sys.path.insert(0, {root!r})
import syftzmq as sy
from torch import nn, optim

class Net(nn.Module):                       # defined in __main__
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
    def forward(self, x):
        return torch.sigmoid(self.fc(x)) * 2 - 1

hook = sy.TorchHook(torch)
bob = sy.VirtualWorker(hook, id="bob")
net = Net()
opt = optim.SGD(net.parameters(), lr=0.5)
net.send(bob)
x, y = torch.tensor([[0., 1.], [1., 0.]]).send(bob), torch.tensor([[1.], [-1.]]).send(bob)
losses = []
for _ in range(5):
    opt.zero_grad()
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    losses.append(loss.get().item())
net.get()
assert type(net.fc.weight) is nn.Parameter and losses[-1] < losses[0], losses
print("OK", losses[0], losses[-1])
'''


@pytest.mark.timeout(120)
def test_module_defined_in_the_users_main_script(tmp_path):
    import subprocess
    import sys

    from support.workers import ROOT
    result = subprocess.run([sys.executable, "-c", MAIN_SCRIPT.format(root=str(ROOT))],
                            capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("OK")


def test_moving_a_model_is_one_message_and_keeps_every_tensor(bob, alice):
    model = make_model(3)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.send(bob)
    bob.ping()
    before = sy.stats()
    model.move(alice)
    spent = sy.stats() - before
    assert (spent.messages_sent, spent.round_trips) == (1, 0), spent  # every parameter in one MOVE
    assert model.location.id == "alice"
    assert bob.object_count() == 0                 # an observation: the move is awaited
    assert (sy.stats() - before).round_trips == 2  # the move's wait, then the count
    model.get()
    for name, param in model.named_parameters():
        assert torch.equal(param, expected[name]), name

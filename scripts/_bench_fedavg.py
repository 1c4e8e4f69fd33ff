"""Case 6's workload: one federated-averaging round of ``nn.Linear(784, 10)``.

Each worker runs ``STEPS`` SGD steps of softmax cross-entropy on its own batches of ``BATCH``
examples, then the models are averaged. A *learner* holds one model and knows how to step it;
the same learner code runs on local tensors (the single-process baseline) and, once sent, on a
worker (syftzmq), so both sides do exactly the same arithmetic. There are two kinds:

* :class:`ModuleLearner` — the real thing: an ``nn.Linear``, autograd and ``optim.SGD``. It
  needs the library to send modules (``nn.Module.send``/``move``).
* :class:`TensorLearner` — the fallback for a library without module support: weight and bias
  as plain tensors, closed-form gradients, in-place updates; only tensor operations.

:func:`local_training` is a module learner's whole local loop as one function, for libraries
that can ship a function to the worker (a PySyft *Plan*).
"""

from __future__ import annotations

import copy
import functools
import operator
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn, optim

FEATURES = 784
CLASSES = 10
BATCH = 64
STEPS = 10
LR = 0.1

Batch = tuple[Any, Any]  # (inputs, one-hot targets): tensors, or pointers to them


def initial_model(seed: int = 0) -> nn.Linear:
    """The global model every worker starts the round from."""
    torch.manual_seed(seed)
    return nn.Linear(FEATURES, CLASSES)


def make_shards(workers: int, seed: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``STEPS`` batches of random inputs and one-hot labels for each worker."""
    generator = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.randn(BATCH, FEATURES, generator=generator)
        labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
        return inputs, F.one_hot(labels, CLASSES).float()

    return [[batch() for _ in range(STEPS)] for _ in range(workers)]


class ModuleLearner:
    """``nn.Linear`` trained with autograd and ``optim.SGD``; sent and moved as a module."""

    kind = "nn.Linear + autograd + optim.SGD"

    def __init__(self, initial: nn.Linear) -> None:
        self.model = copy.deepcopy(initial)
        self.optimizer = optim.SGD(self.model.parameters(), lr=LR)

    def send(self, worker: Any) -> None:
        self.model.send(worker)

    def move(self, worker: Any) -> None:
        self.model.move(worker)

    def step(self, inputs: Any, targets: Any) -> None:
        self.optimizer.zero_grad()
        F.cross_entropy(self.model(inputs), targets).backward()
        self.optimizer.step()

    def parameters(self) -> tuple[Any, Any]:
        return self.model.weight.data, self.model.bias.data


class TensorLearner:
    """Weight and bias as tensors; the gradient of softmax cross-entropy written out by hand."""

    kind = "weight/bias tensors, closed-form gradients"

    def __init__(self, initial: nn.Linear) -> None:
        self.weight = initial.weight.detach().clone()
        self.bias = initial.bias.detach().clone()

    def send(self, worker: Any) -> None:
        self.weight, self.bias = self.weight.send(worker), self.bias.send(worker)

    def move(self, worker: Any) -> None:
        self.weight, self.bias = self.weight.move(worker), self.bias.move(worker)

    def step(self, inputs: Any, targets: Any) -> None:
        probabilities = torch.softmax(F.linear(inputs, self.weight, self.bias), dim=1)
        error = (probabilities - targets) / BATCH
        self.weight.add_(error.t().matmul(inputs), alpha=-LR)
        self.bias.add_(error.sum(0), alpha=-LR)

    def parameters(self) -> tuple[Any, Any]:
        return self.weight, self.bias


Learner = ModuleLearner | TensorLearner


def local_training(model: nn.Module, batches: Sequence[Batch], lr: float) -> None:
    """:class:`ModuleLearner`'s ``STEPS`` steps as one function: what the Plan row ships to a
    worker (``sy.func2plan``). The same arithmetic: SGD without momentum keeps no state, so an
    optimizer made here steps exactly as the learner's own."""
    optimizer = optim.SGD(model.parameters(), lr=lr)
    for inputs, targets in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


def train_interleaved(learners: Sequence[Learner], shards: Sequence[Sequence[Batch]]) -> None:
    """Step every learner once per round of the loop, so remote workers all start at once."""
    for step in range(STEPS):
        for learner, shard in zip(learners, shards):
            learner.step(*shard[step])


def averaged_parameters(learners: Sequence[Learner]) -> list[Any]:
    """The mean of each parameter over the learners (pointers if the learners are remote)."""
    return [functools.reduce(operator.add, values) / len(values)
            for values in zip(*(learner.parameters() for learner in learners))]


def local_round(kind: type[Learner], initial: nn.Linear,
                shards: Sequence[Sequence[Batch]]) -> list[torch.Tensor]:
    """The baseline: every worker's training, one after the other, in this process."""
    learners = [kind(initial) for _ in shards]
    for learner, shard in zip(learners, shards):
        train_interleaved([learner], [shard])
    return averaged_parameters(learners)

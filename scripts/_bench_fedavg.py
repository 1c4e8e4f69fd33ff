"""Case 6's workload: one federated-averaging round of a 784->10 linear classifier.

Each worker runs ``STEPS`` SGD steps on its own batches of ``BATCH`` examples, then the models
are averaged. The step is written once, with closed-form softmax-regression gradients and
in-place updates, and runs unchanged on local tensors (the single-process baseline) and on
pointers (syftzmq): both sides do exactly the same arithmetic. Closed-form gradients instead of
autograd, because autograd is not usable through pointers yet (``_bench_syft`` probes that and
reports why).
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Sequence

import torch
import torch.nn.functional as F

FEATURES = 784
CLASSES = 10
BATCH = 64
STEPS = 10
LR = 0.1

Batch = tuple[Any, Any]  # (inputs, one-hot targets): tensors, or pointers to them


def initial_model(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.Linear(784, 10)``'s initial weight and bias, as plain tensors."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(FEATURES, CLASSES)
    return layer.weight.detach().clone(), layer.bias.detach().clone()


def make_shards(workers: int, seed: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``STEPS`` batches of random inputs and one-hot labels for each worker."""
    generator = torch.Generator().manual_seed(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.randn(BATCH, FEATURES, generator=generator)
        labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
        return inputs, F.one_hot(labels, CLASSES).float()

    return [[batch() for _ in range(STEPS)] for _ in range(workers)]


def sgd_step(weight: Any, bias: Any, inputs: Any, targets: Any, lr: float = LR) -> None:
    """One SGD step of cross-entropy loss on a linear layer, updating weight and bias in place."""
    probabilities = torch.softmax(F.linear(inputs, weight, bias), dim=1)
    error = (probabilities - targets) / BATCH
    weight.add_(error.t().matmul(inputs), alpha=-lr)
    bias.add_(error.sum(0), alpha=-lr)


def train_interleaved(models: Sequence[tuple[Any, Any]], shards: Sequence[Sequence[Batch]]) -> None:
    """Step every model once per round of the loop, so remote workers all start at once."""
    for step in range(STEPS):
        for (weight, bias), shard in zip(models, shards):
            sgd_step(weight, bias, *shard[step])


def average(values: Sequence[Any]) -> Any:
    return functools.reduce(operator.add, values) / len(values)


def local_round(initial: tuple[torch.Tensor, torch.Tensor],
                shards: Sequence[Sequence[Batch]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline: every worker's training, one after the other, in this process."""
    models = []
    for shard in shards:
        model = (initial[0].clone(), initial[1].clone())
        train_interleaved([model], [shard])
        models.append(model)
    return average([w for w, _ in models]), average([b for _, b in models])

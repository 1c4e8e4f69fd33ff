"""Tutorial parts 6 (federated MNIST CNN) and 7 (FederatedDataset, Boston housing) run as
scripts against real worker processes, on synthetic data of the tutorials' shapes: part 6's
test accuracy rises epoch by epoch, part 7's total loss falls."""

from __future__ import annotations

import re

import pytest

from support.examples import run_script


@pytest.mark.timeout(180)
def test_part6_federated_mnist_cnn_learns(tmp_path):
    out = run_script("tutorial_part6.py", tmp_path)
    accuracy = [int(a) / int(n) for a, n in re.findall(r"Accuracy: (\d+)/(\d+)", out)]
    assert len(accuracy) == 4                     # tested after every epoch
    assert all(later > earlier for earlier, later in zip(accuracy, accuracy[1:]))
    assert accuracy[0] < 0.6 and accuracy[-1] > 0.8
    # 3,000 images on two workers, batches of 64: 24 batches each, all of bob's first
    assert "Train Epoch: 1 [0/3072 (0%)]" in out
    losses = [float(v) for v in re.findall(r"Loss: ([0-9.]+)", out)]
    assert losses[-1] < losses[0]


@pytest.mark.timeout(180)
def test_part7_federated_dataset_total_loss_falls(tmp_path):
    out = run_script("tutorial_part7.py", tmp_path)
    assert "['bob', 'alice']" in out              # dataset.workers
    totals = [float(v) for v in re.findall(r"Total loss ([0-9.e+]+)", out)]
    assert len(totals) == 50
    assert all(later < earlier for earlier, later in zip(totals, totals[1:]))
    assert totals[-1] < 0.5 * totals[0]
    # 253 samples per worker in batches of 32: 8 batches each, 16 an epoch
    assert "Train Epoch: 1 [8/16 (50%)]" in out

"""Federated data on real workers: BaseDataset, FederatedDataset, federate() and
FederatedDataLoader (order, shuffle and drop_last within a worker, len, iter_per_worker,
num_iterators, errors), with every batch compared to the local slicing it stands for."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

import syftzmq as sy


def numbered(n: int, features: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples whose values say which sample they are: row i is [i*f, ..., i*f + f-1], label i."""
    data = torch.arange(n * features, dtype=torch.float32).view(n, features)
    return data, torch.arange(n)


def sent_dataset(data, targets, worker):
    return sy.BaseDataset(data, targets).send(worker)


def fetch(batch):
    data, target = batch
    return data.get(), target.get()


# ----------------------------------------------------------------------- BaseDataset
def test_base_dataset_items_len_and_per_item_transform(hook):
    data, targets = numbered(5)
    ds = sy.BaseDataset(data, targets)
    assert len(ds) == 5
    item, label = ds[3]
    assert torch.equal(item, data[3]) and int(label) == 3
    doubled = sy.BaseDataset(data, targets, transform=lambda a: a * 2)
    item, label = doubled[2]
    assert torch.equal(item, data[2] * 2) and int(label) == 2
    with pytest.raises(ValueError, match="as many targets"):
        sy.BaseDataset(data, targets[:4])


def test_transform_applies_to_all_data_and_refuses_non_tensors(hook):
    data, targets = numbered(4)
    ds = sy.BaseDataset(data.clone(), targets)
    assert ds.transform(lambda d: d + 100) is ds
    assert torch.equal(ds.data, data + 100)
    with pytest.raises(TypeError, match="only on torch tensors"):
        sy.BaseDataset([1, 2], [0, 1]).transform(lambda d: d)


def test_send_gives_pointers_on_the_worker_and_get_brings_them_back(bob):
    data, targets = numbered(4)
    local = sy.BaseDataset(data, targets)
    remote = local.send(bob)
    assert isinstance(remote.data, sy.PointerTensor) and isinstance(remote.targets, sy.PointerTensor)
    assert remote.location == bob and remote.data.location.id == "bob"
    assert local.data is data  # the local dataset is unchanged
    assert len(remote) == 4 and len(bob._objects) == 2
    item, label = remote[1]
    assert torch.equal(item.get(), data[1]) and int(label.get()) == 1
    # a transform of a sent dataset runs on the worker
    remote.transform(lambda d: d * 10)
    back = remote.get()
    assert back is remote and torch.equal(back.data, data * 10) and torch.equal(back.targets, targets)
    with pytest.raises(AttributeError, match="local"):
        back.location


def test_a_dataset_with_a_per_item_transform_cannot_be_sent(bob):
    data, targets = numbered(3)
    with pytest.raises(ValueError, match="per-item transform"):
        sy.BaseDataset(data, targets, transform=lambda a: a).send(bob)
    assert bob._objects == {}


# ----------------------------------------------------------------------- FederatedDataset
def test_federated_dataset_is_keyed_by_worker_id(bob, alice):
    data, targets = numbered(5)
    fd = sy.FederatedDataset([sent_dataset(data[:3], targets[:3], bob),
                              sent_dataset(data[3:], targets[3:], alice)])
    assert fd.workers == ["bob", "alice"] and all(isinstance(w, str) for w in fd.workers)
    assert len(fd) == 5 and len(fd["bob"]) == 3 and len(fd["alice"]) == 2
    assert fd[alice] is fd["alice"] and "bob" in fd
    assert "Number of datapoints: 5" in repr(fd)
    with pytest.raises(ValueError, match=r"use \.get_dataset\(worker\) to get this dataset"):
        fd["bob"].get()
    back = fd.get_dataset("bob")
    assert torch.equal(back.data, data[:3]) and torch.equal(back.targets, targets[:3])
    assert fd.workers == ["alice"] and len(fd) == 2
    assert bob._objects == {}
    with pytest.raises(KeyError, match="bob"):
        fd["bob"]


def test_federated_dataset_refuses_local_split_and_duplicate_members(bob, alice):
    data, targets = numbered(4)
    with pytest.raises(TypeError, match="send each first"):
        sy.FederatedDataset([sy.BaseDataset(data, targets)])
    split = sy.BaseDataset(data.send(bob), targets.send(alice))
    with pytest.raises(ValueError, match="targets are on 'alice'"):
        sy.FederatedDataset([split])
    with pytest.raises(ValueError, match="two datasets are on worker 'bob'"):
        sy.FederatedDataset([sent_dataset(data[:2], targets[:2], bob),
                             sent_dataset(data[2:], targets[2:], bob)])


# ----------------------------------------------------------------------- federate
@pytest.mark.parametrize("n, expected", [(7, {"bob": 3, "alice": 3, "charlie": 1}),
                                         (6, {"bob": 2, "alice": 2, "charlie": 2}),
                                         (4, {"bob": 2, "alice": 2})])  # charlie gets nothing
def test_federate_cuts_in_order_in_chunks_of_ceil_n_over_k(bob, alice, charlie, n, expected):
    data, targets = numbered(n)
    fd = TensorDataset(data, targets).federate((bob, alice, charlie))
    assert fd.workers == list(expected)
    start = 0
    for worker, size in expected.items():
        part = fd[worker]
        assert part.location.id == worker and len(part) == size
        assert torch.equal(part.data.get(), data[start:start + size])
        assert torch.equal(part.targets.get(), targets[start:start + size])
        start += size
    assert start == n


class Squares(Dataset):
    """A plain torch Dataset (not tensors): federate goes through a DataLoader."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor([float(i), float(i * i)]), i


def test_federate_a_plain_dataset_a_base_dataset_and_both_call_forms(bob, alice):
    fd = Squares().federate(bob, alice)
    assert fd.workers == ["bob", "alice"] and len(fd["bob"]) == 3 and len(fd["alice"]) == 2
    assert torch.equal(fd["alice"].data.get(), torch.tensor([[3.0, 9.0], [4.0, 16.0]]))
    assert torch.equal(fd["alice"].targets.get(), torch.tensor([3, 4]))
    fd["bob"].data.get(), fd["bob"].targets.get()

    data, targets = numbered(4)
    fd = sy.federate(sy.BaseDataset(data, targets), [alice, bob])
    assert fd.workers == ["alice", "bob"]
    assert torch.equal(fd["bob"].data.get(), data[2:]) and torch.equal(fd["alice"].data.get(), data[:2])
    fd["bob"].targets.get(), fd["alice"].targets.get()
    with pytest.raises(ValueError, match="at least one worker"):
        sy.federate(sy.BaseDataset(data, targets), [])


# ----------------------------------------------------------------------- FederatedDataLoader
def fd3(bob, alice):
    """bob holds samples 0-4, alice samples 5-7. (A helper, not a fixture: pytest keeps a
    fixture's value past the check that the workers' stores are empty.)"""
    data, targets = numbered(8)
    fd = sy.FederatedDataset([sent_dataset(data[:5], targets[:5], bob),
                              sent_dataset(data[5:], targets[5:], alice)])
    return fd, data, targets


def test_loader_yields_each_workers_batches_in_turn_equal_to_local_slices(bob, alice):
    fd, data, targets = fd3(bob, alice)
    loader = sy.FederatedDataLoader(fd, batch_size=2)
    batches = list(loader)
    assert [d.location.id for d, _ in batches] == ["bob", "bob", "bob", "alice", "alice"]
    assert all(d.location == t.location for d, t in batches)
    expected = [(0, 2), (2, 4), (4, 5), (5, 7), (7, 8)]
    for batch, (a, b) in zip(batches, expected):
        got_data, got_target = fetch(batch)
        assert torch.equal(got_data, data[a:b]) and torch.equal(got_target, targets[a:b])
    # PySyft would say ceil(8 / 2) = 4: the true count is 3 + 2
    assert len(loader) == len(batches) == 5


def test_batches_are_built_on_the_worker_without_a_round_trip(bob, alice):
    data, targets = numbered(8, features=4096)  # 16 KiB a sample
    fd = sy.FederatedDataset([sent_dataset(data[:5], targets[:5], bob),
                              sent_dataset(data[5:], targets[5:], alice)])
    before = sy.stats()
    batches = list(sy.FederatedDataLoader(fd, batch_size=2, shuffle=True))
    after = sy.stats()
    assert after.round_trips == before.round_trips
    # a batch is two commands carrying only its index tensor: no sample travels either way
    assert after.messages_sent - before.messages_sent <= 2 * len(batches)
    assert after.bytes_sent - before.bytes_sent < data.nbytes // 8  # one sample's bytes
    assert after.bytes_received == before.bytes_received
    rows = torch.cat([fetch(b)[0] for b in batches])
    assert sorted(rows[:, 0].tolist()) == data[:, 0].tolist()


def test_shuffle_reorders_within_a_worker_never_across(bob, alice):
    fd, data, targets = fd3(bob, alice)
    torch.manual_seed(3)
    loader = sy.FederatedDataLoader(fd, batch_size=2, shuffle=True)
    orders = []
    for _ in range(4):
        epoch = [(d.location.id, fetch((d, t))) for d, t in loader]
        assert [w for w, _ in epoch] == ["bob"] * 3 + ["alice"] * 2
        labels = torch.cat([t for _, (_, t) in epoch])
        rows = torch.cat([d for _, (d, _) in epoch])
        assert torch.equal(rows, data[labels])  # each row still with its own label
        assert sorted(labels[:5].tolist()) == [0, 1, 2, 3, 4]
        assert sorted(labels[5:].tolist()) == [5, 6, 7]
        orders.append(labels.tolist())
    assert any(order != list(range(8)) for order in orders)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled each epoch


def test_drop_last_drops_each_workers_short_batch(bob, alice):
    fd, data, _ = fd3(bob, alice)
    loader = sy.FederatedDataLoader(fd, batch_size=2, drop_last=True)
    batches = [fetch(b) for b in loader]
    assert [len(d) for d, _ in batches] == [2, 2, 2]
    assert torch.equal(torch.cat([d for d, _ in batches]), data[[0, 1, 2, 3, 5, 6]])
    assert len(loader) == 3  # PySyft: int(8 / 2) = 4


def test_len_counts_per_worker_where_pysyft_counted_the_total(bob, alice):
    data, targets = numbered(6)
    fd = sy.FederatedDataset([sent_dataset(data[:3], targets[:3], bob),
                              sent_dataset(data[3:], targets[3:], alice)])
    loader = sy.FederatedDataLoader(fd, batch_size=2)
    assert len(loader) == 4 == len(list(loader))  # PySyft: 3


def test_iter_per_worker_gives_one_batch_per_worker_until_the_smallest_ends(bob, alice):
    fd, data, targets = fd3(bob, alice)
    loader = sy.FederatedDataLoader(fd, batch_size=2, iter_per_worker=True)
    steps = list(loader)
    assert len(steps) == len(loader) == 2  # alice has 2 batches, bob 3
    for step, (bob_rows, alice_rows) in zip(steps, [((0, 2), (5, 7)), ((2, 4), (7, 8))]):
        assert list(step) == [bob, alice]
        for worker, (a, b) in ((bob, bob_rows), (alice, alice_rows)):
            got_data, got_target = fetch(step[worker])
            assert torch.equal(got_data, data[a:b]) and torch.equal(got_target, targets[a:b])


def test_num_iterators_walks_distinct_workers_each_step(bob, alice, charlie):
    data, targets = numbered(8)
    fd = sy.FederatedDataset([sent_dataset(data[:4], targets[:4], bob),
                              sent_dataset(data[4:6], targets[4:6], alice),
                              sent_dataset(data[6:], targets[6:], charlie)])
    loader = sy.FederatedDataLoader(fd, batch_size=2, num_iterators=5)  # capped at 3 - 1
    assert loader.num_iterators == 2
    steps = [{w.id: fetch(batch)[1].tolist() for w, batch in step.items()} for step in loader]
    # iterator 1 starts on bob, iterator 2 on alice; each moves to a free worker when its own
    # runs out, reading its own epoch, and the loop ends when one finds no free worker
    assert steps == [{"bob": [0, 1], "alice": [4, 5]},
                     {"bob": [2, 3], "charlie": [6, 7]},
                     {"alice": [4, 5], "bob": [0, 1]},
                     {"charlie": [6, 7], "bob": [2, 3]}]
    assert len(loader) == 4


def test_custom_collate_builds_batches_from_samples(bob, alice):
    fd, data, targets = fd3(bob, alice)
    seen = []

    def collate(samples):
        seen.append(len(samples))
        return torch.stack([d for d, _ in samples]), torch.stack([t for _, t in samples])

    batches = [fetch(b) for b in sy.FederatedDataLoader(fd, batch_size=4, collate_fn=collate)]
    assert seen == [4, 1, 3]
    assert torch.equal(torch.cat([d for d, _ in batches]), data)
    assert torch.equal(torch.cat([t for _, t in batches]), targets)


def test_loader_errors_and_unsupported_options(bob, alice, caplog):
    fd, data, targets = fd3(bob, alice)
    with pytest.raises(TypeError, match="needs a sy.FederatedDataset.*torch.utils.data.DataLoader"):
        sy.FederatedDataLoader(TensorDataset(data, targets), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        sy.FederatedDataLoader(fd, batch_size=0)
    with caplog.at_level(logging.WARNING):
        loader = sy.FederatedDataLoader(fd, batch_size=8, num_workers=1, pin_memory=True)
    assert "not supported: num_workers: 1, pin_memory: True" in caplog.text
    assert len(loader) == 2


def test_pointer_to_device_is_the_same_data_on_the_worker(bob):
    data, targets = numbered(3)
    ptr = data.send(bob)
    moved = ptr.to(torch.device("cpu"))
    assert isinstance(moved, sy.PointerTensor) and moved.location == bob
    assert torch.equal(moved.get(), data)
    assert torch.equal(ptr.to("cpu").get(), data)
    del ptr

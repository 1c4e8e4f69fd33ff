"""The user's side of the cross-host test (test_cluster_hosts.py), run in the operator's namespace.

    python hosts_client.py CLUSTER_FILE

Phase 1: the walkthrough's chains between hosts, a move between hosts (with what this client
sent and received meanwhile), a FedAvg round over every worker, then one marker tensor on each
worker; prints ``PHASE1 {json}`` and waits for a line ``killed <id>`` on stdin. Phase 2: every
other worker still holds its marker, the killed one's pointer fails naming it, and the restarted
worker (same address, new incarnation) takes new work; prints ``PHASE2 {json}``.
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn, optim

import syftzmq as sy
from walkthrough import run_walkthrough

MOVED = 1 << 20  # float32 elements: 4 MiB


def train(model, inputs, targets, steps: int = 3) -> None:
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        ((model(inputs) - targets) ** 2).mean().backward()
        optimizer.step()


def fedavg(workers: dict, aggregator: str) -> float:
    """One round: each worker trains a copy on its own data, the copies move to the
    aggregator, only the average comes back. Returns the largest difference from the same
    round computed here, locally."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    shards = {name: (torch.randn(16, 4), torch.randn(16, 1)) for name in workers}
    local = []
    for inputs, targets in shards.values():
        copy = model.copy()
        train(copy, inputs, targets)
        local.append(copy)
    remote = []
    for name, worker in workers.items():
        copy = model.copy().send(worker)
        inputs, targets = (t.send(worker) for t in shards[name])
        train(copy, inputs, targets)
        remote.append(copy)
    for copy in remote:
        if copy.location.id != aggregator:
            copy.move(workers[aggregator])
    weight, bias = remote[0].weight.data, remote[0].bias.data
    for copy in remote[1:]:  # on the aggregator: pointers to its own objects
        weight, bias = weight + copy.weight.data, bias + copy.bias.data
    weight, bias = (weight / len(remote)).get(), (bias / len(remote)).get()
    expected_weight = sum(c.weight.detach() for c in local) / len(local)
    expected_bias = sum(c.bias.detach() for c in local) / len(local)
    return max((weight - expected_weight).abs().max().item(),
               (bias - expected_bias).abs().max().item())


def main(cluster_file: str) -> int:
    hook = sy.TorchHook(torch)
    workers = sy.cluster(cluster_file, hook)  # CURVE and key from the file
    report: dict = {"workers": sorted(workers)}

    run_walkthrough(workers["bob"], workers["james"])           # host 1 <-> host 2
    run_walkthrough(workers["secure_worker"], workers["frank"])  # host 3 <-> host 4

    data = torch.randn(MOVED)
    x = data.send(workers["alice"])
    assert workers["alice"].object_count() == 1  # the send has arrived
    before = sy.stats()
    x = x.move(workers["eve"])                   # host 1 -> host 4
    moved = sy.stats() - before
    report["move"] = {"bytes": MOVED * 4, "client_sent": moved.bytes_sent,
                      "client_received": moved.bytes_received,
                      "source_objects": workers["alice"].object_count(),
                      "destination_objects": workers["eve"].object_count()}
    before = sy.stats()
    report["move"]["equal"] = torch.equal(x.get(), data)
    report["move"]["get_received"] = (sy.stats() - before).bytes_received
    del x

    report["fedavg_error"] = fedavg(workers, "secure_worker")
    report["after_fedavg"] = {name: w.object_count() for name, w in workers.items()}

    markers = {name: torch.full((3,), float(i)).send(w) for i, (name, w) in enumerate(workers.items())}
    report["markers"] = {name: w.object_count() for name, w in workers.items()}
    print("PHASE1 " + json.dumps(report), flush=True)

    victim = sys.stdin.readline().split()[1]
    phase2: dict = {"kept": {}}
    for i, name in enumerate(workers):
        if name != victim:
            phase2["kept"][name] = torch.equal(markers[name].get(), torch.full((3,), float(i)))
    try:
        markers[victim].get()
        phase2["victim_error"] = None
    except sy.SyftZmqError as exc:
        phase2["victim_error"] = f"{type(exc).__name__}: {exc}"
    del markers
    fresh = sy.cluster(cluster_file, hook)[victim]
    phase2["fresh_incarnation_differs"] = fresh.ref.incarnation != workers[victim].ref.incarnation
    phase2["fresh_result"] = (torch.arange(3.0).send(fresh) * 2).get().tolist()
    phase2["left"] = {name: w.object_count() for name, w in workers.items() if name != victim}
    phase2["left"][victim] = fresh.object_count()
    print("PHASE2 " + json.dumps(phase2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

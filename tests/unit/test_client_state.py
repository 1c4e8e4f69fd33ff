"""Client state that must shrink when its reason goes away, without workers: the chain
holders (syftzmq/client/chains.py) and the gone incarnations (syftzmq/client/connections.py)."""

from __future__ import annotations

from syftzmq.client.chains import ChainHolders
from syftzmq.client.connections import GoneIncarnations
from syftzmq.core.refs import WorkerRef


def test_a_worker_is_a_chain_holder_while_a_chain_target_of_ours_is_there():
    chains = ChainHolders()
    chains.stored("bob", [1, 2])
    assert "bob" in chains and chains.is_chain("bob", 1)
    chains.released("bob", [1])
    assert "bob" in chains
    chains.released("bob", [2, 99])
    assert "bob" not in chains and len(chains) == 0
    chains.released("nobody", [1])               # nothing known there: nothing happens


def test_a_moved_chain_target_moves_its_holder_status():
    chains = ChainHolders()
    chains.stored("bob", [1])
    chains.moved("bob", [1, 5], "alice", [10, 50])   # 5 was plain data
    assert chains.incarnations() == {"alice"}
    assert chains.is_chain("alice", 10) and not chains.is_chain("alice", 50)


def test_forgetting_a_worker_drops_its_targets():
    chains = ChainHolders()
    chains.stored("bob", [1])
    chains.forget("bob")
    assert "bob" not in chains


def test_gone_incarnations_keep_only_those_a_live_pointer_names():
    named = {"w#5"}
    gone = GoneIncarnations(lambda: set(named))
    replacement = WorkerRef("w", "tcp://x:1", "w#new")
    gone.add("w#5", replacement)
    for n in range(200):
        gone.add(f"dead#{n}")
    assert len(gone) <= 2 * GoneIncarnations.LIMIT
    assert "w#5" in gone and gone.replacement("w#5") is replacement
    assert gone.replacement("dead#0") is None


def test_gone_incarnations_grow_their_limit_when_all_are_still_named():
    names = {f"w#{n}" for n in range(300)}
    gone = GoneIncarnations(lambda: names)
    for name in sorted(names):
        gone.add(name)
    assert len(gone) == 300                      # nothing dropped that a pointer still names
    gone.add("w#0")                              # a second forget keeps what it knew
    assert len(gone) == 300


def test_a_plain_forget_does_not_erase_a_known_replacement():
    gone = GoneIncarnations(set)
    replacement = WorkerRef("w", "tcp://x:1", "w#2")
    gone.add("w#1", replacement)
    gone.add("w#1")
    assert gone.replacement("w#1") is replacement

"""Spare segments prepared ahead of the next large export (see syftzmq/wire/shm_spares.py).

A spare of 8 MiB or more is mapped in the sender and its pages faulted in before it is used;
the export copies into it. What must hold: the bytes received are exactly the bytes sent, also
when spares are reused round after round; a spare is only used for a part of its size; and a
sender killed with spares in hand leaves nothing behind once swept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import syftzmq as sy
from support.processes import read_lines_until, wait_until
from support.workers import ROOT, started_workers
from syftzmq.wire import shm

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")]

MiB = 1 << 20


def _parts(nbytes: int) -> list[int]:
    """The part sizes an export of ``nbytes`` uses (and asks spares of)."""
    return [end - start for start, end in
            shm._split(nbytes, shm.WRITERS if nbytes >= shm.PARALLEL_MIN else 1)]


def _populated(nbytes: int) -> None:
    wait_until(lambda: shm._spares.sizes(populated=True) == sorted(_parts(nbytes)), 60,
               f"mapped spares of {sorted(_parts(nbytes))} bytes "
               f"(now {shm._spares.sizes(populated=True)})")


def test_reused_spares_carry_exactly_what_was_sent(bob):
    size = 48 * MiB  # two parts (one per writer) on a machine with two cores
    pointers = []
    for round_ in range(5):
        if round_:
            _populated(size)  # this round's export copies into mapped spares
        x = torch.randn(size // 4)
        x[round_] = float(round_)  # no two rounds alike
        pointers.append((x, x.send(bob)))
    for x, pointer in pointers:  # each still holds its own bytes: no spare was written twice
        assert torch.equal(pointer.get(), x)


def test_a_spare_of_another_size_is_not_used(bob):
    first, second = 20 * MiB, 12 * MiB  # one part each (below the parallel threshold)
    x = torch.randn(first // 4)
    assert torch.equal(x.send(bob).get(), x)
    _populated(first)
    spares = _spare_files()
    assert len(spares) == 1, f"one spare of the first size: {spares}"
    y = torch.randn(second // 4)
    used = shm.export(memoryview(y.numpy()).cast("B"))
    try:
        assert [size for _, size in used] == [second]
        assert not {name for name, _ in used} & {_as_segment(name) for name in spares}
    finally:
        for name, _ in used:
            shm.discard(name)
    # the first size's spare is dropped for one of the size last used
    _populated(second)
    assert shm._spares.sizes() == [second]
    assert not {*spares, *map(_as_segment, spares)} & set(os.listdir(shm.DIRECTORY))


def _spare_files() -> set[str]:
    return {name for name in shm.segments_of([os.getpid()], spares=True) if "-spare-" in name}


def _as_segment(spare: str) -> str:
    return spare.replace("-spare-", "-", 1)


def test_a_spare_taken_while_being_prepared_is_written_not_copied_into(bob):
    """An export may take a spare whose pages are not all in yet: it writes the file, and the
    bytes are still exact (the preparing thread gives up the mapping)."""
    size = 24 * MiB
    x = torch.randn(size // 4)
    assert torch.equal(x.send(bob).get(), x)
    for round_ in range(4):  # right after the previous export: spares may be half-prepared
        y = torch.full((size // 4,), float(round_))
        assert torch.equal(y.send(bob).get(), y)


SENDER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    from syftzmq.wire import shm
    hook = sy.TorchHook(torch)
    worker = sy.Worker(hook, id=sys.argv[3], address=sys.argv[2], key_file=sys.argv[1])
    x = torch.ones(4 << 20)                                  # 16 MiB: one part, one spare
    (x.send(worker) + 0).get()
    while shm._spares.sizes(populated=True) != [16 << 20]:   # a mapped, populated spare
        x.send(worker); worker.ping()
    print("SPARE", flush=True)
    while True:
        x.send(worker); worker.ping()
""")


@pytest.fixture(scope="module")
def target(hook):
    """A worker of this module's own: the killed sender's objects stay on it until its lease
    runs out."""
    with started_workers(hook, "spares_target") as (worker,):
        yield worker


def test_a_sender_killed_with_mapped_spares_leaves_nothing_after_the_sweep(target):
    sender = subprocess.Popen([sys.executable, "-c", SENDER.format(root=str(ROOT)),
                               sy.default_session().cluster_key_file(), target.address, target.id],
                              stdout=subprocess.PIPE, text=True)
    try:
        read_lines_until(sender, "SPARE", timeout=90)
        wait_until(lambda: any("-spare-" in name
                               for name in shm.segments_of([sender.pid], spares=True)),
                   30, "the sender's spare in /dev/shm")
    finally:
        sender.kill()
        sender.wait(10)
    # nobody reaps a client: the worker's periodic sweep finds its creator dead
    wait_until(lambda: not shm.segments_of([sender.pid], spares=True), 60,
               f"no segment or spare of the killed sender: "
               f"{shm.segments_of([sender.pid], spares=True)}")
    y = torch.arange(float(4 << 20))
    assert torch.equal(y.send(target).get(), y)  # the worker goes on serving

"""Large received mappings are faulted in on a thread of their own (syftzmq/wire/shm_map.py),
and spares prepared ahead are used only as their rules say (syftzmq/wire/shm_spares.py): in one
process, reading /proc/self/smaps for what is mapped and resident."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from syftzmq.wire import serde, shm, shm_spares

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")

MiB = 1 << 20


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        threading.Event().wait(0.01)


def _resident(base: int, size: int) -> int | None:
    """Resident bytes of the mappings inside ``[base, base + size)``, None if none is mapped."""
    total, found, inside = 0, False, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, end = (int(x, 16) for x in head.split("-"))
                inside = base <= start and end <= base + size and "syftzmq-" in line
                found = found or inside
            elif inside and head == "Rss:":
                total += int(line.split()[1]) * 1024
    return total if found else None


def _received(values: torch.Tensor) -> torch.Tensor:
    header, buffers = serde.dumps(values)
    return serde.loads(header, [shm.take(shm.export(memoryview(b))) for b in buffers])


def test_a_large_received_mapping_is_faulted_in_soon_after_and_holds_the_bytes():
    values = torch.arange(float(16 * MiB // 4))
    received = _received(values)
    base, size = received.data_ptr(), values.numel() * 4
    _wait(lambda: _resident(base, size) == size, 30,
          f"all {size} bytes resident (now {_resident(base, size)})")
    assert torch.equal(received, values)


def test_a_mapping_dropped_while_being_faulted_in_is_unmapped(monkeypatch):
    monkeypatch.setattr(shm_spares, "MIN", 1 << 62)  # no spare mapped where this one was
    _wait(lambda: not shm._spares._allocating, 30, "no spare being allocated")
    shm._spares.drop()
    for _ in range(5):  # dropped at once: most likely while its first chunks are faulted in
        received = _received(torch.ones(64 * MiB // 4))
        base, size = received.data_ptr(), 64 * MiB
        del received
        _wait(lambda: _resident(base, size) is None, 30, "the dropped mapping unmapped")


def test_a_spare_of_other_pages_is_not_taken_and_one_of_as_many_is():
    sizes = [end - start for start, end in shm._split(12 * MiB, 1)]
    shm._spares.want(sizes)
    _wait(lambda: shm._spares.sizes() == sizes, 30, "a spare of 12 MiB")
    assert shm._spares.take(12 * MiB + 4096) is None  # one page more
    spare = shm._spares.take(12 * MiB - 100)  # as many pages
    assert spare is not None and spare.size == 12 * MiB
    os.close(spare.fd)
    shm._spares.release(spare)
    os.unlink(os.path.join(shm.DIRECTORY, spare.name))

"""The session's table of live pointers: weak, pruned in place, nothing alive ever lost."""

import gc

from syftzmq.client.live import MIN_PRUNE, LivePointers


class _Pointer:
    pass


def test_values_are_the_pointers_still_alive():
    live = LivePointers()
    kept = [_Pointer() for _ in range(3)]
    for object_id, pointer in enumerate(kept):
        live[object_id] = pointer
    live[99] = _Pointer()  # dies at once
    gc.collect()
    assert sorted(map(id, live.values())) == sorted(map(id, kept))
    assert len(live) == 3


def test_dead_entries_are_pruned_and_the_live_ones_survive_the_prune():
    live = LivePointers()
    kept = {object_id: _Pointer() for object_id in range(0, 10 * MIN_PRUNE, 97)}
    for object_id in range(10 * MIN_PRUNE):
        live[object_id] = kept.get(object_id) or _Pointer()
    assert len(live._refs) < 3 * MIN_PRUNE  # the temporaries did not pile up
    assert {id(p) for p in live.values()} == {id(p) for p in kept.values()}

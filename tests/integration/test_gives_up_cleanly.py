"""A call that gives up changes nothing: a get whose wait raised (its bound ran out, Ctrl-C)
leaves the data on the worker and a retry returns it; a move whose wait raised (at the moved
pointer's next use: the move itself returns at once) either did not happen or the pointer
follows the data, and no orphan copy is left on the destination."""

from __future__ import annotations

import gc
import signal
import threading
import time
import warnings
from contextlib import contextmanager

import pytest
import torch

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import frozen, wait_until
from syftzmq.core.ids import new_id
from syftzmq.core.messages import GET, MOVE, STORE, message
from syftzmq.core.refs import Ref


@contextmanager
def ctrl_c_while_waiting():
    """Press Ctrl-C (SIGINT to the main thread) once the block has sent its next blocking
    request, so the KeyboardInterrupt arrives while it waits for the answer; the block must end
    by raising it.

    Python runs a signal's handler wherever the main thread happens to be, and a
    KeyboardInterrupt raised inside a finalizer (a pointer's, run by the garbage collector) is
    swallowed. So, as a user would, this presses again (every second) until the interrupt has
    come out of the wait. The handler raises only while armed and disarms as it raises: a
    second press never lands in the clean-up of the first. Where each press landed is kept for
    the failure message."""
    stats = sy.default_session().stats
    start = stats.round_trips
    main = threading.main_thread().ident
    armed = threading.Event()
    out = threading.Event()
    turn = threading.Lock()  # a press and the end of the block never interleave
    landed: list[str] = []

    def handler(_signum, frame) -> None:
        landed.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
                      if frame is not None else "?")
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    def press() -> None:
        deadline = time.monotonic() + 30
        while stats.round_trips == start and time.monotonic() < deadline:
            out.wait(0.001)  # polling a counter, with a deadline
        while time.monotonic() < deadline:
            with turn:
                if out.is_set():
                    return
                armed.set()
                signal.pthread_kill(main, signal.SIGINT)
            out.wait(1.0)

    previous = signal.signal(signal.SIGINT, handler)
    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    except BaseException as exc:
        raise AssertionError(f"no KeyboardInterrupt came out of the wait; Ctrl-C landed in "
                             f"{landed or 'nothing (never pressed)'}") from exc
    finally:
        with turn:
            out.set()
            armed.clear()
        presser.join(5)
        signal.signal(signal.SIGINT, previous)
    if len(landed) > 1:  # passed, but a press was lost: say where, so it can be looked into
        warnings.warn(f"Ctrl-C had to be pressed {len(landed)} times; it landed in {landed}")


def test_a_get_that_timed_out_leaves_the_data_and_a_retry_returns_it(victim):
    data = torch.arange(6.0).reshape(2, 3)
    x = data.send(victim)
    assert list(victim._objects) == [x.id_at_location]      # settled: only the get is pending
    with frozen(victim):
        with pytest.raises(TimeoutError):                   # a bounded call that ran out
            x.get(timeout=1.0)
    # The worker has now answered the get that nobody waits for any more: what it took is
    # held for this client, and still listed where it was.
    objects = victim._objects
    assert list(objects) == [x.id_at_location] and torch.equal(objects[x.id_at_location], data)
    assert torch.equal(x.get(), data)                       # the retry gets it
    assert victim._objects == {}                            # confirmed: gone from the worker
    assert victim.object_count() == 0


def test_a_get_interrupted_by_ctrl_c_can_be_retried(victim):
    data = torch.randn(50, 50)
    x = data.send(victim)
    y = x * 2
    assert victim.object_count() == 2
    with frozen(victim):
        with ctrl_c_while_waiting():
            y.get()
    assert torch.equal(y.get(), data * 2)
    assert torch.equal(x.get(), data)
    assert victim._objects == {}


def test_a_get_of_several_pointers_that_timed_out_returns_them_all_on_retry(victim):
    import syftzmq.tensor.modules  # noqa: F401  (get_many is what model.get() uses)
    values = [torch.full((3,), float(i)) for i in range(4)]
    pointers = [v.send(victim) for v in values]
    assert victim.object_count() == 4
    session = sy.default_session()
    with frozen(victim):
        with pytest.raises(TimeoutError):
            session.get_many(pointers, timeout=1.0)
    fetched = session.get_many(pointers)
    assert all(torch.equal(a, b) for a, b in zip(fetched, values))
    for pointer in pointers:
        pointer._relinquish("fetched in the test")
    assert victim._objects == {}


def test_a_pointer_that_dies_after_a_failed_get_frees_the_held_copy(victim):
    x = torch.ones(4).send(victim)
    assert victim.object_count() == 1
    with frozen(victim):
        with pytest.raises(TimeoutError):
            x.get(timeout=1.0)
    del x                                                   # the user gives up on it
    assert victim._objects == {}                            # its delete dropped the held copy


def test_unconfirmed_gets_are_freed_with_their_requesters_lease(hook):
    """A requester that fetched and vanished without confirming: what it fetched is freed
    when its lease runs out, like everything it owned."""
    worker = sy.VirtualWorker(hook, id="leasy", lease_seconds=1.0)
    raw = RawPeer(worker.address, b"forgetful-getter|1")
    try:
        object_id = new_id()
        raw.send(message(STORE, id=object_id, obj=torch.ones(2), to=worker.ref.incarnation))
        answer = raw.ask(message(GET, req=new_id(), refs=[Ref(object_id)],
                                 to=worker.ref.incarnation))
        assert torch.equal(answer["value"][0], torch.ones(2))
        assert list(worker._objects) == [object_id]          # held: never confirmed
        wait_until(lambda: worker.ping()["expired_objects"] == 1, 20,
                   "the unconfirmed get freed with its requester's lease")
        assert worker._objects == {}
    finally:
        raw.close()
        worker.shutdown()


def _held_at(worker) -> set[int]:
    return set(worker._objects)


def test_a_move_whose_destination_froze_leaves_no_orphan(victim, bob, short_timeout):
    """The destination freezes during the move; the move fails or completes, and either way
    the pointer names the one place the data is, with no second copy anywhere."""
    data = torch.arange(5.0)
    x = data.send(bob)
    assert victim._objects == {}
    with frozen(victim):
        x.move(victim)
        with pytest.raises(TimeoutError):                   # WorkerUnavailable or a timeout
            (x + 1).get()                                   # the observation awaits the move
        gc.collect()  # the result's pointer dies (the traceback held it in a cycle)
    # Settle the destination: a move on the same bob -> victim connection is applied after
    # whatever bob sent there before (the store and, if the move failed, its take-back).
    probe = torch.ones(1).send(bob).move(victim)
    result = (x + 1).get()                                  # the first use settles the doubt
    assert torch.equal(result, data + 1)
    assert x.location in (bob, victim)
    other = victim if x.location == bob else bob
    assert x.id_at_location in _held_at(x.location)
    assert _held_at(victim) - {probe.id_at_location} <= {x.id_at_location}
    assert x.id_at_location not in _held_at(other) and len(_held_at(other)) == (
        1 if other == victim else 0)                        # victim still holds the probe
    assert torch.equal(x.get(), data)
    del probe


def test_a_move_whose_source_froze_follows_the_data(victim, alice, short_timeout):
    """The client's wait for the move (an observation of its destination) runs out while the
    source is frozen; once it thaws the move happens, and the pointer follows the data at its
    next use."""
    data = torch.arange(4.0) * 3
    x = data.send(victim)
    old_id = x.id_at_location
    assert victim.object_count() == 1
    with frozen(victim):
        x.move(alice)
        with pytest.raises(TimeoutError):
            (x * 1).get()                                   # awaits the move: the source is silent
        gc.collect()  # the result's pointer dies (the traceback held it in a cycle)
    assert torch.equal((x * 1).get(), data)                 # settles: the move was done
    assert x.location == alice and x.id_at_location != old_id
    assert victim._objects == {}
    assert list(alice._objects) == [x.id_at_location]
    assert torch.equal(x.get(), data)


def test_a_move_interrupted_by_ctrl_c_is_settled_at_the_next_use(victim, alice):
    data = torch.ones(3) * 7
    x = data.send(victim)
    assert victim.object_count() == 1
    with frozen(victim):
        x.move(alice)
        with ctrl_c_while_waiting():
            (x * 1).get()                                   # interrupted while awaiting the move
        gc.collect()  # the result's pointer dies (the traceback held it in a cycle)
    assert torch.equal(x.get(), data)
    assert victim._objects == {} and alice._objects == {}


def test_a_move_asked_about_before_it_arrived_is_cancelled_and_refused(bob, alice):
    session = sy.default_session()
    x = torch.ones(2).send(bob)
    move_id = new_id()
    assert session.move_outcome(bob.ref, move_id)["state"] == "cancelled"
    with pytest.raises(sy.OperationRefused, match="cancelled"):
        session.observe(bob.ref, message(MOVE, ids=[x.id_at_location], dest=alice.ref,
                                         new_ids=[new_id()], move_id=move_id))
    assert list(bob._objects) == [x.id_at_location] and alice._objects == {}
    assert torch.equal(x.get(), torch.ones(2))


def test_confirming_fetched_small_sparse_and_large_tensors_fails_nothing(bob):
    """The confirmation of a get rides on the next message; whatever was fetched (a small dense
    tensor, a sparse one, one above the shared-memory threshold), that message still succeeds."""
    large = torch.arange(float(1 << 18))
    for value in (torch.ones(4), torch.ones(4).to_sparse(), large):
        fetched = value.send(bob).get()
        assert torch.equal(fetched.to_dense(), value.to_dense())
        x = torch.full((3,), 2.0).send(bob)
        assert torch.equal((x * 2).get(), torch.full((3,), 4.0))  # carries the confirmation


def test_a_get_drops_what_the_earlier_get_confirmed(victim):
    """The second get carries the first one's confirmation (the worker drops the first tensor
    once the second get has answered); the count then confirms the second. A confirmation
    that was taken but not applied would leave the first tensor held for good."""
    x, y = torch.arange(3.0).send(victim), torch.arange(4.0).send(victim)
    assert victim.object_count() == 2
    assert torch.equal(x.get(), torch.arange(3.0))
    assert torch.equal(y.get(), torch.arange(4.0))      # carries x's confirmation
    assert victim.object_count() == 0                  # carries y's

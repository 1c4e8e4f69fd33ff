"""Busy is not dead: an observation waits as long as its worker is alive, and a worker that is
killed, frozen or unreachable is reported within the liveness deadline — also in the middle of
a long wait, down a chain, and as the destination of a move. A bounded call that runs out
raises WorkerTimeout, which says the worker is alive.

Each test runs on workers of its own (they are killed and frozen), with a liveness deadline of
1.5 s (probes every 0.5 s), and a computation calibrated to last four deadlines on this
machine: well over the deadline, so that a rule that took slowness for death would fail here,
while the suite does not wait out the 5 s default. Nothing here asserts a duration: the probe
counters show that a wait outlasted the deadline (more answers than probe intervals fit in one
deadline), and the outcome is what is checked.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time

import pytest
import torch

import syftzmq as sy
from support.blackhole import Relay
from support.processes import wait_for_exit, wait_until
from syftzmq.client.launcher import spawn_worker
from syftzmq.security.curve import CurveClient, create_curve_dir
from syftzmq.security.keys import read_key
from syftzmq.wire.liveness import Probe, timing

# one test process runs them one after the other: each calibrates a computation to the
# machine, which the others' computations would make slower meanwhile
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("liveness")]

DEADLINE = 1.5
BUSY_SECONDS = 4 * DEADLINE  # a margin for a machine that computes faster than calibrated
SIZE = 1200
# answers to more probes than this, in one wait: the wait lasted longer than the deadline
BOUND = DEADLINE  # of a bounded call: shorter than the computation
PROBES_PER_DEADLINE = round(DEADLINE / timing(DEADLINE)[0])


@pytest.fixture(autouse=True)
def liveness_deadline():
    session = sy.default_session()
    before = session.liveness_timeout, session.timeout
    sy.set_liveness_timeout(DEADLINE)
    yield DEADLINE
    sy.set_liveness_timeout(before[0])
    sy.set_timeout(before[1])


@pytest.fixture
def spawned(hook):
    """Start workers of this test's own; each is forgotten and stopped (continued first, if
    frozen) afterwards."""
    started = []

    def start(worker_id: str):
        worker = sy.VirtualWorker(hook, id=worker_id)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        sy.default_session().forget(worker.ref)
        if worker.process.alive():
            os.kill(worker.process.pid, signal.SIGCONT)
        # a worker left computing ends its turn (and sees SIGTERM) only when the computation is
        # done: it is killed after a short grace, not waited for
        worker.process.stop(timeout=0.5)


def products_for(worker, seconds: float) -> int:
    """How many SIZE x SIZE matrix products take about ``seconds`` on ``worker``, judged by
    the median of three measured products (one product slowed or sped by the load of other
    test processes does not decide it)."""
    x = torch.randn(SIZE, SIZE).send(worker)
    x = x @ x / SIZE                            # the first product pays for warming up
    worker.object_count()                       # the data is there: only computing is timed
    times = []
    for _ in range(3):
        start = time.monotonic()
        x = x @ x / SIZE
        worker.object_count()                   # waits for the product; no tensor travels
        times.append(time.monotonic() - start)
    del x
    return max(4, math.ceil(seconds / sorted(times)[1]))


def busy(pointer, eye, products: int):
    """``products`` matrix products by the identity: a long computation whose result must equal
    the start exactly (a bug that loses or reorders work changes it)."""
    for _ in range(products):
        pointer = pointer @ eye
    return pointer


@sy.func2plan()
def products_in_one_message(pointer, eye, products):
    """:func:`busy` as a plan: one command, which nothing else can overtake on the worker.
    ``products`` is a tensor: a plain value would be part of the call's signature, and a new
    signature costs a round trip."""
    for _ in range(int(products)):
        pointer = pointer @ eye
    return pointer


def probes() -> int:
    return sy.stats().liveness_answers


def after_answers(count: int, action) -> threading.Thread:
    """Run ``action`` once this client has received ``count`` more liveness answers: the worker
    was seen alive, in the middle of the wait, that many times."""
    start = probes()

    def run() -> None:
        wait_until(lambda: probes() >= start + count, 60, f"{count} liveness answers")
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_get_after_a_computation_longer_than_the_deadline_waits(spawned):
    worker = spawned("thinker")
    n = products_for(worker, BUSY_SECONDS)
    data = torch.randn(SIZE, SIZE)
    result = busy(data.send(worker), torch.eye(SIZE).send(worker), n)
    before = probes()
    assert torch.equal(result.get(), data)
    # answered probes all along: the wait outlasted the deadline, and the worker was alive
    assert probes() - before > PROBES_PER_DEADLINE


def test_a_plan_that_trains_longer_than_the_deadline(spawned):
    worker = spawned("trainer")
    n = products_for(worker, BUSY_SECONDS)

    @sy.func2plan()
    def train(weight, inputs, steps):
        optimizer = torch.optim.SGD([weight], lr=SIZE ** 2 / 20)  # shrinks it 10 % a step
        for _ in range(steps):
            optimizer.zero_grad()
            loss = ((inputs @ weight) ** 2).mean()
            loss.backward()
            optimizer.step()
        return loss

    torch.manual_seed(0)
    weight = torch.randn(SIZE, SIZE, requires_grad=True)
    inputs = torch.randn(SIZE, SIZE) / SIZE ** 0.5
    initial = ((inputs @ weight) ** 2).mean().item()
    w_ptr, in_ptr = weight.detach().requires_grad_().send(worker), inputs.send(worker)
    before = probes()
    loss = train(w_ptr, in_ptr, max(2, n // 3)).get()   # a step is about three products
    assert probes() - before > PROBES_PER_DEADLINE
    assert 0 < loss.item() < initial                        # it trained
    del w_ptr, in_ptr


def test_deep_queue_of_bulk_sends_then_get(spawned):
    worker = spawned("sink")
    chunks = [torch.full((16 << 20,), float(i)) for i in range(8)]      # 8 x 64 MiB
    pointers = [chunk.send(worker) for chunk in chunks]
    total = pointers[0]
    for pointer in pointers[1:]:
        total = total + pointer
    assert torch.equal(total.get(), torch.full((16 << 20,), float(sum(range(8)))))
    assert torch.equal(pointers[-1].get(), chunks[-1])
    del pointers


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
def test_a_worker_killed_or_frozen_in_the_middle_of_a_long_wait_is_reported(spawned, signum):
    worker = spawned("victim")
    n = products_for(worker, BUSY_SECONDS * 3)          # far longer than the test waits
    result = busy(torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker), n)
    strike = after_answers(2, lambda: os.kill(worker.process.pid, signum))
    with pytest.raises(sy.WorkerUnavailable) as caught:
        result.get()
    strike.join(5)
    assert not isinstance(caught.value, sy.WorkerTimeout)
    assert caught.value.worker == "victim"
    assert f"no liveness answer for {DEADLINE:.1f} s" in str(caught.value)
    if signum == signal.SIGKILL:
        assert wait_for_exit(worker.process.pid, 5)
    else:
        assert worker.process.alive()                    # frozen, not dead: it was not waited for


def test_an_unreachable_worker_is_reported_in_the_middle_of_a_long_wait(hook):
    """The link to the worker goes dark (bytes dropped, no reset): only liveness can tell."""
    ports = [_free_port(), _free_port()]
    main, live = Relay(ports[0]), Relay(ports[1])
    key_file = sy.default_session().cluster_key_file()
    process = spawn_worker("remote", bind=f"tcp://127.0.0.1:{ports[0]}", key_file=key_file,
                           advertise=main.address, log_level="ERROR",
                           extra_args=["--liveness-bind", f"tcp://127.0.0.1:{ports[1]}",
                                       "--liveness-advertise", live.address])
    worker = None
    try:
        worker = sy.Worker(hook, id="remote", address=main.address, key_file=key_file)
        assert worker.ref.liveness == live.address
        n = products_for(worker, BUSY_SECONDS * 3)
        result = busy(torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker), n)
        cut = after_answers(2, lambda: (main.cut(), live.cut()))
        with pytest.raises(sy.WorkerUnavailable, match="remote.*no liveness answer") as caught:
            result.get()
        cut.join(5)
        assert caught.value.worker == "remote"
        assert process.alive()                          # it is alive, but out of reach
    finally:
        if worker is not None:
            sy.default_session().forget(worker.ref)
        process.stop(timeout=0.5)                       # still computing: killed, not waited for
        main.close()
        live.close()


def test_a_busy_worker_down_a_chain_is_waited_for_and_a_frozen_one_is_reported(spawned):
    """me -> hop -> tail: the computation runs on tail, forwarded by hop; the client talks to
    hop only, so what it learns of tail it learns through hop."""
    hop, tail = spawned("hop"), spawned("tail")
    n = products_for(tail, BUSY_SECONDS)
    data = torch.randn(SIZE, SIZE)
    chain, eye = data.send(tail).send(hop), torch.eye(SIZE).send(tail).send(hop)
    assert len(tail._objects) == 2                # settles: nothing pending from me at tail
    before = probes()
    doubled = busy(chain, eye, n) * 2             # forwarded by hop to tail
    assert torch.equal(doubled.get().get(), data * 2)      # hop waited for tail: no false alarm
    assert probes() - before > PROBES_PER_DEADLINE

    tripled = busy(chain, eye, n * 3) * 3
    freeze = after_answers(2, lambda: os.kill(tail.process.pid, signal.SIGSTOP))
    with pytest.raises(sy.WorkerUnavailable) as caught:
        tripled.get()
    freeze.join(5)
    assert caught.value.worker == "tail" and "noticed by 'hop'" in str(caught.value)
    assert "no liveness answer" in str(caught.value)
    assert torch.equal((torch.ones(2).send(hop) + 1).get(), torch.full((2,), 2.0))  # hop serves


def test_a_move_waits_for_a_busy_destination_and_reports_a_frozen_one(spawned):
    source, dest = spawned("source"), spawned("dest")
    n = products_for(dest, BUSY_SECONDS)
    x = torch.arange(6.0).send(source)
    start, eye = torch.randn(SIZE, SIZE).send(dest), torch.eye(SIZE).send(dest)
    products_in_one_message(start, eye, torch.tensor(1).send(dest)).get()  # learns its layout
    keep_busy = products_in_one_message(start, eye, torch.tensor(n).send(dest))  # waits for nothing
    marker = torch.ones(1).send(dest)              # a store leaves at once, with the queue
    before = probes()
    x.move(dest)                                   # dest stores it after its long computation
    assert x.location == dest and torch.equal(x.get(), torch.arange(6.0))  # the get awaits it
    assert probes() - before > PROBES_PER_DEADLINE

    y = torch.arange(4.0).send(source)
    os.kill(dest.process.pid, signal.SIGSTOP)
    y.move(dest)
    with pytest.raises(sy.WorkerUnavailable) as caught:
        (y + 0).get()                              # the next observation awaits the move
    assert caught.value.worker == "dest" and "noticed by 'source'" in str(caught.value)
    assert y.location == source and torch.equal(y.get(), torch.arange(4.0))  # data stayed
    del keep_busy, marker, start, eye


@pytest.mark.parametrize("bound", ["per call", "for all calls"])
def test_a_bounded_call_raises_worker_timeout_saying_the_worker_is_alive(spawned, bound):
    worker = spawned("slow")
    n = products_for(worker, BUSY_SECONDS)
    result = busy(torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker), n)
    with pytest.raises(sy.WorkerTimeout) as caught:
        if bound == "per call":
            result.get(timeout=BOUND)
        else:
            sy.set_timeout(BOUND)
            result.get()
    assert not isinstance(caught.value, sy.WorkerUnavailable)
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, sy.SyftZmqError)
    assert caught.value.worker == "slow" and caught.value.seconds == BOUND
    assert f"within {BOUND:.1f} s" in str(caught.value)
    assert "alive and still working" in str(caught.value)
    sy.set_timeout(None)
    assert worker.ping()["ref"].id == "slow"       # and it answers once it is done


def test_the_liveness_endpoint_answers_only_signed_probes_naming_its_incarnation(spawned):
    worker = spawned("prober")
    ref = worker.ref
    assert ref.liveness and ref.liveness != ref.address
    context = sy.default_session().context
    key = read_key(sy.default_session().cluster_key_file())
    right = Probe(context, "test#1", ref.incarnation, ref.liveness, key)
    wrong_key = Probe(context, "test#2", ref.incarnation, ref.liveness, os.urandom(32))
    old_incarnation = Probe(context, "test#3", "prober#0ld", ref.liveness, key)
    try:
        n = products_for(worker, BUSY_SECONDS)
        result = busy(torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker), n)
        for probe in (right, wrong_key, old_incarnation):
            probe.begin(first_in=0)
            probe.send()
        wait_until(lambda: (right.read(), old_incarnation.read()) and right.answered
                   and old_incarnation.stale, 20, "answers from the liveness endpoint")
        assert right.last_answer["incarnation"] == ref.incarnation
        assert "prober#0ld" in old_incarnation.stale and ref.incarnation in old_incarnation.stale
        assert "restarted" in old_incarnation.stale
        wrong_key.read()
        assert wrong_key.answered == 0 and wrong_key.stale is None  # unsigned by our key: silence
        busy_seen = []

        def answers_busy() -> bool:
            right.send()
            right.read()
            busy_seen.append(right.last_answer.get("busy_for"))
            return isinstance(busy_seen[-1], float) and busy_seen[-1] > 0

        wait_until(answers_busy, 20, "a liveness answer while the loop computes")
        result.get()
    finally:
        for probe in (right, wrong_key, old_incarnation):
            probe.close()


def test_with_curve_probes_are_encrypted_and_strangers_get_no_answer(hook, tmp_path):
    """CURVE workers: the client's probes and a worker's probes of its peer pass the same
    authenticator as the main sockets; a client without the keys gets no liveness answer."""
    directory = create_curve_dir(tmp_path / "curve")
    key_file = sy.default_session().cluster_key_file()
    processes = [spawn_worker(name, key_file=key_file, log_level="ERROR",
                              extra_args=["--curve-dir", str(directory)])
                 for name in ("curve_hop", "curve_tail")]
    workers = []
    try:
        hop, tail = workers[:] = [sy.Worker(hook, id=p.id, address=p.endpoint, key_file=key_file,
                                            curve_dir=directory) for p in processes]
        n = products_for(tail, BUSY_SECONDS)
        data = torch.randn(SIZE, SIZE)
        chain, eye = data.send(tail).send(hop), torch.eye(SIZE).send(tail).send(hop)
        assert len(tail._objects) == 2
        before = probes()
        assert torch.equal(busy(chain, eye, n).get().get(), data)   # hop probed tail meanwhile
        assert probes() - before > PROBES_PER_DEADLINE
        key = read_key(key_file)
        context = sy.default_session().context
        stranger = Probe(context, "x#1", tail.ref.incarnation, tail.ref.liveness, key)  # no CURVE
        member = Probe(context, "x#2", tail.ref.incarnation, tail.ref.liveness, key,
                       CurveClient(directory))
        try:
            for probe in (stranger, member):
                probe.begin(first_in=0)
                probe.send()
            wait_until(lambda: member.read() or member.answered, 20, "a CURVE liveness answer")
            stranger.socket.poll(500)
            stranger.read()
            assert stranger.answered == 0
        finally:
            stranger.close()
            member.close()
        del chain, eye
    finally:
        for worker in workers:
            sy.default_session().forget(worker.ref)
        for process in processes:
            process.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""syftzmq's side of every case, through its public pointer API only.

Commands on pointers are fire-and-forget, so a timing must end with an observation that
guarantees the work was done: ``get`` where the spec says so, and ``worker.ping()`` after a
``send`` (one connection, handled in order: the ping's answer comes after the store).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import torch

import time

import _bench_fedavg as fedavg
import _bench_lean as lean
import _bench_fleet as fleet
import _bench_part6 as part6
import syftzmq as sy
from _bench_common import (LEAN_INTERLEAVED, LOCAL, MEMORY_IDLE, ROUND_TRIP, SYFT, SYFT_PLAN, SYFT_SEND,
                           ClientTraffic, Config, Measurement, MiB, Results, Watchdog, bulk_name, chain_name,
                           fedavg_name, memory_stored_name, move_name, one_thread, overhead_name,
                           part6_name, pipelined_name, rss_bytes, sample, stopwatch, timings, traffic_name)


# ---------------------------------------------------------------------------------------- driver
def run(config: Config, cases: set[int], results: Results, watchdog: Watchdog) -> None:
    """Cases 1-6 and 8 on one pool of workers, then cases 9-10 and case 7 on fresh workers."""
    hook = sy.TorchHook(torch)
    pooled = sorted(cases & set(POOL_CASES))
    if pooled:
        workers = _spawn(hook, [f"w{i}" for i in range(1, _pool_size(config, cases) + 1)])
        try:
            for case in pooled:
                _guarded(case, results,
                         lambda case=case: _pool_case(case, watchdog)(workers, config, results))
        finally:
            _shutdown(workers)
    if cases & {9, 10}:
        _guarded(min(cases & {9, 10}), results,
                 lambda: fleet.run(hook, config, cases, results, _spawn, _shutdown))
    if 7 in cases:
        _guarded(7, results, lambda: _memory(hook, config, results))
    sy.default_session().close()  # the last phase: also ends the worker template, if any


def _pool_case(case: int, watchdog: Watchdog) -> Callable[[Sequence[Any], Config, Results], None]:
    """What measures ``case`` on the pool; case 1 also runs the lean floor's server, which the
    run's watchdog adopts."""
    if case == 1:
        return functools.partial(_round_trip, watchdog=watchdog)
    return POOL_CASES[case]


def _pool_size(config: Config, cases: set[int]) -> int:
    needed = [2]
    if 5 in cases:
        needed.append(max(config.chain_depths))
    if 6 in cases:
        needed.append(max(config.fedavg_workers) + 1)  # the last one aggregates
    return max(needed)


def _spawn(hook: Any, names: Sequence[str]) -> list[Any]:
    workers: list[Any] = []
    try:
        for name in names:
            workers.append(sy.VirtualWorker(hook, id=name))
    except BaseException:
        _shutdown(workers)
        raise
    return workers


def _shutdown(workers: Sequence[Any]) -> None:
    for worker in workers:
        try:
            worker.shutdown()
        except Exception as exc:  # the process is reaped by shutdown() even when it fails
            print(f"  syftzmq: shutting down {worker.id} failed: {exc}", flush=True)


def _guarded(case: int, results: Results, run_case: Callable[[], None]) -> None:
    """Run one case; a missing capability or a failure becomes a notice, and the run goes on."""
    started = time.perf_counter()
    try:
        run_case()
    except (NotImplementedError, AttributeError, TypeError, sy.NeedsGetError) as exc:
        results.notice(case, SYFT, f"not supported yet: {type(exc).__name__}: {exc}")
    except Exception as exc:
        results.notice(case, SYFT, f"failed: {type(exc).__name__}: {exc}")
    print(f"  [{SYFT}] case {case}: {time.perf_counter() - started:.1f} s", flush=True)


def _check(condition: bool, what: str) -> None:
    """Results are verified once per case, outside the timings: a fast wrong answer is no result."""
    if not condition:
        raise RuntimeError(f"wrong result: {what}")


def _send_stored(tensor: torch.Tensor, worker: Any) -> Any:
    """``send`` is fire-and-forget; the ping's answer proves the worker has stored the tensor."""
    pointer = tensor.send(worker)
    worker.ping()
    return pointer


# ---------------------------------------------------------------------------------------- cases 1-3
INTERLEAVED_BLOCKS = 5  # cases 1 and 5: the systems (depths) measured take turns this often
def _round_trip(workers: Sequence[Any], config: Config, results: Results,
                watchdog: Watchdog) -> None:
    """syftzmq's round trip, and the lean floor's in blocks alternating with it (the ratio
    the target is judged on: both see the machine as it is at the time)."""
    pointer = torch.ones(4).send(workers[0])
    _check(torch.equal((pointer + pointer).get(), torch.full((4,), 2.0)), "p + p")
    mine: list[float] = []
    floor: list[float] = []
    per_block = max(1, config.reps_small // INTERLEAVED_BLOCKS)
    with lean.serving(watchdog) as client:
        lean_once = lean.round_trip(client)
        for _ in range(INTERLEAVED_BLOCKS):
            mine += timings(lambda: (pointer + pointer).get(), per_block)
            floor += timings(lean_once, per_block)
    results.add(Measurement(1, ROUND_TRIP, SYFT, mine),
                Measurement(1, ROUND_TRIP, LEAN_INTERLEAVED, floor,
                            note="the lean floor again, in blocks alternating with syftzmq's"))


def _pipelined(workers: Sequence[Any], config: Config, results: Results) -> None:
    ops = config.pipelined_ops
    pointer = torch.ones(4).send(workers[0])

    def burst() -> torch.Tensor:
        value = pointer
        for _ in range(ops):
            value = value + 1
        return value.get()

    before = sy.stats()
    _check(torch.equal(burst(), torch.full((4,), 1.0 + ops)), "pipelined sum")
    used = sy.stats() - before
    results.add(Measurement(2, pipelined_name(ops), SYFT, timings(burst, config.reps_pipelined),
                            work=ops, work_unit="ops",
                            note=f"p = p + 1 chain; {used.messages_sent / ops:.2f} messages/op, "
                                 f"{used.round_trips} round trip(s)"))


def _bulk(workers: Sequence[Any], config: Config, results: Results) -> None:
    for mib in config.bulk_mib:
        tensor = torch.rand(mib * MiB // 4)
        _check(torch.equal(_send_stored(tensor, workers[0]).get(), tensor), f"{mib} MiB")

        def round_once() -> tuple[float, float]:
            held: list[Any] = []
            send = stopwatch(lambda: held.append(_send_stored(tensor, workers[0])))
            get = stopwatch(lambda: held[0].get())
            return send, get

        send, get = zip(*sample(round_once, config.reps_bulk))
        results.add(Measurement(3, bulk_name("send", mib), SYFT, list(send), work=mib * MiB,
                                work_unit="B", note="x.send(w); w.ping()"),
                    Measurement(3, bulk_name("get", mib), SYFT, list(get), work=mib * MiB,
                                work_unit="B", note="p.get()"))


# ---------------------------------------------------------------------------------------- case 4
def _move(workers: Sequence[Any], config: Config, results: Results) -> None:
    """Move A->B, against a one-way send of the same tensor; count the client's TCP bytes."""
    mib, source, dest = config.move_mib, workers[0], workers[1]
    tensor = torch.rand(mib * MiB // 4)
    _check(torch.equal(_send_stored(tensor, source).move(dest).get(), tensor), "moved data")

    def move_once() -> tuple[float, float, float, float, int]:
        held: list[Any] = []
        with ClientTraffic() as send_traffic:
            send = stopwatch(lambda: held.append(_send_stored(tensor, source)))
        with ClientTraffic() as move_traffic:
            # a move returns at once; its end is observed, as a send's is (B answers after it)
            move = stopwatch(lambda: (held[0].move(dest), dest.ping()))
        return (move, send, float(move_traffic.total), float(send_traffic.total),
                move_traffic.lost_sockets + send_traffic.lost_sockets)

    move, send, move_bytes, send_bytes, lost = (list(column) for column in
                                                zip(*sample(move_once, config.reps_bulk)))
    counted = "kernel TCP counters of this process"
    if any(lost):
        counted += f"; {sum(lost)} socket(s) closed while counting, so this may undercount"
    name = move_name(mib)
    results.add(Measurement(4, name, SYFT, move, work=mib * MiB, work_unit="B",
                            note="p.move(B); B.ping(): A sends to B directly"),
                Measurement(4, name, SYFT_SEND, send, work=mib * MiB, work_unit="B",
                            note="x.send(A); A.ping()"),
                Measurement(4, traffic_name(mib), SYFT, move_bytes, unit="B", note=counted),
                Measurement(4, traffic_name(mib), SYFT_SEND, send_bytes,
                            unit="B", note="the counter sees a send's payload"))


# ---------------------------------------------------------------------------------------- case 5
def _chain(workers: Sequence[Any], depth: int) -> Any:
    """A pointer chain client -> w{depth} -> ... -> w1 (data), one process per hop."""
    pointer = torch.ones(4).send(workers[0])
    for worker in workers[1:depth]:
        pointer = pointer.send(worker)
    return pointer


def _unwrap(value: Any, hops: int) -> Any:
    for _ in range(hops):
        value = value.get()
    return value


def _chains(workers: Sequence[Any], config: Config, results: Results) -> None:
    """``(chain + 1).get()``: the outermost worker answers only after the op reached the data.

    The answer is the next pointer of the chain (the data itself at depth 1); the worker's
    flush-before-answer rule guarantees the addition was applied at every hop before it replies.
    The depths take turns in blocks (as case 1's two systems do), so the growth per hop, a
    ratio between depths, is not also a drift of the machine between them.
    """
    chains = {depth: _chain(workers, depth) for depth in config.chain_depths}
    for depth, chain in chains.items():
        _check(torch.equal(_unwrap((chain + 1).get(), depth - 1), torch.full((4,), 2.0)),
               f"chain of depth {depth}")
    samples: dict[int, list[float]] = {depth: [] for depth in chains}
    per_block = max(1, config.reps_small // INTERLEAVED_BLOCKS)
    for _ in range(INTERLEAVED_BLOCKS):
        for depth, chain in chains.items():
            samples[depth] += timings(lambda: (chain + 1).get(), per_block)
    for depth in chains:
        results.add(Measurement(5, chain_name(depth), SYFT, samples[depth],
                                note="get returns the next pointer; the op reached the data"))


# ---------------------------------------------------------------------------------------- case 6
def _fedavg(workers: Sequence[Any], config: Config, results: Results) -> None:
    """With ``nn.Linear`` if the library can send modules, else with tensor pointers."""
    kind: type[fedavg.Learner] = fedavg.ModuleLearner
    if not hasattr(torch.nn.Module, "send"):
        results.notice(6, SYFT, "not supported yet: nn.Module has no .send(); training weight "
                                "and bias tensor pointers instead")
        kind = fedavg.TensorLearner
    for count in config.fedavg_workers:
        try:
            _fedavg_with(kind, count, workers, config, results)
        except (NotImplementedError, AttributeError, TypeError, RuntimeError,
                sy.SyftZmqError) as exc:
            if kind is fedavg.TensorLearner:
                raise
            results.notice(6, SYFT, f"not supported yet: nn.Module training failed "
                                    f"({type(exc).__name__}: {exc}); training weight and bias "
                                    f"tensor pointers instead")
            kind = fedavg.TensorLearner
            _fedavg_with(kind, count, workers, config, results)


def _fedavg_with(kind: type[fedavg.Learner], count: int, workers: Sequence[Any], config: Config,
                 results: Results) -> None:
    initial = fedavg.initial_model()
    shards = fedavg.make_shards(count)
    with one_thread():
        expected = fedavg.local_round(kind, initial, shards)
    remote_shards = [[(x.send(w), y.send(w)) for x, y in shard]
                     for w, shard in zip(workers, shards)]
    aggregator = workers[-1]
    plan = sy.func2plan()(fedavg.local_training) \
        if kind is fedavg.ModuleLearner and hasattr(sy, "func2plan") else None

    def local_once() -> float:
        with one_thread():
            return stopwatch(lambda: fedavg.local_round(kind, initial, shards))

    # The rows' samples alternate (local, pointer ops, Plan; one warm-up each first), so a
    # slow spell of the machine hits every row alike: the local round's own time swung from
    # 4 to 10 ms between runs here.
    runs = {"local": local_once,
            "rounds": lambda: _remote_round(kind, initial, workers[:count], aggregator,
                                            remote_shards)}
    if plan is not None:
        runs["planned"] = lambda: _remote_round(kind, initial, workers[:count], aggregator,
                                                remote_shards, plan)
    for run in runs.values():
        run()
    samples: dict[str, list] = {name: [] for name in runs}
    for _ in range(config.fedavg_reps):
        for name, run in runs.items():
            samples[name].append(run())
    local, rounds = samples["local"], samples["rounds"]
    _check(all(torch.allclose(got, want, atol=1e-5) for got, want in zip(rounds[-1][1], expected)),
           f"FedAvg with {count} workers")
    name = fedavg_name(count)
    results.add(Measurement(6, name, SYFT, [seconds for seconds, _ in rounds],
                            note=f"{kind.kind}; {fedavg.STEPS} steps x batch {fedavg.BATCH}, "
                                 f"move to an aggregator, average, get"),
                Measurement(6, name, LOCAL, local,
                            note="the same learner code on local tensors, one after the "
                                 "other, one thread"))
    if plan is not None:
        planned = samples["planned"]
        _check(all(torch.allclose(got, want, atol=1e-5)
                   for got, want in zip(planned[-1][1], expected)),
               f"FedAvg with {count} workers, Plan")
        results.add(Measurement(6, name, SYFT_PLAN, [seconds for seconds, _ in planned],
                                note=f"the same {kind.kind} steps as one sy.func2plan call per "
                                     f"worker (one command each), then the same move, average "
                                     f"and get; judged against local sequential"))


def _remote_round(kind: type[fedavg.Learner], initial: torch.nn.Linear, workers: Sequence[Any],
                  aggregator: Any, shards: Sequence[Sequence[fedavg.Batch]], plan: Any = None
                  ) -> tuple[float, list[torch.Tensor]]:
    """Timed: the training, the models' move to the aggregator, the average and its get.

    With ``plan`` (module learners), each worker's whole local loop is one plan call."""
    learners = [kind(initial) for _ in workers]
    for learner, worker in zip(learners, workers):
        learner.send(worker)
    for worker in workers:
        worker.ping()  # the starting model is in place: sending it is setup, not the round
    averaged: list[torch.Tensor] = []

    def round_() -> None:
        if plan is None:
            fedavg.train_interleaved(learners, shards)
        else:
            for learner, shard in zip(learners, shards):
                plan(learner.model, shard, fedavg.LR)
        for learner in learners:
            learner.move(aggregator)
        averaged.extend(pointer.get() for pointer in fedavg.averaged_parameters(learners))

    return stopwatch(round_), averaged


# ---------------------------------------------------------------------------------------- case 8
def _part6(workers: Sequence[Any], config: Config, results: Results) -> None:
    """Tutorial Part 6's epoch on pointers to batches sent beforehand, against the same loop on
    local tensors in this process.

    The local loop runs on one thread, as each worker does: on this shared two-core machine
    torch's default (two threads) made the local epoch 7x *slower* than one thread (its second
    thread waits to be scheduled), which would flatter syftzmq."""
    initial = part6.initial_model()
    shards = part6.make_shards(config.part6_images)
    batches = [batch for shard in shards for batch in shard]
    bob, alice = workers[0], workers[1]
    remote = [(x.send(w), y.send(w)) for w, shard in zip((bob, alice), shards) for x, y in shard]
    bob.ping()
    alice.ping()  # every batch is stored: sending them is the loader's work, not timed
    with one_thread():
        # a batch on each side first: first-call costs (conv kernels, the model's first send)
        part6.train_epoch(part6.fresh(initial), batches[:2], remote=False)
        part6.train_epoch(part6.fresh(initial), remote[:1] + remote[-1:], remote=True)

        def epoch(on: Sequence[Any], is_remote: bool) -> tuple[float, Any]:
            model = part6.fresh(initial)
            return stopwatch(lambda: part6.train_epoch(model, on, is_remote)), model

        local, mine = [], []
        for _ in range(config.part6_reps):  # interleaved, so a busy spell hits both alike
            local.append(epoch(batches, False))
            mine.append(epoch(remote, True))
    _check(part6.same_parameters(mine[-1][1], local[-1][1]), "Part 6 model after one epoch")
    name = part6_name(config.part6_images)
    per_worker = "/".join(str(len(shard)) for shard in shards)
    results.add(Measurement(8, name, SYFT, [s for s, _ in mine], work=len(batches),
                            work_unit="batches",
                            note=f"per batch: model.send(data.location), forward, nll_loss, "
                                 f"backward, SGD step (lr {part6.LR}), model.get(); {per_worker} "
                                 f"batches on bob/alice, sent beforehand; 1 torch thread per "
                                 f"worker"),
                Measurement(8, name, LOCAL, [s for s, _ in local], work=len(batches),
                            work_unit="batches",
                            note="the same loop on local tensors in this process, one thread"))


# ---------------------------------------------------------------------------------------- case 7
def _memory(hook: Any, config: Config, results: Results) -> None:
    """Each measurement on a fresh worker, so neither inherits the other's heap."""
    big = _on_fresh_worker(hook, "mem-big", lambda w: _store_big(w, config))
    small = _on_fresh_worker(hook, "mem-small", lambda w: _store_small(w, config))
    results.add(*big, *small)


def _on_fresh_worker(hook: Any, name: str, measure: Callable[[Any], list[Measurement]]
                     ) -> list[Measurement]:
    (worker,) = _spawn(hook, [name])
    try:
        warm = torch.ones(4).send(worker)
        (warm + 1).get()  # the worker's first command imports and allocates what any use needs
        del warm
        worker.object_count()
        return measure(worker)
    finally:
        _shutdown([worker])


def _store_big(worker: Any, config: Config) -> list[Measurement]:
    pid, total, count = worker.process.pid, config.memory_big_mib * MiB, config.memory_big_tensors
    chunk = torch.rand(total // count // 4)
    idle = rss_bytes(pid)
    pointers = [chunk.send(worker) for _ in range(count)]
    worker.ping()
    stored = rss_bytes(pid)
    del pointers
    _check(worker.object_count() == 0, "store emptied")
    freed = rss_bytes(pid)
    return [Measurement(7, MEMORY_IDLE, SYFT, [float(idle)], unit="B"),
            Measurement(7, memory_stored_name(total, count), SYFT, [float(stored)], unit="B",
                        work=total, note=f"{total} bytes stored"),
            Measurement(7, "worker RSS, after deleting them", SYFT, [float(freed)], unit="B")]


def _store_small(worker: Any, config: Config) -> list[Measurement]:
    """The per-object memory, and what a PING (how clients wait for a worker) costs with that
    many objects stored: plain, and with ``vitals`` (the bytes stored: a walk over the store)."""
    pid, count = worker.process.pid, config.memory_small_tensors
    idle = rss_bytes(pid)
    empty_ping = timings(worker.ping, config.reps_small // 10)
    pointers = [torch.ones(4).send(worker) for _ in range(count)]
    worker.ping()
    per_object = (rss_bytes(pid) - idle) / count - 16  # minus the four floats themselves
    full_ping = timings(worker.ping, config.reps_small // 10)
    vitals_ping = timings(lambda: worker.ping(vitals=True), 5)
    del pointers
    worker.object_count()
    return [Measurement(7, overhead_name(count), SYFT, [per_object],
                        unit="B", note="RSS growth / count - 16 payload bytes"),
            Measurement(7, "worker.ping(), empty store", SYFT, empty_ping),
            Measurement(7, f"worker.ping(), {count} objects stored", SYFT, full_ping),
            Measurement(7, f"worker.ping(vitals=True), {count} objects stored", SYFT,
                        vitals_ping, note="adds bytes_stored, a walk over the store "
                                          "(syftzmq cluster status asks for it)")]


POOL_CASES: dict[int, Callable[..., None]] = {
    1: _round_trip, 2: _pipelined, 3: _bulk, 4: _move, 5: _chains, 6: _fedavg, 8: _part6}

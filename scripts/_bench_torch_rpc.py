"""The torch.distributed.rpc peer: a driver (this process) and two workers, TensorPipe backend.

The functions the workers run are module-level so that RPC can pickle them by name; the worker
processes import this module (see ``_bench_common.spawn_helper``). Remote data is held the torch
way, as RRefs created with ``rpc.remote`` and fetched with ``to_here``.

torch's rendezvous and graceful shutdown have no deadline of their own here, so the driver runs
shutdown on a thread it stops waiting for, and the workers exit when the driver closes their
stdin; the run's :class:`~_bench_common.Watchdog` is the last resort.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
import warnings

import torch
import torch.distributed.rpc as rpc

from _bench_common import (ROUND_TRIP, TORCH, ClientTraffic, Config, Measurement, MiB, Results,
                           Watchdog, bulk_name, exit_with_parent, move_name, pipelined_name, sample,
                           spawn_helper, stop_helper, stopwatch, timings, traffic_name)

WORKERS = ("w1", "w2")
RPC_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 20.0

_held: dict[str, torch.Tensor] = {}  # on a worker: tensors handed over by forward_to


# ------------------------------------------------------------------------------ remote functions
def identity(tensor: torch.Tensor) -> torch.Tensor:
    """Keeps what arrived, without the extra copy ``torch.clone`` would add on the worker."""
    return tensor


def ones(numel: int) -> torch.Tensor:
    return torch.ones(numel)


def add_self(rref: rpc.RRef) -> torch.Tensor:
    value = rref.local_value()
    return value + value


def add_one(rref: rpc.RRef) -> torch.Tensor:
    return rref.local_value() + 1


def hold(key: str, tensor: torch.Tensor) -> None:
    _held[key] = tensor


def drop(key: str) -> None:
    _held.pop(key, None)


def forward_to(rref: rpc.RRef, dest: str, key: str) -> None:
    """On worker A: send the tensor behind ``rref`` (owned here) straight to ``dest``."""
    rpc.rpc_sync(dest, hold, args=(key, rref.local_value()), timeout=RPC_TIMEOUT_S)


# ---------------------------------------------------------------------------------------- processes
def _options(port: int | str) -> rpc.TensorPipeRpcBackendOptions:
    """TensorPipe (the default backend); rendezvous at 127.0.0.1 on a free port, like
    MASTER_ADDR=127.0.0.1 MASTER_PORT=<port> would, but without touching the environment."""
    # torch's own rendezvous code triggers this deprecation warning; it is not ours to act on.
    warnings.filterwarnings("ignore", message="You are using a Backend")
    return rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}",
                                           rpc_timeout=RPC_TIMEOUT_S)


def serve(rank: str, world_size: str, port: str) -> None:
    """Entry point of a worker process: join the group, serve until the group shuts down."""
    exit_with_parent()
    rpc.init_rpc(WORKERS[int(rank) - 1], rank=int(rank), world_size=int(world_size),
                 rpc_backend_options=_options(port))
    rpc.shutdown(graceful=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TorchRpcGroup:
    """``with TorchRpcGroup(watchdog):`` — world size 3: the driver (rank 0) and two workers."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> "TorchRpcGroup":
        port = _free_port()
        world = len(WORKERS) + 1
        self.children = [spawn_helper("_bench_torch_rpc", "serve", str(rank), str(world), str(port),
                                      watchdog=self.watchdog, ready_line=False)
                         for rank in range(1, world)]
        try:
            rpc.init_rpc("driver", rank=0, world_size=world, rpc_backend_options=_options(port))
        except BaseException:
            self._stop_children()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        done = threading.Thread(target=rpc.shutdown, kwargs={"graceful": True}, daemon=True,
                                name="torch-rpc-shutdown")
        done.start()
        done.join(SHUTDOWN_TIMEOUT_S)
        if done.is_alive():
            print(f"  torch.rpc: graceful shutdown did not finish in {SHUTDOWN_TIMEOUT_S:.0f} s; "
                  "stopping its workers", flush=True)
        self._stop_children()

    def _stop_children(self) -> None:
        for child in self.children:
            stop_helper(child, self.watchdog, timeout=SHUTDOWN_TIMEOUT_S)


# ---------------------------------------------------------------------------------------- cases
def run(config: Config, cases: set[int], results: Results, watchdog: Watchdog) -> None:
    """Cases 1-4 (the ones with a torch peer in the spec)."""
    if not cases & {1, 2, 3, 4}:
        return
    with TorchRpcGroup(watchdog):
        a, b = WORKERS
        small = rpc.remote(a, ones, args=(4,))
        small.to_here(RPC_TIMEOUT_S)
        if 1 in cases:
            results.add(Measurement(1, ROUND_TRIP, TORCH, timings(
                lambda: rpc.remote(a, add_self, args=(small,)).to_here(RPC_TIMEOUT_S),
                config.reps_small), note="rpc.remote(add, RRef).to_here()"))
        if 2 in cases:
            results.add(_pipelined(a, small, config))
        if 3 in cases:
            for mib in config.bulk_mib:
                results.add(*_bulk(a, mib, config.reps_bulk))
        if 4 in cases:
            results.add(*_move(a, b, config.move_mib, config.reps_bulk))


def _pipelined(worker: str, operand: rpc.RRef, config: Config) -> Measurement:
    """``ops`` rpc.remote calls issued back to back, then wait until every one has run."""
    ops = config.pipelined_ops

    def burst() -> None:
        rrefs = [rpc.remote(worker, add_one, args=(operand,)) for _ in range(ops)]
        torch.futures.wait_all([rref._get_future() for rref in rrefs])
        rrefs[-1].to_here(RPC_TIMEOUT_S)

    return Measurement(2, pipelined_name(ops), TORCH, timings(burst, config.reps_pipelined),
                       work=ops, work_unit="ops", note="independent rpc.remote(add_one, RRef)")


def _send(worker: str, tensor: torch.Tensor) -> rpc.RRef:
    """``rpc.remote`` of the tensor, returned once the owner has stored it."""
    rref = rpc.remote(worker, identity, args=(tensor,))
    rref._get_future().wait()
    return rref


def _bulk(worker: str, mib: int, reps: int) -> list[Measurement]:
    tensor = torch.rand(mib * MiB // 4)
    check = _send(worker, tensor).to_here(RPC_TIMEOUT_S)
    if not torch.equal(check, tensor):
        raise RuntimeError("torch.rpc returned different data")

    def round_once() -> tuple[float, float]:
        holder: list[rpc.RRef] = []
        send = stopwatch(lambda: holder.append(_send(worker, tensor)))
        get = stopwatch(lambda: holder[0].to_here(RPC_TIMEOUT_S))
        return send, get

    send, get = zip(*sample(round_once, reps))
    return [Measurement(3, bulk_name("send", mib), TORCH, list(send), work=mib * MiB,
                        work_unit="B", note="rpc.remote(identity, t), wait for creation"),
            Measurement(3, bulk_name("get", mib), TORCH, list(get), work=mib * MiB,
                        work_unit="B", note="rref.to_here()")]


def _move(source: str, dest: str, mib: int, reps: int) -> list[Measurement]:
    """Worker A sends its tensor to worker B by its own RPC; the driver only asks it to."""
    tensor = torch.rand(mib * MiB // 4)

    def move_once() -> tuple[float, float]:
        rref = _send(source, tensor)
        key = uuid.uuid4().hex
        with ClientTraffic() as seen:
            elapsed = stopwatch(lambda: rpc.rpc_sync(source, forward_to, args=(rref, dest, key),
                                                     timeout=RPC_TIMEOUT_S))
        rpc.rpc_sync(dest, drop, args=(key,), timeout=RPC_TIMEOUT_S)
        return elapsed, float(seen.total)

    times, traffic = (list(column) for column in zip(*sample(move_once, reps)))
    return [Measurement(4, move_name(mib), TORCH, times, work=mib * MiB, work_unit="B",
                        note="rpc_sync(A, forward_to): A rpc_syncs the tensor to B"),
            Measurement(4, traffic_name(mib), TORCH, traffic, unit="B",
                        note="TCP only; TensorPipe may use shared memory locally")]

if __name__ == "__main__":
    sys.exit("run scripts/bench.py; this module is its torch.distributed.rpc helper")

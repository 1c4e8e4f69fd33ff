"""Measure liveness: how long a client takes to report a worker killed (kill -9) or frozen
(SIGSTOP) in the middle of a pending ``.get()``, and the longest computation that was waited
for without a false alarm.

    python scripts/measure_liveness.py                 # 10 trials each, default 5 s deadline
    python scripts/measure_liveness.py --trials 3 --long-seconds 20

Each trial starts a worker of its own, queues matrix products that would take far longer
than the deadline, calls ``.get()``, and, once the client has seen the worker alive in the
middle of that wait (a liveness answer) plus a random fraction of a probe interval, sends the
signal. The time from the signal to the ``WorkerUnavailable`` is the detection time. Prints
the median, min and max per signal, then the long computation's duration and outcome.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import threading
import time

import torch

import syftzmq as sy

SIZE = 2500  # the matrix products


def products(pointer, eye, count: int):
    for _ in range(count):
        pointer = pointer @ eye
    return pointer


def one_detection(hook, signum: int, per_product: float) -> float:
    worker = sy.VirtualWorker(hook, id="measured")
    try:
        n = int(60 / per_product) + 1  # a minute of work: the signal comes long before the end
        pending = products(torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker), n)
        stats = sy.default_session().stats
        seen = stats.liveness_answers
        struck: list[float] = []

        def strike() -> None:
            deadline = time.monotonic() + 60
            while stats.liveness_answers == seen and time.monotonic() < deadline:
                time.sleep(0.005)  # polling a counter: this is a measurement script
            time.sleep(random.random())  # anywhere within one probe interval
            struck.append(time.monotonic())
            os.kill(worker.process.pid, signum)

        thread = threading.Thread(target=strike, daemon=True)
        thread.start()
        try:
            pending.get()
        except sy.WorkerUnavailable:
            detected = time.monotonic()
        else:
            raise RuntimeError("the get returned: the computation ended before the signal")
        thread.join(5)
        return detected - struck[0]
    finally:
        sy.default_session().forget(worker.ref)
        if worker.process.alive():
            os.kill(worker.process.pid, signal.SIGCONT)
        worker.process.stop()


def per_product_seconds(hook) -> float:
    worker = sy.VirtualWorker(hook, id="calibrate")
    try:
        x, eye = torch.randn(SIZE, SIZE).send(worker), torch.eye(SIZE).send(worker)
        start = time.monotonic()
        products(x, eye, 4).get()
        return (time.monotonic() - start) / 4
    finally:
        worker.shutdown()


def long_computation(hook, seconds: float, per_product: float) -> tuple[float, str]:
    worker = sy.VirtualWorker(hook, id="long")
    try:
        n = max(1, round(seconds / per_product))
        data = torch.randn(SIZE, SIZE)
        pending = products(data.send(worker), torch.eye(SIZE).send(worker), n)
        start = time.monotonic()
        try:
            ok = torch.equal(pending.get(), data)
            outcome = f"{n} products of {SIZE}x{SIZE}, result {'correct' if ok else 'WRONG'}"
        except sy.WorkerUnavailable as exc:
            outcome = f"FALSE ALARM: {exc}"
        return time.monotonic() - start, outcome
    finally:
        worker.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--long-seconds", type=float, default=60.0,
                        help="length of the long computation to wait for (default 60)")
    args = parser.parse_args(argv)
    hook = sy.TorchHook(torch)
    session = sy.default_session()
    print(f"liveness deadline {session.liveness_timeout:.1f} s, bound {session.timeout}, "
          f"torch threads per worker 1, {os.cpu_count()} cores")
    per_product = per_product_seconds(hook)
    print(f"one {SIZE}x{SIZE} product on a worker: {per_product * 1000:.0f} ms")
    for name, signum in (("kill -9", signal.SIGKILL), ("SIGSTOP", signal.SIGSTOP)):
        times = [one_detection(hook, signum, per_product) for _ in range(args.trials)]
        print(f"{name:8s} detected after: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)}): "
              + " ".join(f"{t:.2f}" for t in times), flush=True)
    took, outcome = long_computation(hook, args.long_seconds, per_product)
    print(f"long computation waited for: {took:.1f} s, {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure where a small round trip's time goes: CPU per ``(p + p).get()`` on each end.

    python scripts/measure_cpu.py                  # 5 blocks of 2,000 round trips per system
    python scripts/measure_cpu.py --blocks 3 --round-trips 1000

For syftzmq and for the lean-Python floor (``scripts/_bench_lean.py``), in blocks that
alternate so that a busy spell of the machine hits both: the wall time per round trip, the
client's CPU (this process, every thread: ``time.process_time``) and the server's (the worker's
or the lean server's process, every thread, from ``/proc/<pid>/stat``). Prints the median of
the blocks and their range. The figures behind the README's "Where the remaining time goes".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch

import syftzmq as sy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_lean as lean  # noqa: E402
from _bench_common import Watchdog, proc_stat_fields  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """Seconds of CPU the process ``pid`` used so far, every thread (user + system)."""
    fields = proc_stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def block(call: Callable[[], object], server_pid: int, count: int) -> tuple[float, float, float]:
    """Wall, client CPU and server CPU per call over ``count`` calls, in seconds."""
    server0, client0, wall0 = process_cpu(server_pid), time.process_time(), time.perf_counter()
    for _ in range(count):
        call()
    wall, client = time.perf_counter() - wall0, time.process_time() - client0
    return wall / count, client / count, (process_cpu(server_pid) - server0) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    hook = sy.TorchHook(torch)
    worker = sy.VirtualWorker(hook, id="measured")
    watchdog = Watchdog(600)
    try:
        pointer = torch.ones(4).send(worker)
        if not torch.equal((pointer + pointer).get(), torch.full((4,), 2.0)):
            raise SystemExit("measure_cpu: syftzmq's p + p came back wrong")
        worker_pid = worker.ping()["pid"]
        with lean.serving(watchdog) as client:
            systems = {"syftzmq": (lambda: (pointer + pointer).get(), worker_pid),
                       "lean Python": (lean.round_trip(client), client.server_pid)}
            for call, _ in systems.values():
                for _ in range(300):  # warm-up: first-call costs, caches
                    call()
            samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in systems}
            for _ in range(args.blocks):
                for name, (call, pid) in systems.items():
                    samples[name].append(block(call, pid, args.round_trips))
    finally:
        worker.shutdown()
        watchdog.cancel()
    print(f"per round trip, median of {args.blocks} blocks of {args.round_trips} [range]:")
    for name, blocks in samples.items():
        columns = []
        for label, values in zip(("wall", "client CPU", "server CPU"), zip(*blocks)):
            columns.append(f"{label} {statistics.median(values) * 1e6:.0f} us "
                           f"[{min(values) * 1e6:.0f}-{max(values) * 1e6:.0f}]")
        print(f"  {name:12s} " + ", ".join(columns))


if __name__ == "__main__":
    main()

"""Cases 9 and 10: how fast a worker starts, and what a fleet of idle workers costs in memory.

Workers are started one after the other with ``sy.VirtualWorker(hook, id=...)``; each start is
timed until the worker has answered its first ``ping`` (a usable worker); the row is the median
of the 10 starts after the first (the first pays one-time costs in this process; a quick run
has fewer). The started workers then stay
up, idle, and their proportional set size (PSS, ``/proc/<pid>/smaps_rollup``, summed over each
worker's process tree and, once, the template process they were forked from) is added up: PSS
splits a shared page between the processes mapping it, so the sum counts every page once,
which RSS does not. It is read twice: just started, and
after one small command on each (what a used, now idle worker holds; case 7's "idle" is the
same). When fewer workers than the target fleet could be started (``--quick``, or too little
free memory), the fleet's total is extrapolated: the measured total plus, per missing worker,
the measured workers' mean *private* memory (shared pages are already counted once).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import torch

import syftzmq as sy
from _bench_common import (IDLE_USED, GiB, MiB, SYFT, WORKER_START, Config, Measurement, Results,
                           idle_pss_name, mem_available, proc_stat_fields, process_tree,
                           smaps_rollup)

MEMORY_RESERVE = 3 * GiB      # leave this much available to everyone else on the host
PER_WORKER_GUESS = 400 * MiB  # before starting one more worker, at least this must be free
START_SAMPLES = 10            # the spec's "median of 10, after the first"


def run(hook: Any, config: Config, cases: set[int], results: Results,
        spawn: Callable[[Any, list[str]], list[Any]],
        shutdown: Callable[[list[Any]], None]) -> None:
    workers: list[Any] = []
    try:
        starts = _start(hook, config, results, workers, spawn)
        if 9 in cases:
            timed = starts[1:1 + START_SAMPLES]
            note = (f"sy.VirtualWorker(hook, id=...) then worker.ping(); median of the "
                    f"{len(timed)} starts after the first (first took {starts[0]:.2f} s); "
                    f"earlier workers stay up, idle")
            if len(starts) > 1 + START_SAMPLES:
                note += (f"; all {len(starts) - 1} starts after the first: median "
                         f"{statistics.median(starts[1:]):.2f} s, last {starts[-1]:.2f} s")
            results.add(Measurement(9, WORKER_START, SYFT, timed, note=note))
        if 10 in cases:
            _memory(workers, config, results)
    finally:
        shutdown(workers)


def _start(hook: Any, config: Config, results: Results, workers: list[Any],
           spawn: Callable[[Any, list[str]], list[Any]]) -> list[float]:
    starts = []
    for index in range(config.start_workers):
        if mem_available() < MEMORY_RESERVE + PER_WORKER_GUESS:
            results.notice(10, SYFT, f"stopped starting workers after {index}: less than "
                                     f"{(MEMORY_RESERVE + PER_WORKER_GUESS) / GiB:.1f} GiB "
                                     f"available on this host")
            break
        began = time.perf_counter()
        worker = sy.VirtualWorker(hook, id=f"idle{index}")
        workers.append(worker)
        worker.ping()
        starts.append(time.perf_counter() - began)
    if len(starts) < 2:
        raise RuntimeError(f"only {len(starts)} worker(s) could be started")
    return starts


def _fleet_memory(workers: list[Any]) -> tuple[int, list[int]]:
    """(total PSS, each worker's private bytes) over every worker's process tree, plus the
    process the workers were forked from (a worker template), counted once: its pages are
    what the workers share, and it exists only for them."""
    total, private = 0, []
    templates = {_parent(worker.process.pid) for worker in workers} - {os.getpid(), None}
    for pid in templates:
        total += smaps_rollup(pid).get("Pss", 0)
    for worker in workers:
        mine = 0
        for pid in process_tree(worker.process.pid):
            rollup = smaps_rollup(pid)
            total += rollup.get("Pss", 0)
            mine += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        private.append(mine)
    return total, private


def _parent(pid: int) -> int | None:
    try:
        return int(proc_stat_fields(pid)[1])
    except (OSError, ValueError, IndexError):
        return None


def _memory(workers: list[Any], config: Config, results: Results) -> None:
    fleet, measured = config.idle_workers_target, len(workers)
    started_total, started_private = _fleet_memory(workers)
    for worker in workers:  # one small command each: imports and allocates what any use needs
        (torch.ones(4).send(worker) + 1).get()
    used_total, used_private = _fleet_memory(workers)
    for label, total, private in (("just started", started_total, started_private),
                                  (IDLE_USED, used_total, used_private)):
        note = (f"{label}; sum of Pss (smaps_rollup) over {measured} workers' process trees; "
                f"per worker {total / measured / MiB:.0f} MiB PSS, "
                f"{statistics.mean(private) / MiB:.0f} MiB private")
        results.add(Measurement(10, idle_pss_name(measured, label=label), SYFT,
                                [float(total)], unit="B", note=note))
        if measured < fleet:
            estimate = total + (fleet - measured) * statistics.mean(private)
            results.add(Measurement(10, idle_pss_name(fleet, True, label), SYFT,
                                    [float(estimate)], unit="B",
                                    note=f"{label}; measured total of {measured} workers + "
                                         f"{fleet - measured} x their mean private memory"))


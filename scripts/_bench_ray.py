"""The Ray peer: an actor holding the tensor, in its own phase, once per serialization mode.

Ray is optional: when it is not installed the phase says so and is skipped. Each mode runs in a
fresh Python process with its own Ray instance, because ``RAY_ENABLE_ZERO_COPY_TORCH_TENSORS``
is read when Ray's workers start: ``Ray`` is the default (torch tensors pickled, copied in and
out of the object store), ``Ray zero-copy`` sets it to 1 (tensors read in place from the
shared-memory object store). The helper writes its samples to a JSON file; this process turns
them into rows, then checks that no Ray process of this run is left (raylet, gcs_server, workers)
and kills any that is.

The actor methods are Ray's ordinary idiom for each case: ``ray.get(actor.m.remote(...))`` for a
round trip, fire-and-forget ``actor.m.remote()`` calls (an actor runs one caller's calls in
order) then one ``ray.get``, a tensor passed as an argument (push) or returned (fetch), and for a
move one actor's returned ``ObjectRef`` passed to another actor.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import torch

from _bench_common import (FULL, QUICK, RAY, RAY_ZERO_COPY, ROUND_TRIP, RUN_MARK_VAR, SCRIPTS_DIR,
                           Config, Measurement, MiB, Results, Watchdog, bulk_name, command_line,
                           exit_with_parent, kill_all, marked_processes, move_name, pipelined_name,
                           sample, spawn_helper, stop_helper, stopwatch, timings)

ZERO_COPY_VAR = "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"
PHASE_TIMEOUT_S = 300.0
EXIT_TIMEOUT_S = 30.0  # Ray's processes must be gone this long after ray.shutdown()
OBJECT_STORE_BYTES = 2 << 30  # a few 256 MiB objects live at once
RAY_PROCESS_WORDS = ("raylet", "gcs_server", "ray::", "/ray/", "default_worker", "dashboard")


# ---------------------------------------------------------------------------------------- driver
def run(config: Config, cases: set[int], results: Results, watchdog: Watchdog) -> None:
    """Cases 1-4 with Ray, once per mode (zero-copy only in a quick run); skipped with a notice
    when Ray is not installed."""
    wanted = sorted(cases & {1, 2, 3, 4})
    if not wanted:
        return
    if importlib.util.find_spec("ray") is None:
        results.notice(0, RAY, "ray is not installed (pip install ray): Ray phase skipped")
        return
    modes = [(RAY, False), (RAY_ZERO_COPY, True)]
    if config.quick:  # a Ray start and stop costs 5-10 s here; the targets use zero-copy mode
        modes = modes[1:]
        results.notice(0, RAY, "quick run: only zero-copy mode (the one case 4's target uses); "
                               "the full run measures both")
    for system, zero_copy in modes:
        started = time.perf_counter()
        try:
            rows = _run_mode(config, wanted, zero_copy, watchdog)
            for row in rows:
                results.add(Measurement(system=system, **row))
        except Exception as exc:
            results.notice(0, system, f"failed: {type(exc).__name__}: {exc}")
        finally:
            _reap(system, results)
        print(f"  [{system}] {time.perf_counter() - started:.1f} s", flush=True)


def _run_mode(config: Config, cases: list[int], zero_copy: bool, watchdog: Watchdog) -> list[dict]:
    handle, path = tempfile.mkstemp(prefix="bench-ray-", suffix=".json")
    os.close(handle)
    try:
        path_var = os.pathsep.join(p for p in (SCRIPTS_DIR, os.environ.get("PYTHONPATH")) if p)
        env = {ZERO_COPY_VAR: "1" if zero_copy else "0", "PYTHONPATH": path_var,
               "RAY_USAGE_STATS_ENABLED": "0"}
        popen = spawn_helper("_bench_ray", "measure", "quick" if config.quick else "full",
                             ",".join(map(str, cases)), path, watchdog=watchdog,
                             ready_line=False, env=env)
        try:
            code = popen.wait(PHASE_TIMEOUT_S)
        finally:
            stop_helper(popen, watchdog)
        with open(path) as handle_:
            document = json.load(handle_)
        if code != 0 or "error" in document:
            raise RuntimeError(document.get("error", f"Ray helper exited with code {code}"))
        return document["rows"]
    finally:
        os.unlink(path)


def _reap(system: str, results: Results) -> None:
    """Wait for this run's Ray processes to exit after ray.shutdown(); kill and report any left."""
    mark = os.environ.get(RUN_MARK_VAR)
    if not mark:
        return
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while True:
        left = [pid for pid in marked_processes(mark)
                if any(word in command_line(pid) for word in RAY_PROCESS_WORDS)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling /proc for other processes' exit: there is no event to wait on
    if left:
        names = sorted({command_line(pid)[:40] for pid in left})
        results.notice(0, system, f"{len(left)} Ray process(es) still running "
                                  f"{EXIT_TIMEOUT_S:.0f} s after ray.shutdown(), killed: {names}")
        kill_all(left)


# ---------------------------------------------------------------------------------------- helper
def measure(mode: str, cases_csv: str, out_path: str) -> None:
    """Entry point of the helper process: start Ray, run the cases, write rows, stop Ray."""
    exit_with_parent()
    config = QUICK if mode == "quick" else FULL
    cases = {int(c) for c in cases_csv.split(",")}
    began = time.perf_counter()
    try:
        import ray
        # zero-copy mode warns that tensors must not be modified in place (none are here), and
        # torch that a tensor over read-only store memory is not writable: both expected
        warnings.filterwarnings("ignore", message="Zero-copy tensor serialization")
        warnings.filterwarnings("ignore", message=".*non-writable.*")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING", object_store_memory=OBJECT_STORE_BYTES)
        initialized = time.perf_counter()
        try:
            rows = _cases(ray, config, cases)
        finally:
            measured = time.perf_counter()
            ray.shutdown()
            print(f"    ray: import + init {initialized - began:.1f} s, cases "
                  f"{measured - initialized:.1f} s, shutdown {time.perf_counter() - measured:.1f} s",
                  flush=True)
        document: dict[str, Any] = {"rows": rows}
    except Exception as exc:
        document = {"error": f"{type(exc).__name__}: {exc}"}
    with open(out_path, "w") as handle:
        json.dump(document, handle)
    sys.stdout.flush()
    os._exit(0)  # Ray's threads are stopped; nothing else needs a clean interpreter exit


class Holder:
    """The actor: one small tensor for the round trip and counter, one bulk tensor."""

    def __init__(self) -> None:
        self.small = torch.ones(4)
        self.big: torch.Tensor | None = None

    def ready(self) -> bool:
        return True

    def add_self(self) -> torch.Tensor:
        return self.small + self.small

    def add_one(self) -> None:
        self.small = self.small + 1

    def value(self) -> torch.Tensor:
        return self.small

    def store(self, tensor: torch.Tensor) -> None:
        self.big = tensor

    def fetch(self) -> torch.Tensor:
        return self.big

    def drop(self) -> None:
        self.big = None


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"Ray: wrong result: {what}")


def _row(case: int, name: str, samples: list[float], note: str = "", **extra: Any) -> dict:
    return {"case": case, "name": name, "samples": list(samples), "note": note, **extra}


def _cases(ray: Any, config: Config, cases: set[int]) -> list[dict]:
    actor_class = ray.remote(Holder)
    a, b = actor_class.remote(), actor_class.remote()
    ray.get([a.ready.remote(), b.ready.remote()])
    rows = []
    if 1 in cases:
        _check(torch.equal(ray.get(a.add_self.remote()), torch.full((4,), 2.0)), "add_self")
        rows.append(_row(1, ROUND_TRIP, timings(lambda: ray.get(a.add_self.remote()),
                                                config.reps_small),
                         "ray.get(actor.add_self.remote())"))
    if 2 in cases:
        ops = config.pipelined_ops

        def burst() -> torch.Tensor:
            for _ in range(ops):
                a.add_one.remote()
            return ray.get(a.value.remote())

        _check(torch.equal(burst(), torch.full((4,), 1.0 + ops)), "pipelined sum")
        rows.append(_row(2, pipelined_name(ops), timings(burst, config.reps_pipelined),
                         "actor.add_one.remote() x ops (state += 1), then ray.get(value)",
                         work=ops, work_unit="ops"))
    if 3 in cases:
        for mib in config.bulk_mib:
            rows += _bulk(ray, a, mib, config.reps_bulk)
    if 4 in cases:
        rows.append(_move(ray, a, b, config.move_mib, config.reps_bulk))
    return rows


def _bulk(ray: Any, actor: Any, mib: int, reps: int) -> list[dict]:
    tensor = torch.rand(mib * MiB // 4)
    ray.get(actor.store.remote(tensor))
    _check(torch.equal(ray.get(actor.fetch.remote()), tensor), f"{mib} MiB")

    def round_once() -> tuple[float, float]:
        send = stopwatch(lambda: ray.get(actor.store.remote(tensor)))
        get = stopwatch(lambda: ray.get(actor.fetch.remote()))
        return send, get

    send, get = zip(*sample(round_once, reps))
    ray.get(actor.drop.remote())
    return [_row(3, bulk_name("send", mib), send, "ray.get(actor.store.remote(t))",
                 work=mib * MiB, work_unit="B"),
            _row(3, bulk_name("get", mib), get, "ray.get(actor.fetch.remote())",
                 work=mib * MiB, work_unit="B")]


def _move(ray: Any, source: Any, dest: Any, mib: int, reps: int) -> dict:
    """A's returned ObjectRef handed to B, timed until B has stored the tensor."""
    tensor = torch.rand(mib * MiB // 4)
    ray.get(source.store.remote(tensor))
    ray.get(dest.store.remote(source.fetch.remote()))
    _check(torch.equal(ray.get(dest.fetch.remote()), tensor), "moved data")

    def move_once() -> float:
        ray.get(dest.drop.remote())
        return stopwatch(lambda: ray.get(dest.store.remote(source.fetch.remote())))

    times = sample(move_once, reps)
    ray.get([source.drop.remote(), dest.drop.remote()])
    return _row(4, move_name(mib), times,
                "ray.get(B.store.remote(A.fetch.remote())): A's result object handed to B",
                work=mib * MiB, work_unit="B")


if __name__ == "__main__":
    sys.exit("run scripts/bench.py; this module is its Ray helper")

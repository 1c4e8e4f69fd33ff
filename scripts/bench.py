"""The benchmark: syftzmq against a lean-Python floor, raw pyzmq, torch.distributed.rpc, Ray
and memcpy, on one machine.

    python scripts/bench.py [--quick] [--json PATH] [--plot out.png] [--cases 1,3,7]

Cases: 1 round trip, 2 pipelined operations, 3 bulk send/get, 4 worker-to-worker move, 5 pointer
chains, 6 federated averaging, 7 worker memory, 8 PySyft tutorial Part 6's training epoch,
9 worker start, 10 memory of a fleet of idle workers. Each system runs in its own phase (floors,
then lean Python, torch.rpc, Ray, then syftzmq) so that no system's processes compete with
another's measurements; every process a phase starts is stopped before the next phase begins.
Ray is optional: without it its phase is skipped and the report says so. The table shows
medians and p90s, the ratio syftzmq/peer, and the targets with PASS/MISS.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the _bench_* helpers
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

import torch  # noqa: E402

import _bench_report as report  # noqa: E402
from _bench_common import (FULL, LEAN, MEMCPY, QUICK, RAW_ZMQ, RAY, RUN_MARK_VAR,  # noqa: E402
                           SYFT, TORCH, Config, Measurement, MiB, Results, Watchdog, bulk_name,
                           cpu_count, kill_all, marked_processes, one_thread, timings)

ALL_CASES = frozenset(range(1, 11))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and smaller sizes; finishes in under a minute")
    parser.add_argument("--json", metavar="PATH", help="write every sample and verdict here")
    parser.add_argument("--plot", metavar="PNG", help="draw the table as a chart (matplotlib)")
    parser.add_argument("--cases", default=",".join(map(str, sorted(ALL_CASES))), type=_case_set,
                        help="comma-separated case numbers to run (default: all)")
    parser.add_argument("--start-workers", type=int, metavar="N",
                        help="cases 9-10: start this many workers (default: 4 quick, 64 full)")
    return parser.parse_args(argv)


def _case_set(text: str) -> frozenset[int]:
    cases = frozenset(int(part) for part in text.split(",") if part.strip())
    if not cases <= ALL_CASES:
        raise argparse.ArgumentTypeError(f"cases are 1-{max(ALL_CASES)}, "
                                         f"got {sorted(cases - ALL_CASES)}")
    return cases


def memcpy_floor(config: Config, cases: frozenset[int], results: Results) -> None:
    """The floor for bulk bytes: a copy into memory that is already mapped and touched.

    ``destination.copy_(source)`` on one thread, into a tensor allocated and written once before
    the samples: a copy into fresh pages would mostly measure the kernel's page faults (about
    110 ms instead of 12 ms for 256 MiB on a quiet machine here), which a transport that keeps
    its buffers mapped does not pay.
    """
    if 3 not in cases:
        return
    for mib in config.bulk_mib:
        source = torch.rand(mib * MiB // 4)
        destination = torch.zeros_like(source)  # zeros_like writes every page: mapped, touched
        with one_thread():
            samples = timings(lambda: destination.copy_(source), config.reps_memcpy)
        for direction in ("send", "get"):
            results.add(Measurement(3, bulk_name(direction, mib), MEMCPY, samples,
                                    work=mib * MiB, work_unit="B",
                                    note="destination.copy_(source) into touched pages, "
                                         "one thread"))


def run_phases(config: Config, cases: frozenset[int], results: Results, watchdog: Watchdog) -> None:
    """One phase per system; a phase that fails is reported and the others still run."""
    # syftzmq reads its deadline when imported. Its 5 s default suits interactive use; a
    # 10,000-command backlog or a 256 MiB transfer on a loaded two-core machine can come close.
    os.environ.setdefault("SYFTZMQ_TIMEOUT", str(config.syftzmq_timeout_s))
    import _bench_lean
    import _bench_ray
    import _bench_syft
    import _bench_torch_rpc
    import _bench_zmq
    selected = set(cases)
    phases = [(MEMCPY, lambda: memcpy_floor(config, cases, results)),
              (RAW_ZMQ, lambda: _bench_zmq.run(config, selected, results, watchdog)),
              (LEAN, lambda: _bench_lean.run(config, selected, results, watchdog)),
              (TORCH, lambda: _bench_torch_rpc.run(config, selected, results, watchdog)),
              (RAY, lambda: _bench_ray.run(config, selected, results, watchdog)),
              (SYFT, lambda: _bench_syft.run(config, selected, results, watchdog))]
    for name, phase in phases:
        started = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        try:
            phase()
        except Exception as exc:
            results.notice(0, name, f"phase failed: {type(exc).__name__}: {exc}")
        print(f"[{name}] done in {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.start_workers is not None:
        if args.start_workers < 2:
            raise SystemExit("--start-workers must be at least 2 (the first start is not timed)")
        config = dataclasses.replace(config, start_workers=args.start_workers)
    mark = os.environ[RUN_MARK_VAR] = uuid.uuid4().hex
    watchdog = Watchdog(config.deadline_s)
    started = time.perf_counter()
    results = Results()
    try:
        run_phases(config, args.cases, results, watchdog)
    finally:
        watchdog.cancel()
    elapsed = time.perf_counter() - started
    leftovers = marked_processes(mark)
    if leftovers:  # every phase stops what it started; if one did not, say so and clean up
        results.notice(0, "bench", f"processes left running after their phase: {leftovers}; killed")
        kill_all(leftovers)
    report.derive(results, config)
    verdicts = report.judge(results, config)
    mode = "quick" if config.quick else "full"
    print(f"\nsyftzmq benchmark ({mode} run, {elapsed:.1f} s, "
          f"{cpu_count()} cores, torch {torch.__version__})")
    print(report.describe_sizes(config) + "\n")
    print(report.render_table(report.table_rows(results, verdicts)))
    print()
    print("syftzmq/peer: syftzmq's median over the row's median (times: below 1 means syftzmq "
          "is faster); on a syftzmq Plan row, the Plan's median over local sequential")
    print(report.summary(verdicts))
    missing = report.unjudged(results, config)
    if missing:
        print(f"not judged ({len(missing)}, a row is missing): " + "; ".join(missing))
    print(report.render_notes(results))
    if args.json:
        report.write_json(args.json, config, results, verdicts, elapsed)
        print(f"results written to {args.json}")
    if args.plot:
        print(report.plot(args.plot, results, verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

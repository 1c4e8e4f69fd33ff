"""What CURVE costs on one host: the benchmark's round trip and bulk cases, with and without.

    python scripts/measure_curve.py [--rounds 2000]

Starts one worker twice (plain, then with ``--curve-dir``), on loopback, and prints medians. The
decision it informs — whether CURVE should be the default on loopback too — is in SECURITY.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import syftzmq as sy  # noqa: E402
from syftzmq.client.launcher import spawn_worker  # noqa: E402
from syftzmq.security.curve import create_curve_dir  # noqa: E402


def measure(worker: sy.Worker, rounds: int) -> dict[str, float]:
    p = torch.ones(4).send(worker)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        (p + p).get()
        times.append(time.perf_counter() - start)
    bulk = torch.ones(64 << 20 >> 2)  # 64 MiB
    sends, gets = [], []
    for _ in range(5):
        start = time.perf_counter()
        q = bulk.send(worker)
        worker.object_count()  # the send has landed
        sends.append(time.perf_counter() - start)
        start = time.perf_counter()
        q.get()
        gets.append(time.perf_counter() - start)
    return {"round trip (us)": statistics.median(times) * 1e6,
            "send 64 MiB (ms)": statistics.median(sends) * 1e3,
            "get 64 MiB (ms)": statistics.median(gets) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    hook = sy.TorchHook(torch)
    key_file = sy.default_session().cluster_key_file()
    curve_dir = os.path.join(tempfile.mkdtemp(prefix="syftzmq-curve-"), "curve")
    create_curve_dir(curve_dir)
    results = {}
    for label, extra, client_curve in (("plain", [], None),
                                       ("CURVE", ["--curve-dir", curve_dir], curve_dir)):
        process = spawn_worker(f"curve_{label.lower()}", key_file=key_file, extra_args=extra)
        try:
            worker = sy.Worker(hook, id=f"curve_{label.lower()}", address=process.endpoint,
                               key_file=key_file, curve_dir=client_curve)
            results[label] = measure(worker, args.rounds)
            worker.shutdown()
        finally:
            process.stop()
    for name in results["plain"]:
        plain, curve = results["plain"][name], results["CURVE"][name]
        print(f"{name:20s} plain {plain:9.1f}   CURVE {curve:9.1f}   {curve / plain:5.2f}x")


if __name__ == "__main__":
    main()

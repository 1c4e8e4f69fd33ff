"""Start every worker of a cluster file, each as its own process, and stop them on Ctrl-C.

    python scripts/spawn_workers.py workers/local.toml

Waits until each worker answers a ping, prints its id and endpoint, then serves until SIGINT or
SIGTERM, and stops all workers before exiting: no process is left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, too

from syftzmq.client.handles import default_session  # noqa: E402
from syftzmq.client.cluster_file import load_cluster  # noqa: E402
from syftzmq.security.keys import read_key, write_key_file  # noqa: E402
from syftzmq.client.launcher import WorkerProcess, spawn_worker  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cluster_file")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default $SYFTZMQ_WORKER_THREADS, else 1: "
                             "the workers share this host's cores)")
    args = parser.parse_args(argv)
    spec = load_cluster(args.cluster_file)
    if spec.key_file is not None and not spec.key_file.exists():
        write_key_file(spec.key_file)
        print(f"created key file {spec.key_file} (mode 0600)", flush=True)
    key = read_key(spec.key_file) if spec.key_file else None
    curve = None
    if spec.curve_dir is not None:
        from syftzmq.security.curve import CurveClient, create_curve_dir
        if not (spec.curve_dir / "server.key_secret").exists():
            create_curve_dir(spec.curve_dir)
            print(f"created CURVE keys in {spec.curve_dir} (secret files mode 0600)", flush=True)
        curve = CurveClient(spec.curve_dir)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    processes: list[WorkerProcess] = []
    try:
        for worker in spec.workers:
            process = spawn_worker(worker.id, bind=worker.bind, advertise=worker.address,
                                   key_file=str(spec.key_file) if spec.key_file else None,
                                   log_level=args.log_level, extra_args=worker.options(spec),
                                   threads=args.threads)
            processes.append(process)
        session = default_session()
        for process in processes:
            session.connect(process.endpoint, key, expected_id=process.id, curve=curve)  # a ping
            print(f"worker {process.id} ready at {process.endpoint} (pid {process.pid})", flush=True)
        print(f"all {len(processes)} workers ready; Ctrl-C stops them", flush=True)
        while not stop.wait(0.5):
            dead = [p.id for p in processes if not p.alive()]
            if dead:
                print(f"worker(s) {', '.join(dead)} exited; stopping the cluster", flush=True)
                return 1
        return 0
    finally:
        for process in processes:
            process.stop()
        print("all workers stopped", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

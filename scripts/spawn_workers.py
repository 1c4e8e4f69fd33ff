"""Start every worker of a cluster file and keep them running until Ctrl-C.

    python scripts/spawn_workers.py workers/local.toml

The same as ``syftzmq cluster up workers/local.toml`` (see syftzmq.deploy): waits until each
worker answers a ping, prints its id and address, restarts a worker that dies (same address,
new incarnation) while the others keep running, and on SIGINT or SIGTERM stops them all: no
process is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, too

from syftzmq.deploy.cli import main as syftzmq_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cluster_file")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default $SYFTZMQ_WORKER_THREADS, else 1: "
                             "the workers share this host's cores)")
    args = parser.parse_args(argv)
    up = ["cluster", "up", args.cluster_file, "--log-level", args.log_level]
    if args.threads is not None:
        up += ["--threads", str(args.threads)]
    return syftzmq_main(up)


if __name__ == "__main__":
    raise SystemExit(main())

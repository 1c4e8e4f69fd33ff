"""Command line of a worker process.

On start-up the worker prints one line, ``SYFTZMQ-READY {json}``, to stdout: launchers read the
bound endpoint, the incarnation and the liveness endpoint from it (binding
``tcp://127.0.0.1:*`` picks a free port).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..core.messages import READY_PREFIX
from ..security.curve import CurveServer
from ..security.keys import read_key
from ..settings import SETTINGS
from ..wire import shm
from ..wire.envelope import MAX_MESSAGE_BYTES
from .advertise import WILDCARD_HOSTS, primary_address
from .server import WorkerServer

def parse_args(argv: list[str] | None = None, prog: str = "syftzmq-worker") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Run a syftzmq worker.")
    parser.add_argument("--id", required=True, help="the worker's id, e.g. bob")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*",
                        help="ZMQ endpoint to bind (default: a free loopback port)")
    parser.add_argument("--advertise", default=None,
                        help="address other processes should use to reach this worker "
                             "(default: the bound endpoint; bound to a wildcard such as "
                             "0.0.0.0, this host's primary address)")
    parser.add_argument("--key-file", default=SETTINGS.key_file,
                        help="file holding the cluster key (or env SYFTZMQ_KEY_FILE)")
    parser.add_argument("--parent-fd", type=int, default=None,
                        help="exit when this inherited pipe reaches end-of-file (parent died)")
    parser.add_argument("--log-level", default=SETTINGS.log_level)
    parser.add_argument("--safe", action="store_true",
                        help="accept only data and named torch operations; never unpickle code")
    parser.add_argument("--lease-seconds", type=float,
                        default=SETTINGS.lease_seconds,
                        help="free the objects of an owner not heard from for this long "
                             f"(default {SETTINGS.lease_seconds:g}, or env SYFTZMQ_LEASE_SECONDS)")
    parser.add_argument("--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES,
                        help="drop messages larger than this")
    parser.add_argument("--curve-dir", default=SETTINGS.curve_dir,
                        help="encrypt with CURVE and admit only the public keys in "
                             "DIR/authorized (see syftzmq.security.curve)")
    parser.add_argument("--threads", type=int, default=SETTINGS.worker_threads,
                        help="torch intra-op threads (torch.set_num_threads); default: env "
                             "SYFTZMQ_WORKER_THREADS, else torch's own default (one per core)")
    parser.add_argument("--liveness-bind", default=None,
                        help="endpoint of the liveness socket, which a thread of its own answers "
                             "while the worker computes (default: the --bind interface, a free "
                             "port; for ipc://PATH, ipc://PATH.live)")
    parser.add_argument("--liveness-advertise", default=None,
                        help="address others should probe the liveness socket at (default: the "
                             "--advertise host with the liveness socket's port)")
    parser.add_argument("--liveness-timeout", type=float, default=SETTINGS.liveness_timeout,
                        help="report a peer this worker waits for as dead after this many "
                             "seconds without a liveness answer (default "
                             f"{SETTINGS.liveness_timeout:g}, or env SYFTZMQ_LIVENESS_TIMEOUT)")
    parser.add_argument("--shm-dir", default=None,
                        help="the shared-memory directory for same-host bulk transfers "
                             "(default: env SYFTZMQ_SHM_DIR, else /dev/shm); only processes "
                             "that see the same one use it with each other")
    return parser.parse_args(argv)


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count. Several workers on one host each running one thread
    per core oversubscribe the CPU: small ops then spend their time in thread hand-offs."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        import torch
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None, prog: str = "syftzmq-worker") -> int:
    args = parse_args(argv, prog)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    try:
        apply_threads(args.threads)
    except ValueError as exc:
        print(f"syftzmq-worker: {exc}", file=sys.stderr)
        return 2
    if args.shm_dir:
        shm.DIRECTORY = args.shm_dir
    if args.advertise is None and args.bind.startswith("tcp://") and \
            args.bind[len("tcp://"):].rpartition(":")[0] in WILDCARD_HOSTS and primary_address() is None:
        print(f"syftzmq-worker: refusing to advertise {args.bind}: nobody can connect to a "
              f"wildcard address, and this host has no routable address to advertise instead; "
              f"pass --advertise tcp://HOST:PORT (the address other hosts reach this one at)",
              file=sys.stderr)
        return 2
    key = read_key(args.key_file) if args.key_file else None
    curve = None
    if args.curve_dir:
        curve = CurveServer(args.curve_dir)
    try:
        server = WorkerServer(args.id, args.bind, key=key, advertise=args.advertise,
                              parent_fd=args.parent_fd, safe=args.safe,
                              lease_seconds=args.lease_seconds,
                              max_message_bytes=args.max_message_bytes, curve=curve,
                              liveness_bind_to=args.liveness_bind,
                              liveness_advertise=args.liveness_advertise,
                              liveness_timeout=args.liveness_timeout)
    except PermissionError as exc:
        print(f"syftzmq-worker: {exc}", file=sys.stderr)
        return 2
    server.install_signal_handlers()
    ready = READY_PREFIX + json.dumps({"id": server.ref.id, "endpoint": server.ref.address,
                                       "incarnation": server.ref.incarnation, "pid": os.getpid(),
                                       "liveness": server.ref.liveness})
    try:
        os.write(sys.stdout.fileno(), (ready + "\n").encode())  # one write: the line arrives whole
    except BrokenPipeError:  # nobody is reading; the worker serves all the same
        pass
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # later prints must not fill the ready pipe
    server.serve_forever()
    return 0

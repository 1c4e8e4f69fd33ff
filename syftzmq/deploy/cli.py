"""The ``syftzmq`` command: run a worker, make keys, bring a cluster up, show it, take it down.

Exit codes: 0 done; 1 the operation failed (a worker did not start or does not answer, a
worker did not stop, every worker was given up); 2 usage or cluster-file error; 3 refused
because something is already there (keys exist, the cluster is already up).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OK, FAILED, USAGE, EXISTS = 0, 1, 2, 3

_EPILOG = """exit codes: 0 done, 1 failed (a worker did not start, answer or stop), 2 usage or
cluster-file error, 3 refused (keys exist, cluster already up)"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog="syftzmq", epilog=_EPILOG,
        description="PySyft's pointer API on real worker processes: workers, keys, clusters.")
    parser.add_argument("--version", action="version", version=f"syftzmq {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("worker", add_help=False,
                        help="run one worker (the options of syftzmq-worker; see "
                             "`syftzmq worker --help`)")

    keygen = commands.add_parser(
        "keygen", epilog=_EPILOG, help="create the cluster key and the CURVE directory",
        description="Create DIR/cluster.key (mode 0600) and DIR/curve/ (the workers' and the "
                    "clients' CURVE key pairs, and the authorized public keys), then say which "
                    "file goes to which host. No openssl needed.")
    keygen.add_argument("directory", metavar="DIR")
    keygen.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also make a key pair for client NAME (repeatable; 'client' is "
                             "always made: the operator's)")
    keygen.add_argument("--force", action="store_true",
                        help="replace existing keys (holders of the old ones are locked out)")

    cluster = commands.add_parser("cluster", help="bring a cluster file's workers up, show "
                                                  "them, take them down")
    actions = cluster.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    up = actions.add_parser(
        "up", epilog=_EPILOG, help="start every worker and supervise them (foreground)",
        description="Start every worker of FILE — on this host, or over SSH on the host its "
                    "entry names — wait until each answers a ping, then restart any that dies "
                    "(same address, new incarnation; back-off, restart limit). Ctrl-C or "
                    "SIGTERM stops them all and leaves nothing behind on any host.")
    up.add_argument("file", metavar="FILE")
    up.add_argument("--log-level", default="INFO", help="the workers' log level (default INFO)")
    up.add_argument("--threads", type=int, default=None,
                    help="torch threads per worker where the file says none (local default: "
                         "$SYFTZMQ_WORKER_THREADS, else 1)")
    up.add_argument("--start-timeout", type=float, default=120.0,
                    help="seconds a worker may take to start (default 120)")
    up.add_argument("--max-restarts", type=int, default=5,
                    help="restarts of one worker allowed within --restart-window (default 5)")
    up.add_argument("--restart-window", type=float, default=60.0,
                    help="seconds (default 60)")

    status = actions.add_parser("status", epilog=_EPILOG,
                                help="one row per worker: pid, uptime, objects, memory, ...",
                                description="Ask every worker of FILE (a ping) and print one row "
                                            "each. Exit code 1 if any does not answer.")
    status.add_argument("file", metavar="FILE")
    status.add_argument("--json", action="store_true", help="print JSON records instead")
    status.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for each worker (default 3)")

    down = actions.add_parser("down", epilog=_EPILOG, help="stop every worker",
                              description="Stop the `cluster up` supervising FILE (it stops its "
                                          "workers on every host), then ask any worker of FILE "
                                          "that still answers to shut down.")
    down.add_argument("file", metavar="FILE")
    down.add_argument("--timeout", type=float, default=3.0,
                      help="seconds to wait for each worker (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        from ..worker.cli import main as worker_main
        return worker_main(argv[1:], prog="syftzmq worker")
    args = build_parser().parse_args(argv)
    if args.command == "keygen":
        return _keygen(args)
    try:
        from .spec import load_deployment
        deployment = load_deployment(args.file)
    except (OSError, ValueError) as exc:
        print(f"syftzmq cluster {args.action}: {exc}", file=sys.stderr)
        return USAGE
    return {"up": _up, "status": _status, "down": _down}[args.action](deployment, args)


def _keygen(args: argparse.Namespace) -> int:
    from .keygen import KeysExist, make_keys, placement_guide
    try:
        keys = make_keys(args.directory, ("client", *[c for c in args.client if c != "client"]),
                         force=args.force)
    except KeysExist as exc:
        print(f"syftzmq keygen: {exc}", file=sys.stderr)
        return EXISTS
    except OSError as exc:
        print(f"syftzmq keygen: cannot write keys in {args.directory}: {exc}", file=sys.stderr)
        return FAILED
    print(placement_guide(keys, args.directory))
    return OK


def _up(deployment, args: argparse.Namespace) -> int:
    from .supervisor import ClusterAlreadyUp, RestartPolicy, StopSignal, Supervisor
    if deployment.remote and deployment.cluster.key_file is None:
        print(f"syftzmq cluster up: {deployment.path} starts workers on other hosts but names "
              f"no key_file; run `syftzmq keygen DIR` and set key_file (and curve_dir)",
              file=sys.stderr)
        return USAGE
    _ensure_keys(deployment)
    stop = StopSignal()
    stop.install()
    supervisor = Supervisor(deployment, log_level=args.log_level, threads=args.threads,
                            policy=RestartPolicy(args.max_restarts, args.restart_window),
                            start_timeout=args.start_timeout)
    try:
        return supervisor.run(stop)
    except ClusterAlreadyUp as exc:
        print(f"syftzmq cluster up: {exc}", file=sys.stderr)
        return EXISTS


def _ensure_keys(deployment) -> None:
    """Keys the file names but that do not exist yet are made here (as spawn_workers did)."""
    from ..security.keys import write_key_file
    spec = deployment.cluster
    if spec.key_file is not None and not spec.key_file.exists():
        write_key_file(spec.key_file)
        print(f"created key file {spec.key_file} (mode 0600)", flush=True)
    if spec.curve_dir is not None and not (Path(spec.curve_dir) / "server.key_secret").exists():
        from ..security.curve import create_curve_dir
        create_curve_dir(spec.curve_dir)
        print(f"created CURVE keys in {spec.curve_dir} (secret files mode 0600)", flush=True)


def _status(deployment, args: argparse.Namespace) -> int:
    from .status import format_table, gather
    rows = gather(deployment, args.timeout)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        print(format_table(rows))
    return OK if all(row["answered"] for row in rows) else FAILED


def _down(deployment, args: argparse.Namespace) -> int:
    from .status import stop_cluster
    return OK if stop_cluster(deployment, args.timeout, say=lambda t: print(t, flush=True)) \
        else FAILED


if __name__ == "__main__":
    raise SystemExit(main())

"""Cluster files (``workers/*.toml``): which workers exist, where they bind, which key they use.

    key_file = "local.key"            # relative to this file; created 0600 if missing
    curve_dir = "curve"               # optional: CURVE keys (see syftzmq.security.curve); created if missing
    safe = true                       # optional: every worker refuses code (see SECURITY.md)
    lease_seconds = 120               # optional: free a silent owner's objects after this long
    [workers.bob]
    bind = "tcp://127.0.0.1:5555"
    address = "tcp://127.0.0.1:5555" # optional: how clients reach it (defaults to bind)
    safe = false                      # optional: per worker, overrides the cluster's setting
    host = "user@10.0.0.5"            # optional: `syftzmq cluster up` starts it there over SSH;
                                      # a wildcard bind (tcp://*:5555) is then reached at that host
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .handles import Worker

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class WorkerSpec:
    id: str
    bind: str
    address: str
    safe: bool = False
    host: str | None = None  # where ``syftzmq cluster up`` starts it over SSH; None: this host

    def options(self, cluster: "ClusterSpec") -> list[str]:
        """Command-line options of ``syftzmq-worker`` for this worker."""
        options = ["--safe"] if self.safe else []
        if cluster.curve_dir is not None:
            options += ["--curve-dir", str(cluster.curve_dir)]
        if cluster.lease_seconds is not None:
            options += ["--lease-seconds", str(cluster.lease_seconds)]
        return options


@dataclass(frozen=True)
class ClusterSpec:
    workers: tuple[WorkerSpec, ...]
    key_file: Path | None
    curve_dir: Path | None = None
    lease_seconds: float | None = None


def load_cluster(path: str | os.PathLike) -> ClusterSpec:
    """Parse a cluster file; errors name the file and the offending entry."""
    path = Path(path)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    entries = data.get("workers")
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{path}: no [workers.<id>] tables")
    workers = []
    for worker_id, entry in entries.items():
        if not isinstance(entry, dict) or "bind" not in entry:
            raise ValueError(f"{path}: [workers.{worker_id}] needs a 'bind' endpoint")
        safe = entry.get("safe", data.get("safe", False))
        if not isinstance(safe, bool):
            raise ValueError(f"{path}: [workers.{worker_id}] safe must be true or false")
        host = entry.get("host")
        if host is not None and not (isinstance(host, str) and host.strip()):
            raise ValueError(f"{path}: [workers.{worker_id}] host must be a non-empty string")
        address = entry.get("address") or _address_on(entry["bind"], host)
        workers.append(WorkerSpec(worker_id, entry["bind"], address, safe, host))
    key_file, curve_dir = data.get("key_file"), data.get("curve_dir")
    lease = data.get("lease_seconds")
    if lease is not None and not (isinstance(lease, (int, float)) and lease > 0):
        raise ValueError(f"{path}: lease_seconds must be a positive number")
    return ClusterSpec(tuple(workers), (path.parent / key_file) if key_file else None,
                       (path.parent / curve_dir) if curve_dir else None, lease)


def _address_on(bind: str, host: str | None) -> str:
    """How clients reach a worker bound to ``bind`` on ``host``: a wildcard bind on a remote
    host is reached at that host's address (``user@10.0.0.5`` -> ``10.0.0.5``)."""
    scheme, _, rest = bind.partition("://")
    where, _, port = rest.rpartition(":")
    if host is None or scheme != "tcp" or where not in ("*", "0.0.0.0", "[::]"):
        return bind
    return f"tcp://{host.rpartition('@')[2]}:{port}"


def cluster(path: str | os.PathLike, hook: object = None, timeout: float | None = None) -> dict:
    """Connect to the running cluster described by ``path``; returns its workers by id."""
    spec = load_cluster(path)
    key_file = spec.key_file if spec.key_file and spec.key_file.exists() else None
    return {w.id: Worker(hook, w.id, w.address, key_file=key_file, timeout=timeout,
                         curve_dir=spec.curve_dir) for w in spec.workers}

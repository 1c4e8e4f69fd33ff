"""A cluster file read for deployment: where each worker runs and how it is started there.

The client-side parser (:func:`syftzmq.client.cluster_file.load_cluster`) knows ids, binds, addresses, keys
and each worker's ``host``. Starting workers needs a little more, read here from the same file::

    ssh_options = ["-F", "ssh_config"]   # optional: extra ssh(1) options, before ours
    python = "/opt/venv/bin/python"      # optional: the interpreter on remote hosts (python3)
    threads = 2                          # optional: torch threads per worker
    [env]                                # optional: environment of every worker
    OMP_NUM_THREADS = "1"
    [workers.bob]
    bind = "tcp://*:5555"
    host = "user@10.0.0.5"               # started there over SSH
    python = "/home/user/venv/bin/python"
    workdir = "/home/user/syftzmq"       # the worker's working directory (and key copies)
    env = { PYTHONPATH = "/home/user/src" }
    threads = 4

``python``, ``workdir``, ``env`` and ``threads`` may appear at the top (for every worker) or per
worker (which wins). Relative ``ssh_options`` values are not resolved: ssh sees them as written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..client.cluster_file import ClusterSpec, WorkerSpec, load_cluster

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_REMOTE_PYTHON = "python3"


@dataclass(frozen=True)
class Placement:
    """Where and how one worker runs: on this host (``host`` None) or over SSH."""

    worker: WorkerSpec
    python: str
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None

    @property
    def host(self) -> str | None:
        return self.worker.host

    @property
    def where(self) -> str:
        """For messages: the host, or "local"."""
        return self.worker.host or "local"


@dataclass(frozen=True)
class Deployment:
    path: Path
    cluster: ClusterSpec
    placements: tuple[Placement, ...]
    ssh_options: tuple[str, ...] = ()

    @property
    def remote(self) -> bool:
        return any(p.host for p in self.placements)


def load_deployment(path: str | os.PathLike) -> Deployment:
    """Parse a cluster file for ``syftzmq cluster up``; errors name the file and the entry."""
    path = Path(path)
    spec = load_cluster(path)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    ssh_options = data.get("ssh_options", [])
    if not (isinstance(ssh_options, list) and all(isinstance(o, str) for o in ssh_options)):
        raise ValueError(f"{path}: ssh_options must be a list of strings")
    placements = []
    for worker in spec.workers:
        entry = data["workers"][worker.id]
        where = f"{path}: [workers.{worker.id}]"
        python = _string(entry, data, "python", where)
        if python is None:
            python = DEFAULT_REMOTE_PYTHON if worker.host else sys.executable
        workdir = _string(entry, data, "workdir", where)
        env = {**_env(data.get("env"), f"{path}: [env]"), **_env(entry.get("env"), f"{where} env")}
        threads = entry.get("threads", data.get("threads"))
        if threads is not None and not (type(threads) is int and threads >= 1):
            raise ValueError(f"{where}: threads must be a positive integer")
        if worker.host and _port(worker.bind) == "*":
            raise ValueError(f"{where}: a worker on another host needs a fixed port in bind "
                             f"(clients find it at that port), got {worker.bind!r}")
        placements.append(Placement(worker, python, workdir, env, threads))
    return Deployment(path, spec, tuple(placements), tuple(ssh_options))


def _string(entry: dict, top: dict, name: str, where: str) -> str | None:
    value = entry.get(name, top.get(name))
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{where}: {name} must be a non-empty string")
    return value


def _env(table: object, where: str) -> dict[str, str]:
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{where} must be a table of strings, e.g. {{ PYTHONPATH = \"/src\" }}")
    return dict(table)


def _port(endpoint: str) -> str:
    return endpoint.rpartition(":")[2]

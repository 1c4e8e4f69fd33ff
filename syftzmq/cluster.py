"""Cluster files (``workers/*.toml``): which workers exist, where they bind, which key they use.

    key_file = "local.key"            # relative to this file; created 0600 if missing
    [workers.bob]
    bind = "tcp://127.0.0.1:5555"
    address = "tcp://127.0.0.1:5555" # optional: how clients reach it (defaults to bind)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class WorkerSpec:
    id: str
    bind: str
    address: str


@dataclass(frozen=True)
class ClusterSpec:
    workers: tuple[WorkerSpec, ...]
    key_file: Path | None


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
        workers.append(WorkerSpec(worker_id, entry["bind"], entry.get("address", entry["bind"])))
    key_file = data.get("key_file")
    return ClusterSpec(tuple(workers), (path.parent / key_file) if key_file else None)


def cluster(path: str | os.PathLike, hook: object = None, timeout: float | None = None) -> dict:
    """Connect to the running cluster described by ``path``; returns its workers by id."""
    from .client.handle import Worker
    spec = load_cluster(path)
    key_file = spec.key_file if spec.key_file and spec.key_file.exists() else None
    return {w.id: Worker(hook, w.id, w.address, key_file=key_file, timeout=timeout)
            for w in spec.workers}

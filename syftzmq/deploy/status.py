"""``syftzmq cluster status`` and ``down``: ask each worker, combine with the supervisor's state.

Everything comes from the workers' own PING answers (pid, uptime, objects, bytes stored,
resident memory) through the client API, so status needs no login to any host; the
supervisor's state file, when ``cluster up`` runs, adds the incarnation number and when a
worker that no longer answers was last heard from.
"""

from __future__ import annotations

import time
from typing import Any

from .spec import Deployment
from .state import read_state, state_path, stop_supervisor

COLUMNS = ("id", "host", "address", "incarnation", "pid", "uptime", "objects", "stored",
           "memory", "last heard")


def _handle(deployment: Deployment, worker_id: str, address: str, timeout: float):
    from ..client.handles import Worker
    spec = deployment.cluster
    key_file = spec.key_file if spec.key_file is not None and spec.key_file.exists() else None
    return Worker(None, worker_id, address, key_file=key_file, curve_dir=spec.curve_dir,
                  timeout=timeout)


def _forget(handle: Any) -> None:
    from ..client.handles import default_session
    default_session().forget(handle.ref)


def gather(deployment: Deployment, timeout: float = 3.0) -> list[dict]:
    """One record per worker of the file; ``answered`` says whether it answered a PING."""
    state = read_state(state_path(deployment.path)) or {}
    supervised = state.get("workers", {})
    rows = []
    for placement in deployment.placements:
        worker = placement.worker
        known = supervised.get(worker.id, {})
        address = known.get("address") or worker.address
        row: dict[str, Any] = {"id": worker.id, "host": worker.host or "local", "address": address,
                               "answered": False, "supervised": bool(known),
                               "state": known.get("state"), "incarnation": known.get("incarnation"),
                               "incarnation_id": known.get("incarnation_id"), "pid": known.get("pid"),
                               "last_heard": known.get("last_heard"), "error": None}
        try:
            handle = _handle(deployment, worker.id, address, timeout)
            info = handle.ping(timeout, vitals=True)
            _forget(handle)
        except Exception as exc:  # not running, unreachable, wrong keys: the row says which
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        incarnation_id = info["ref"].incarnation
        if row["incarnation_id"] != incarnation_id:  # not the incarnation the supervisor knows (or none)
            row["incarnation"] = None
        row.update(answered=True, incarnation_id=incarnation_id, pid=info.get("pid"), uptime=info.get("uptime"),
                   objects=info.get("objects"), bytes_stored=info.get("bytes_stored"),
                   rss_bytes=info.get("rss_bytes"), last_heard=time.time(),
                   started_at=info.get("started_at"))
        rows.append(row)
    return rows


def format_table(rows: list[dict], now: float | None = None) -> str:
    now = time.time() if now is None else now
    table = [COLUMNS]
    for row in rows:
        token = (row.get("incarnation_id") or "").partition("#")[2]
        number = row.get("incarnation")
        incarnation = f"{number} ({token})" if number and token else (token or "-")
        table.append((row["id"], row["host"], row["address"], incarnation,
                      _text(row.get("pid")), _duration(row.get("uptime")),
                      _text(row.get("objects")), _size(row.get("bytes_stored")),
                      _size(row.get("rss_bytes")), _heard(row, now)))
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    out = ["  ".join((cell.upper() if n == 0 else cell).ljust(w)
                     for cell, w in zip(line, widths)).rstrip()
           for n, line in enumerate(table)]
    errors = [f"{row['id']}: {row['error']}" for row in rows if row.get("error")]
    return "\n".join(out + ([""] + errors if errors else []))


def stop_cluster(deployment: Deployment, timeout: float = 3.0,
                 say=print) -> bool:
    """Stop the supervisor if ``cluster up`` runs, then ask every worker still answering to
    shut down. True when no worker of the file answers any more."""
    state_file = state_path(deployment.path)
    state = read_state(state_file)
    if state is not None:
        pid = state["supervisor_pid"]
        say(f"stopping the supervisor of {deployment.path} (pid {pid}) and its workers")
        if not stop_supervisor(pid, timeout=60.0):
            say(f"the supervisor (pid {pid}) did not exit within 60 s")
            return False
        if not state_file.exists():  # it removes the file once every worker is gone
            say(f"all {len(deployment.placements)} workers stopped")
            return True
    all_gone = True
    for placement in deployment.placements:
        worker = placement.worker
        try:
            handle = _handle(deployment, worker.id, worker.address, timeout)
        except Exception:
            say(f"worker {worker.id}: not running (no answer at {worker.address})")
            continue
        try:
            handle.shutdown(timeout)
            say(f"worker {worker.id} at {worker.address} stopped")
        except Exception as exc:
            all_gone = False
            say(f"worker {worker.id} at {worker.address} did not stop: {exc}")
    return all_gone


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _size(value: Any) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _heard(row: dict, now: float) -> str:
    if row.get("answered"):
        return "now"
    if row.get("last_heard") is None:
        return "never"
    return f"{_duration(now - row['last_heard'])} ago"

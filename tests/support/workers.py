"""Worker processes in tests: where the checkout is, how to find every worker this run started,
and workers for one test module."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import syftzmq as sy

# Inherited by every worker this run starts. A run started by another one (a pytest-xdist
# process, a pytest that a test runs) extends its parent's mark: the parent's check finds the
# workers of every run below it too, each run's own check only those of its own (and below).
RUN_MARK = f"{os.environ.get('SYFTZMQ_TEST_RUN', 'syftzmq-test-')}{uuid.uuid4().hex[:16]}/"
os.environ["SYFTZMQ_TEST_RUN"] = RUN_MARK
ROOT = Path(__file__).resolve().parents[2]


def worker_processes_of_this_run() -> list[int]:
    """Pids of live worker processes started (directly or not) by this test run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"syftzmq" not in cmdline or b"worker" not in cmdline:
                continue
            if RUN_MARK.encode() in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@contextmanager
def started_workers(hook, *ids: str, **options):
    """Worker processes for one test module, with the given VirtualWorker options; all are
    shut down afterwards, whatever happens."""
    workers = []
    try:
        for worker_id in ids:
            workers.append(sy.VirtualWorker(hook, id=worker_id, **options))
        yield tuple(workers)
    finally:
        for worker in workers:
            worker.shutdown()



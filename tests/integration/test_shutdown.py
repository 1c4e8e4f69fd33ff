"""Clean shutdown: exit with work pending never hangs; SIGTERM stops a worker (without hanging) and it
leaves no socket file or shared memory behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import torch

import syftzmq as sy
from support.workers import ROOT
from support.processes import EXIT_DEADLINE, read_lines_until, wait_for_exit
from syftzmq.security.keys import write_key_file
from syftzmq.wire import shm
from syftzmq.core.refs import WorkerRef
from syftzmq.core.meta import TensorMeta

PENDING = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    w1, w2 = sy.VirtualWorker(hook, id="w1"), sy.VirtualWorker(hook, id="w2")
    print("PIDS", w1.process.pid, w2.process.pid, flush=True)
    x = torch.randn(300, 300).send(w1)
    for _ in range(500):
        x @ x                                       # pipelined, not waited for
    chain = torch.ones(3).send(w2).send(w1)
    os.kill(w2.process.pid, signal.SIGKILL)         # a peer dies with work queued for it
    y = chain * 2                                   # w1 forwards into the dead worker
    z = torch.ones(2).send(w2)                      # the client queues for it too
    print("EXITING", flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_interpreter_exit_with_pending_work_does_not_hang():
    client = subprocess.Popen([sys.executable, "-c", PENDING.format(root=str(ROOT))],
                              stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in read_lines_until(client, "PIDS", timeout=60)[-1].split()[1:]]
        read_lines_until(client, "EXITING", timeout=60)
        assert client.wait(20) == 0
    finally:
        client.kill()
        client.wait(10)
    assert all(wait_for_exit(pid, 10) for pid in pids)


def _shm_entries() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def _left_in_shm(before: set[str], worker_pid: int) -> set[str]:
    """What appeared in /dev/shm since ``before`` and is not another process's segment: test
    processes running beside this one (pytest-xdist) make segments of their own meanwhile."""
    new = _shm_entries() - before
    fields = [name.split("-") for name in new]
    creators = {int(f[1]) for f in fields if len(f) > 1 and f[1].isdigit()}
    others = set(shm.segments_of(sorted(creators - {worker_pid, os.getpid()}), spares=True))
    return new - others


def test_worker_exits_on_sigterm_and_leaves_nothing_behind(hook, tmp_path):
    key_file = tmp_path / "k.key"
    write_key_file(key_file)
    socket_file = tmp_path / "solo.sock"
    shm_before = _shm_entries()
    worker = subprocess.Popen([sys.executable, "-m", "syftzmq.worker", "--id", "solo",
                               "--bind", f"ipc://{socket_file}", "--key-file", str(key_file),
                               "--log-level", "WARNING"], stdout=subprocess.PIPE)
    session = sy.default_session()
    ghost = WorkerRef("ghost", f"tcp://127.0.0.1:{_free_port()}", "ghost#0")
    try:
        read_lines_until(worker, "SYFTZMQ-READY", timeout=60)
        assert socket_file.exists()
        solo = sy.Worker(hook, id="solo", address=f"ipc://{socket_file}", key_file=key_file)
        big = torch.randn(512, 512).send(solo)
        assert torch.equal((big * 1).get(), big.get())
        # Give the worker a peer that never answers, with messages queued for it.
        to_ghost = session.new_pointer(ghost, 12345, meta=TensorMeta(torch.Size([2]), torch.float32))
        on_solo = to_ghost.send(solo)
        session.forget(ghost)                           # this client will not wait for it
        doubled = on_solo * 2
        assert solo.ping()["objects"] == 2             # ping is not an observation: no flush
        session.forget(solo.ref)
        del to_ghost, on_solo, doubled
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(EXIT_DEADLINE) == 0          # it exits, cleanly, on its own
    finally:
        worker.kill()
        worker.wait(10)
    assert not socket_file.exists(), "the ipc socket file was left behind"
    assert not _left_in_shm(shm_before, worker.pid), "shared memory was left behind"

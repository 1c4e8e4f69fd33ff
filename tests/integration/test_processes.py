"""Workers are real OS processes: started, found, stopped, and never left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import syftzmq as sy
from support.workers import ROOT
from support.processes import EXIT_DEADLINE, read_lines_until, spawned_cluster, wait_for_exit

import pytest

CLIENT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    workers = [sy.VirtualWorker(hook, id=name) for name in ("w1", "w2")]
    x = torch.ones(3).send(workers[0])
    print("PIDS", *[w.process.pid for w in workers], flush=True)
    if sys.argv[1] == "block":
        sys.stdin.read()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(mode: str) -> tuple[subprocess.Popen, list[int]]:
    client = subprocess.Popen([sys.executable, "-c", CLIENT.format(root=str(ROOT)), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = read_lines_until(client, "PIDS", timeout=60)[-1]
    return client, [int(pid) for pid in line.split()[1:]]


def test_virtual_worker_is_its_own_process(bob):
    assert bob.process.pid != os.getpid()
    cmdline = Path(f"/proc/{bob.process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"syftzmq.worker" in cmdline and b"bob" in cmdline
    assert bob.address.startswith("tcp://127.0.0.1:")
    assert bob.ping()["ref"].id == "bob"


def test_shutdown_ends_the_worker_process(hook):
    temp = sy.VirtualWorker(hook, id="temp")
    pid = temp.process.pid
    assert torch.equal((torch.ones(2).send(temp) * 3).get(), torch.full((2,), 3.0))
    temp.shutdown()
    assert wait_for_exit(pid, timeout=5)
    assert temp.process.popen.returncode == 0


def test_workers_end_when_the_client_is_killed():
    client, pids = _client("block")
    assert all(not wait_for_exit(pid, 0) for pid in pids)  # alive while the client is
    client.kill()
    client.wait(10)
    assert all(wait_for_exit(pid, timeout=10) for pid in pids), "workers outlived a killed client"


def test_workers_end_when_the_client_exits():
    client, pids = _client("exit")
    assert client.wait(30) == 0
    assert all(wait_for_exit(pid, timeout=10) for pid in pids)


def test_spawn_script_cluster_and_ctrl_c(tmp_path, hook):
    ports = [_free_port() for _ in range(3)]
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text('key_file = "cluster.key"\n' + "".join(
        f'[workers.{name}]\nbind = "tcp://127.0.0.1:{port}"\n'
        for name, port in zip(["bob", "alice", "secure_worker"], ports)))
    with spawned_cluster(cluster_file, 3) as (lines, pids, _script):
        assert len(pids) == 3
        assert any(f"worker alice ready at tcp://127.0.0.1:{ports[1]}" in line for line in lines)
        assert oct((tmp_path / "cluster.key").stat().st_mode & 0o777) == "0o600"

        workers = sy.cluster(cluster_file, hook)
        assert sorted(workers) == ["alice", "bob", "secure_worker"]
        x = torch.arange(3.0).send(workers["bob"]).move(workers["secure_worker"])
        assert torch.equal((x * 2).get(), torch.arange(3.0) * 2)
        del x
        assert workers["bob"]._objects == {} and workers["secure_worker"]._objects == {}
        for worker in workers.values():
            sy.default_session().forget(worker.ref)


def test_worker_command_line_serves_and_exits_on_sigterm(hook, tmp_path):
    port = _free_port()
    console = Path(sys.executable).parent / "syftzmq-worker"
    command = [str(console)] if console.exists() else [sys.executable, "-m", "syftzmq.worker"]
    worker = subprocess.Popen(command + ["--id", "solo", "--bind", f"tcp://127.0.0.1:{port}",
                                         "--log-level", "INFO"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_lines_until(worker, "SYFTZMQ-READY", timeout=60)
        solo = sy.Worker(hook, id="solo", address=f"tcp://127.0.0.1:{port}")
        assert repr(solo) == "<Worker id:solo #objects:0>"
        x = torch.tensor([1.0, 2.0]).send(solo)
        assert repr(solo) == "<Worker id:solo #objects:1>"
        assert torch.equal(x.get(), torch.tensor([1.0, 2.0]))
        sy.default_session().forget(solo.ref)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(EXIT_DEADLINE)  # exits on SIGTERM
    assert worker.returncode == 0
    log = worker.stderr.read()
    assert "worker solo serving at" in log and "stopped: SIGTERM" in log


def test_spawn_script_restarts_a_killed_worker_and_the_others_keep_their_data(tmp_path, hook):
    """One dead worker does not stop the cluster: it comes back at the same address as a new
    incarnation; the other workers are not touched and keep what they hold."""
    import re
    ports = [_free_port() for _ in range(3)]
    names = ["bob", "alice", "secure_worker"]
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text('key_file = "cluster.key"\n' + "".join(
        f'[workers.{name}]\nbind = "tcp://127.0.0.1:{port}"\n' for name, port in zip(names, ports)))
    with spawned_cluster(cluster_file, 3) as (lines, pids, script):
        workers = sy.cluster(cluster_file, hook)
        data = {name: torch.arange(4.0) + 10 * i for i, name in enumerate(names)}
        pointers = {name: data[name].send(workers[name]) for name in names}
        old_incarnation = workers["bob"].ref.incarnation
        bob_pid = int(re.search(r"worker bob ready at \S+ \(pid (\d+)\)", "\n".join(lines))[1])
        others = {name: workers[name].ping()["pid"] for name in ("alice", "secure_worker")}
        assert [workers[name].object_count() for name in names] == [1, 1, 1]  # all stored

        os.kill(bob_pid, signal.SIGKILL)
        later = read_lines_until(script, "worker bob restarted", timeout=90)
        assert any("worker bob was killed by SIGKILL; restarting in" in line for line in later), later
        restarted = re.search(r"restarted at (\S+) \(pid (\d+), incarnation 2\)", later[-1])
        assert restarted and restarted[1] == f"tcp://127.0.0.1:{ports[0]}", later[-1]
        new_pid = int(restarted[2])
        pids.append(new_pid)
        assert new_pid != bob_pid and wait_for_exit(bob_pid, 0)

        for name in ("alice", "secure_worker"):  # untouched: same process, same data
            assert workers[name].ping()["pid"] == others[name]
            assert torch.equal(pointers[name].get(), data[name])
        with pytest.raises(sy.SyftZmqError, match="bob"):  # its objects died with it
            pointers["bob"].get()
        fresh = sy.cluster(cluster_file, hook)["bob"]  # the same address serves the new one
        assert fresh.ping()["pid"] == new_pid and fresh.ref.incarnation != old_incarnation
        assert torch.equal((torch.ones(2).send(fresh) * 3).get(), torch.full((2,), 3.0))
        del pointers
        for worker in [*workers.values(), fresh]:
            sy.default_session().forget(worker.ref)

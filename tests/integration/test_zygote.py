"""Workers forked from the client's worker template: real, separate processes that serve like
spawned ones, end with their client, and die alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import syftzmq as sy
from support.processes import read_lines_until, wait_for_exit
from support.walkthrough import run_walkthrough
from support.workers import ROOT, started_workers
from syftzmq.client import zygote
from syftzmq.client.launcher import WorkerProcess

pytestmark = pytest.mark.timeout(180)

CLIENT = textwrap.dedent("""
    import logging, os, signal, subprocess, sys, torch
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    from syftzmq.client import zygote
    hook = sy.TorchHook(torch)
    if sys.argv[1] == "template-killed":
        first = sy.VirtualWorker(hook, id="first")
        template = zygote.worker_template(sy.default_session())
        os.kill(template.pid, signal.SIGKILL)
        template.popen.wait()
        # what it forked lives on, tied to this client, not to the template
        assert torch.equal((torch.ones(2).send(first) + 1).get(), torch.full((2,), 2.0))
        first.shutdown()
        assert first.process.popen.returncode == zygote.EXIT_UNKNOWN  # nobody left to tell
    workers = [sy.VirtualWorker(hook, id=name) for name in ("w1", "w2")]
    x = torch.ones(3).send(workers[0]) + 1
    assert torch.equal(x.get(), torch.full((3,), 2.0))
    template = zygote._template
    if sys.argv[1] != "block":
        print("SPAWNED", *[isinstance(w.process.popen, subprocess.Popen) for w in workers])
    print("PIDS", template.pid if template else 0, *[w.process.pid for w in workers], flush=True)
    if sys.argv[1] == "block":
        sys.stdin.read()
""")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _client(mode: str, **env: str) -> tuple[subprocess.Popen, int, list[int]]:
    client = subprocess.Popen([sys.executable, "-c", CLIENT.format(root=str(ROOT)), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, **env})
    try:
        lines = read_lines_until(client, "PIDS", timeout=90)
    except BaseException:
        client.kill()
        client.wait()
        raise
    template, *workers = (int(pid) for pid in lines[-1].split()[1:])
    client.spawned = [line for line in lines if line.startswith("SPAWNED")]  # type: ignore
    return client, template, workers


def _template_pid() -> int:
    return zygote.worker_template(sy.default_session()).pid


def test_workers_are_separate_processes_forked_from_one_template(hook):
    with started_workers(hook, "z_bob", "z_alice") as (bob, alice):
        template = _template_pid()
        pids = {bob.process.pid, alice.process.pid}
        assert len(pids) == 2 and os.getpid() not in pids and template not in pids
        assert {_parent(pid) for pid in pids} == {template}
        assert _parent(template) == os.getpid()
        assert all(isinstance(w.process.popen, zygote.ForkedProcess) for w in (bob, alice))
        assert len(os.listdir(f"/proc/{template}/task")) == 1  # it forks with no threads
        for worker in (bob, alice):  # what ps, and the suite's leak check, see
            cmdline = Path(f"/proc/{worker.process.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[1:3] == [b"-m", b"syftzmq.worker"] and worker.id.encode() in cmdline
            assert worker.ping()["threads"] == 1
            assert worker.ping()["ref"].incarnation == worker.ref.incarnation
        assert bob.ref.incarnation != alice.ref.incarnation
        run_walkthrough(bob, alice)


def test_each_forked_worker_draws_its_own_random_numbers(hook):
    with started_workers(hook, "z_r1", "z_r2", "z_r3") as workers:
        draws = [torch.zeros(8).send(w).uniform_().get() for w in workers]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


def test_a_forked_worker_gets_the_threads_asked_for(hook):
    with started_workers(hook, "z_threads", threads=2) as (worker,):
        assert worker.ping()["threads"] == 2
        assert isinstance(worker.process.popen, zygote.ForkedProcess)


def test_shutdown_reports_the_exit_code_the_template_reaped(hook):
    worker = sy.VirtualWorker(hook, id="z_stop")
    pid = worker.process.pid
    worker.shutdown()
    assert wait_for_exit(pid, timeout=5)
    assert worker.process.popen.returncode == 0 and not worker.process.alive()


def test_a_worker_killed_with_kill_9_harms_neither_template_nor_siblings(hook):
    victim = sy.VirtualWorker(hook, id="z_victim")
    with started_workers(hook, "z_sibling") as (sibling,):
        template = _template_pid()
        pointer = torch.arange(4.0).send(sibling)
        os.kill(victim.process.pid, signal.SIGKILL)
        assert victim.process.wait(10)
        assert victim.process.popen.returncode == -signal.SIGKILL
        sy.default_session().forget(victim.ref)
        assert torch.equal((pointer * 2).get(), torch.arange(4.0) * 2)
        assert _template_pid() == template and wait_for_exit(template, 0) is False
        with started_workers(hook, "z_after") as (after,):
            assert _parent(after.process.pid) == template
            assert torch.equal((torch.ones(2).send(after) + 1).get(), torch.full((2,), 2.0))


def test_kill_9_of_the_client_leaves_no_worker_and_no_template():
    client, template, workers = _client("block")
    try:
        assert template and all(_parent(pid) == template for pid in workers)
        assert _parent(template) == client.pid
        assert not any(wait_for_exit(pid, 0) for pid in [template, *workers])
    finally:
        client.kill()
        client.wait(10)
    assert all(wait_for_exit(pid, timeout=10) for pid in [template, *workers]), \
        "a worker or the template outlived a killed client"


def test_a_client_that_exits_leaves_no_worker_and_no_template():
    client, template, workers = _client("exit")
    assert client.wait(30) == 0
    assert all(wait_for_exit(pid, timeout=10) for pid in [template, *workers])


def test_zygote_off_spawns_fresh_processes():
    client, template, workers = _client("exit", SYFTZMQ_ZYGOTE="0")
    assert template == 0  # no template was started
    assert client.spawned == ["SPAWNED True True"]
    assert client.wait(30) == 0
    assert all(wait_for_exit(pid, timeout=10) for pid in workers)


def test_a_dead_template_spares_its_workers_and_later_ones_are_spawned_with_a_reason():
    client, template, workers = _client("template-killed")
    assert template == 0 or wait_for_exit(template, 0)
    assert client.spawned == ["SPAWNED True True"]
    assert client.wait(30) == 0
    log = client.stderr.read().decode()
    assert "instead of forking it from the template" in log and "exited" in log, log
    assert all(wait_for_exit(pid, timeout=10) for pid in workers)


def test_a_changed_start_up_variable_spawns_the_worker_afresh(hook, monkeypatch):
    _template_pid()  # the template exists, started under the current environment
    monkeypatch.setenv("SYFTZMQ_LEASE_SECONDS", "77")
    with started_workers(hook, "z_env") as (worker,):
        assert isinstance(worker.process, WorkerProcess)
        assert isinstance(worker.process.popen, subprocess.Popen)
        assert _parent(worker.process.pid) == os.getpid()
        assert worker.ping()["lease_seconds"] == 77.0

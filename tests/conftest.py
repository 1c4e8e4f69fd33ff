"""Shared fixtures: three real worker processes for the whole run, and leak checks.

Every test must leave the workers' stores empty (checked after each test), and the run must
leave no worker process behind (checked after the last fixture is torn down).
"""

from __future__ import annotations

import gc

import pytest
import torch

import syftzmq as sy
from support.workers import worker_processes_of_this_run


@pytest.fixture(scope="session")
def hook():
    return sy.TorchHook(torch)


@pytest.fixture(scope="session")
def workers(hook):
    started = {name: sy.VirtualWorker(hook, id=name) for name in ("bob", "alice", "carol")}
    yield started
    for worker in started.values():
        worker.shutdown()


@pytest.fixture
def bob(workers):
    return workers["bob"]


@pytest.fixture
def alice(workers):
    return workers["alice"]


@pytest.fixture
def carol(workers):
    return workers["carol"]


@pytest.fixture(autouse=True)
def stores_left_empty(request):
    """After each test that used the shared workers, nothing may be left in their stores."""
    yield
    if "workers" not in request.fixturenames:
        return
    workers = request.getfixturevalue("workers")
    gc.collect()
    leftovers = {name: w._objects for name, w in workers.items()}
    leftovers = {name: objs for name, objs in leftovers.items() if objs}
    assert not leftovers, f"objects left behind on workers: {leftovers}"


def pytest_sessionfinish(session, exitstatus):
    sy.default_session().close()
    alive = worker_processes_of_this_run()  # close() has reaped every worker it started
    if alive:
        print(f"\nERROR: worker processes left running after the suite: {alive}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def victim(hook):
    """A worker of its own for a test to kill (the session's workers must survive)."""
    worker = sy.VirtualWorker(hook, id="victim")
    yield worker
    sy.default_session().forget(worker.ref)
    worker.process.stop()


@pytest.fixture
def short_timeout():
    """A 2 s liveness deadline for the test (restored after), so a dead worker is noticed
    quickly. Waits stay unbounded: only a worker that stops answering probes fails them."""
    session = sy.default_session()
    before = session.liveness_timeout
    sy.set_liveness_timeout(2.0)
    yield 2.0
    sy.set_liveness_timeout(before)

"""Shared fixtures. The session's workers come from syftzmq's own pytest plugin
(:mod:`syftzmq.testing.pytest_plugin`, what users get): ``hook`` and ``workers`` with PySyft's ids,
real worker processes, and a test that leaves objects on them fails. Here: shortcuts to three of
them, a worker of its own to kill, a short deadline, and the check that the run leaves no
worker process behind (after the last fixture is torn down).
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import syftzmq as sy
from support.workers import worker_processes_of_this_run

# Installed (pip install -e .), the plugin is loaded through its entry point; from a bare
# checkout, load it here. (Registering it both ways would be an error.)
_PLUGIN = "syftzmq.testing.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) \
    else [_PLUGIN]


@pytest.fixture
def bob(workers):
    return workers["bob"]


@pytest.fixture
def alice(workers):
    return workers["alice"]


@pytest.fixture
def charlie(workers):
    return workers["charlie"]


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

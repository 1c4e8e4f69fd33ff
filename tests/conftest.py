"""Shared fixtures. The session's workers come from syftzmq's own pytest plugin
(:mod:`syftzmq.testing.pytest_plugin`, what users get): ``hook`` and ``workers`` with PySyft's ids,
real worker processes, and a test that leaves objects on them fails. Here: shortcuts to three of
them, a worker of its own to kill, a short deadline, and the check that the run leaves no
worker process behind (after the last fixture is torn down; with pytest-xdist, in every xdist
process, reported by the controller).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

import syftzmq as sy
from support.workers import worker_processes_of_this_run

# Installed (pip install -e .), the plugin is loaded through its entry point; from a bare
# checkout, load it here. (Registering it both ways would be an error.)
_PLUGIN = "syftzmq.testing.pytest_plugin"
pytest_plugins = [] if any(ep.value == _PLUGIN for ep in entry_points(group="pytest11")) \
    else [_PLUGIN]


TEST_PROCESSES = 3  # most tests wait (deadlines, subprocesses, workers) more than they compute
UNIT = Path(__file__).resolve().parent / "unit"


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): TEST_PROCESSES test processes, except for the fast tier alone
    (pure logic, seconds in one process; starting more would cost more than it saves)."""
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if paths and all(path.is_relative_to(UNIT) for path in paths):
        return 0
    return TEST_PROCESSES


def pytest_collection_modifyitems(session, config, items):
    """The stress and system runs (marked slow) first: with several test processes, the
    longest tests start at once instead of being the last ones the run waits for."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def bob(workers):
    return workers["bob"]


@pytest.fixture
def alice(workers):
    return workers["alice"]


@pytest.fixture
def charlie(workers):
    return workers["charlie"]


# The check that the run leaves no worker process behind. Each process that ran tests checks
# its own workers before it exits: a worker outlives its client only briefly (it ends when its
# client does), so a check after the client exited could miss it. Under pytest-xdist each
# xdist process checks its own and hands what it found to the controller, which fails the run.
_LEFT_BEHIND = "syftzmq_workers_left_running"
_found_in_xdist_processes: list[tuple[str, list[int]]] = []


def pytest_sessionfinish(session, exitstatus):
    sy.default_session().close()
    alive = worker_processes_of_this_run()  # close() has reaped every worker it started
    workeroutput = getattr(session.config, "workeroutput", None)  # set in an xdist process
    if workeroutput is not None:
        workeroutput[_LEFT_BEHIND] = alive
        return
    left = [*_found_in_xdist_processes, *([("this process", alive)] if alive else [])]
    if left:
        print("\nERROR: worker processes left running after the suite: "
              + "; ".join(f"{where}: {pids}" for where, pids in left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: an xdist process finished; keep what its check found."""
    alive = getattr(node, "workeroutput", {}).get(_LEFT_BEHIND)
    if alive:
        _found_in_xdist_processes.append((node.gateway.id, alive))


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

"""pytest fixtures for testing federated code on syftzmq: real worker processes, PySyft's ids.

Installed with syftzmq, pytest loads this plugin by itself (entry point ``pytest11``); from a
checkout, ``pytest -p syftzmq.testing.pytest_plugin``. Then, as in PySyft's own test suite::

    def test_sum(workers):
        bob = workers["bob"]
        x = torch.tensor([1, 2]).send(bob)
        assert (x + x).get().tolist() == [2, 4]

Fixtures:

``hook`` (session)
    ``sy.TorchHook(torch)``.
``workers``
    ``{"me": hook.local_worker, "bob", "alice", "james", "charlie", "secure_worker"}`` — five
    worker processes, started when the first test asks and kept for the whole session. After
    each test every store must be empty again (the test's pointers are gone, so their objects
    were freed). A test that leaves remote objects behind **fails** at teardown (an error naming
    each worker and what it holds), and those workers are replaced by fresh processes, so the
    next test starts from empty stores whatever happened. ``syftzmq_leftovers = warn`` in the
    ini file, or ``@pytest.mark.syftzmq_leftovers("warn")`` on a test, turns the failure into a
    :class:`LeftoverWarning` (``"ignore"``: only the clean-up). A test that failed anyway is
    not also blamed for leftovers (its traceback keeps its pointers alive), only cleaned up.

At the end of the session every worker process is stopped and reaped. Nothing is imported
from torch or syftzmq until a fixture is used: the plugin costs nothing in other projects.
"""

from __future__ import annotations

import gc
import sys
import warnings
from typing import Any

import pytest

WORKER_IDS = ("bob", "alice", "james", "charlie", "secure_worker")
MODES = ("fail", "warn", "ignore")


class LeftoverWarning(UserWarning):
    """A test left objects on syftzmq workers (they were removed by restarting the workers)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("syftzmq_leftovers", "what a test that leaves objects on the `workers` gets: "
                                       "fail (default), warn or ignore", default="fail")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "syftzmq_leftovers(mode): fail, warn or ignore when this "
                                       "test leaves objects on the `workers` fixture's workers")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item._syftzmq_call_failed = report.failed  # type: ignore[attr-defined]


class WorkerPool:
    """The session's worker processes, by id; a worker is replaced when it must be emptied."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.workers: dict[str, Any] = {}
        self._modules_frozen = 0

    def collect_garbage(self) -> None:
        """Collect garbage, so that pointers in reference cycles release their objects now.

        A full collection walks every object alive: with torch (and a test database such as
        its OpInfo list) imported, 70-150 ms, after every test. What modules made lives as
        long as they do and holds no test's pointer, so once a collection is done after new
        modules were imported, what survived it is moved out of the collector's sight
        (``gc.freeze``): later collections walk only what tests made since. Objects of tests
        are never frozen except those alive at such a moment (a test that imported something)."""
        gc.collect()
        if len(sys.modules) != self._modules_frozen:
            gc.freeze()
            self._modules_frozen = len(sys.modules)

    def start(self) -> dict[str, Any]:
        import syftzmq as sy
        for worker_id in WORKER_IDS:
            if worker_id not in self.workers:
                self.workers[worker_id] = sy.VirtualWorker(self.hook, id=worker_id)
        return dict(self.workers)

    def leftovers(self) -> tuple[dict[str, str], list[str]]:
        """What each worker still holds (described), and the workers that no longer answer."""
        self.collect_garbage()
        held, broken = {}, []
        for worker_id, worker in self.workers.items():
            try:
                if worker.object_count():
                    held[worker_id] = _describe(worker._objects)
            except Exception:  # shut down or killed by the test: it is replaced all the same
                broken.append(worker_id)
        return held, broken

    def replace(self, worker_ids: list[str]) -> None:
        import syftzmq as sy
        for worker_id in worker_ids:
            old = self.workers.pop(worker_id)
            try:
                old.shutdown(timeout=2.0)
            except Exception:
                if old.process is not None:
                    old.process.stop()
            sy.default_session().forget(old.ref)
            self.workers[worker_id] = sy.VirtualWorker(self.hook, id=worker_id)

    def close(self) -> None:
        for worker in self.workers.values():
            try:
                worker.shutdown(timeout=2.0)
            except Exception:
                pass
            finally:
                if worker.process is not None:
                    worker.process.stop()  # reaps it; a no-op once it has exited
        self.workers.clear()


def _describe(objects: dict) -> str:
    parts = []
    for object_id, obj in list(objects.items())[:5]:
        shape = getattr(obj, "shape", None)
        what = type(obj).__name__ + (f"{list(shape)}" if shape is not None else "")
        parts.append(f"{object_id}: {what}")
    more = f", ... ({len(objects)} in all)" if len(objects) > 5 else ""
    return ", ".join(parts) + more


@pytest.fixture(scope="session")
def hook() -> Any:
    import torch

    import syftzmq as sy
    return sy.TorchHook(torch)


@pytest.fixture(scope="session")
def syftzmq_worker_pool(hook: Any):
    pool = WorkerPool(hook)
    yield pool
    pool.close()


@pytest.fixture
def workers(syftzmq_worker_pool: WorkerPool, hook: Any, request: pytest.FixtureRequest):
    yield {"me": hook.local_worker, **syftzmq_worker_pool.start()}
    marker = request.node.get_closest_marker("syftzmq_leftovers")
    mode = marker.args[0] if marker and marker.args else request.config.getini("syftzmq_leftovers")
    if mode not in MODES:
        raise pytest.UsageError(f"syftzmq_leftovers must be one of {MODES}, got {mode!r}")
    held, broken = syftzmq_worker_pool.leftovers()
    syftzmq_worker_pool.replace(sorted(held) + broken)
    if not held or mode == "ignore" or getattr(request.node, "_syftzmq_call_failed", False):
        return
    message = ("test left objects on syftzmq workers (they were restarted to empty them): "
               + "; ".join(f"{worker_id} holds {what}" for worker_id, what in sorted(held.items()))
               + ". Let the pointers go (del, or .get()) before the test ends.")
    if mode == "warn":
        warnings.warn(LeftoverWarning(message), stacklevel=1)
    else:
        pytest.fail(message, pytrace=False)

"""The pytest plugin shipped in the package, used by a test suite of its own in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from support.workers import ROOT
from support.processes import wait_for_exit

USER_TESTS = textwrap.dedent('''
    import json, os
    import pytest, torch
    import syftzmq as sy

    def record(name, workers):
        with open(os.environ["PIDS_FILE"], "a") as out:
            out.write(json.dumps({"test": name, "pids": {k: w.process.pid for k, w in
                                                         workers.items() if k != "me"}}) + "\\n")

    def test_pysyft_ids_and_real_processes(workers, hook):
        assert sorted(workers) == ["alice", "bob", "charlie", "james", "me", "secure_worker"]
        assert workers["me"] is hook.local_worker
        x = torch.tensor([1, 2]).send(workers["bob"]).move(workers["secure_worker"])
        assert (x + x).get().tolist() == [2, 4]
        record("first", workers)

    def test_leaves_an_object(workers):
        global KEPT
        KEPT = torch.ones(3).send(workers["alice"])

    @pytest.mark.syftzmq_leftovers("warn")
    def test_leaves_an_object_allowed(workers):
        global KEPT2
        KEPT2 = torch.ones(2).send(workers["james"])

    def test_stores_are_empty_again(workers):
        assert [workers[w].object_count() for w in sorted(workers) if w != "me"] == [0] * 5
        record("last", workers)
''')


def _plugin_option() -> list[str]:
    """``-p`` for a checkout; nothing once syftzmq is installed (its entry point loads the
    plugin, and loading it twice is an error)."""
    from importlib.metadata import entry_points
    installed = any(e.value == "syftzmq.testing.pytest_plugin" for e in entry_points(group="pytest11"))
    return [] if installed else ["-p", "syftzmq.testing.pytest_plugin"]


@pytest.mark.timeout(300)
def test_plugin_gives_session_workers_and_reports_leftovers(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    pids_file = tmp_path / "pids.jsonl"
    env_run = subprocess.run(
        [sys.executable, "-m", "pytest", *_plugin_option(), "-p", "no:cacheprovider", "-rA", "-W", "default", str(tmp_path / "test_user.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "PIDS_FILE": str(pids_file)})
    out = env_run.stdout
    assert env_run.returncode == 1, out  # one error: the test that left an object
    assert "4 passed, 1 warning, 1 error" in out, out
    assert "ERROR at teardown of test_leaves_an_object _" in out
    assert "test left objects on syftzmq workers" in out
    assert "alice holds" in out and ": Tensor[3]" in out
    assert "LeftoverWarning: test left objects on syftzmq workers" in out and "james holds" in out

    first, last = [json.loads(line)["pids"] for line in pids_file.read_text().splitlines()]
    for worker_id in ("bob", "charlie", "secure_worker"):  # started once for the session
        assert first[worker_id] == last[worker_id]
    for worker_id in ("alice", "james"):  # replaced to empty their stores
        assert first[worker_id] != last[worker_id]
    every = set(first.values()) | set(last.values())
    assert all(wait_for_exit(pid, timeout=10) for pid in every)  # none outlives the session

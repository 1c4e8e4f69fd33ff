"""A client session's own cluster key does not outlive it on disk (SECURITY.md, "Keys").

A session that closes removes its key file and directory; one killed with ``kill -9`` cannot,
and the next session started on this host removes what it left. A live session's key is never
touched by another's. Every session here is a real client process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.processes import read_lines_until
from support.workers import ROOT
from syftzmq.core.processes import pid_namespace
from syftzmq.security import keys

pytestmark = pytest.mark.timeout(120)

# A client process that makes its session's key, says where, then waits for a line on stdin
# (or its end) before it exits normally.
CLIENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    print("KEY", sy.default_session().cluster_key_file(), flush=True)
    sys.stdin.readline()
""")


def _client(tmpdir: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """A client process; with ``tmpdir``, its session keeps its key there (``TMPDIR``)."""
    env = None if tmpdir is None else {**os.environ, "TMPDIR": str(tmpdir)}
    process = subprocess.Popen([sys.executable, "-c", CLIENT.format(root=str(ROOT))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = read_lines_until(process, "KEY ", timeout=60)[-1]
    return process, Path(line.split(" ", 1)[1].strip())


def _exit(process: subprocess.Popen) -> None:
    process.stdin.close()
    assert process.wait(30) == 0


def test_a_session_that_closes_removes_its_key():
    process, key = _client()
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(key.parent.stat().st_mode & 0o777) == "0o700"
    _exit(process)
    assert not key.exists() and not key.parent.exists()


def test_the_key_a_killed_session_left_is_removed_by_the_next_session_only(tmp_path):
    """In a temporary directory of its own: any session starting on this host sweeps, and
    the suite's other test processes start sessions at any moment."""
    killed, left = _client(tmp_path)
    killed.kill()
    assert killed.wait(10) == -9                   # reaped: it exited, its pid is free
    assert left.is_file()                          # nobody could remove it yet
    live, kept = _client(tmp_path)                 # a session alive all along
    try:
        later, own = _client(tmp_path)             # the next session: it sweeps
        assert not left.exists() and not left.parent.exists()
        assert kept.is_file() and own.is_file()    # live sessions' keys stay
        _exit(later)
    finally:
        _exit(live)
    assert not kept.exists()


def test_only_a_dead_process_directory_holding_just_its_key_is_removed(tmp_path):
    namespace = pid_namespace()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)                                  # exited and reaped: its pid is free

    def session_dir(ns: int, pid: int, *files: str) -> Path:
        path = tmp_path / f"{keys.SESSION_PREFIX}{ns}-{pid}-abc123"
        path.mkdir(mode=0o700)
        for name in files:
            (path / name).write_text("x")
        return path

    dead = session_dir(namespace, gone.pid, keys.KEY_FILE)
    empty = session_dir(namespace, (1 << 22) + 7)  # above any pid_max: no such process
    alive = session_dir(namespace, os.getpid(), keys.KEY_FILE)
    other_namespace = session_dir(namespace + 1, gone.pid, keys.KEY_FILE)
    more_than_a_key = tmp_path / f"{keys.SESSION_PREFIX}{namespace}-{gone.pid}-def456"
    more_than_a_key.mkdir()
    (more_than_a_key / keys.KEY_FILE).write_text("x")
    (more_than_a_key / "notes.txt").write_text("mine")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / keys.KEY_FILE).write_text("x")
    link = tmp_path / f"{keys.SESSION_PREFIX}{namespace}-{gone.pid}-link01"
    link.symlink_to(target)

    removed = keys.remove_stale_session_keys(str(tmp_path))

    assert sorted(removed) == sorted([str(dead), str(empty)])
    assert not dead.exists() and not empty.exists()
    assert (alive / keys.KEY_FILE).exists()
    assert (other_namespace / keys.KEY_FILE).exists()
    assert (more_than_a_key / "notes.txt").exists() and (more_than_a_key / keys.KEY_FILE).exists()
    assert link.is_symlink() and (target / keys.KEY_FILE).exists()

"""The ``syftzmq`` command on one host: keys, cluster files with hosts, up / status / down.

Workers on other hosts (over SSH) are tested in test_cluster_hosts.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import syftzmq as sy
from support.workers import ROOT, RUN_MARK, worker_processes_of_this_run
from support.processes import read_lines_until, wait_for_exit, wait_until
from syftzmq.deploy import cli
from syftzmq.deploy.launch import ssh_command, worker_files
from syftzmq.deploy.spec import load_deployment
from syftzmq.deploy.state import state_path

SYFTZMQ = [sys.executable, "-m", "syftzmq"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SYFTZMQ, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=CLUSTER_ENV)


# Every process these tests start (the syftzmq command, and through it keepers and workers)
# carries this mark, so the session's own workers, alive meanwhile, are told apart.
CLUSTER_MARK = f"SYFTZMQ_TEST_CLUSTER={os.getpid()}"
CLUSTER_ENV = {**os.environ, "SYFTZMQ_TEST_CLUSTER": str(os.getpid())}


def _cluster_workers() -> list[int]:
    """Worker processes these tests started (directly or through a keeper)."""
    found = []
    for pid in worker_processes_of_this_run():
        try:
            if CLUSTER_MARK.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _keepers() -> list[int]:
    """Live worker keepers (syftzmq.deploy.agent) started by this test run."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"syftzmq-agent" in (entry / "cmdline").read_bytes() \
                    and RUN_MARK.encode() in (entry / "environ").read_bytes() \
                    and "State:\tZ" not in (entry / "status").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------- files and keys
def test_cluster_file_with_hosts(tmp_path):
    path = tmp_path / "hosts.toml"
    path.write_text(textwrap.dedent("""
        key_file = "keys/cluster.key"
        python = "/opt/venv/bin/python"
        threads = 2
        ssh_options = ["-F", "ssh_config"]
        [env]
        A = "1"
        [workers.bob]
        bind = "tcp://*:5555"
        host = "root@10.0.0.5"
        workdir = "/srv/bob"
        env = { B = "2" }
        [workers.alice]
        bind = "tcp://0.0.0.0:5556"
        host = "alice-box"
        address = "tcp://alice.example:5556"
        python = "/usr/bin/python3"
        threads = 4
        [workers.charlie]
        bind = "tcp://127.0.0.1:*"
    """))
    deployment = load_deployment(path)
    bob, alice, charlie = deployment.placements
    assert (bob.host, bob.worker.address) == ("root@10.0.0.5", "tcp://10.0.0.5:5555")
    assert (bob.python, bob.workdir, bob.env, bob.threads) == (
        "/opt/venv/bin/python", "/srv/bob", {"A": "1", "B": "2"}, 2)
    assert (alice.worker.address, alice.python, alice.threads) == (
        "tcp://alice.example:5556", "/usr/bin/python3", 4)
    assert charlie.host is None and charlie.worker.address == "tcp://127.0.0.1:*"
    assert deployment.ssh_options == ("-F", "ssh_config") and deployment.remote
    from syftzmq.client.cluster_file import load_cluster
    assert [w.address for w in load_cluster(path).workers] == [
        "tcp://10.0.0.5:5555", "tcp://alice.example:5556", "tcp://127.0.0.1:*"]

    path.write_text('[workers.bob]\nbind = "tcp://*:*"\nhost = "10.0.0.5"\n')
    with pytest.raises(ValueError, match=r"\[workers.bob\]: a worker on another host needs a fixed port"):
        load_deployment(path)
    path.write_text('[workers.bob]\nbind = "tcp://*:5555"\nhost = 5\n')
    with pytest.raises(ValueError, match=r"\[workers.bob\] host must be a non-empty string"):
        load_deployment(path)


def test_ssh_never_prompts_and_user_options_win():
    command = ssh_command("root@10.0.0.5", ("-o", "ConnectTimeout=3"), "python3 -c pass")
    assert command[0].endswith("ssh") and command[-2:] == ["root@10.0.0.5", "python3 -c pass"]
    assert command.index("ConnectTimeout=3") < command.index("ConnectTimeout=10")  # first wins
    assert "BatchMode=yes" in command and "-T" in command


def test_keygen_makes_private_keys_and_says_where_each_goes(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert cli.main(["keygen", str(keys), "--client", "laptop"]) == cli.OK
    guide = capsys.readouterr().out
    secret_files = [keys / "cluster.key", keys / "curve" / "server.key_secret",
                    keys / "curve" / "client.key_secret", keys / "curve" / "laptop.key_secret"]
    assert [_mode(p) for p in secret_files] == [0o600] * 4
    assert sorted(p.name for p in (keys / "curve" / "authorized").iterdir()) == [
        "client.key", "laptop.key", "server.key"]
    worker_part, client_part = guide.split("each worker host needs")[1].split("each client")
    assert "server.key_secret" in worker_part and "client.key_secret" not in worker_part
    assert "server.key_secret" not in client_part.split("never give")[0]
    assert "never give a client curve/server.key_secret" in guide

    before = (keys / "cluster.key").read_bytes()
    assert cli.main(["keygen", str(keys)]) == cli.EXISTS  # never replaced silently
    assert "already exist" in capsys.readouterr().err
    assert (keys / "cluster.key").read_bytes() == before
    assert cli.main(["keygen", str(keys), "--force"]) == cli.OK
    assert (keys / "cluster.key").read_bytes() != before
    assert not (keys / "curve" / "laptop.key_secret").exists()  # the old set is gone

    (tmp_path / "c.toml").write_text('key_file = "keys/cluster.key"\ncurve_dir = "keys/curve"\n'
                                     '[workers.bob]\nbind = "tcp://*:5555"\nhost = "10.0.0.5"\n')
    files = worker_files(load_deployment(tmp_path / "c.toml"))
    assert sorted(files) == ["cluster.key", "curve/authorized/client.key",
                             "curve/authorized/server.key", "curve/server.key",
                             "curve/server.key_secret"]  # never a client's secret key
    assert files["cluster.key"] == (keys / "cluster.key").read_bytes()


def test_usage_errors_exit_2(tmp_path):
    assert cli.main(["cluster", "status", str(tmp_path / "missing.toml")]) == cli.USAGE
    (tmp_path / "bad.toml").write_text("[workers.bob]\n")
    assert cli.main(["cluster", "up", str(tmp_path / "bad.toml")]) == cli.USAGE
    (tmp_path / "nokey.toml").write_text('[workers.bob]\nbind = "tcp://*:5555"\nhost = "h"\n')
    assert cli.main(["cluster", "up", str(tmp_path / "nokey.toml")]) == cli.USAGE
    with pytest.raises(SystemExit) as exited:
        cli.main(["cluster"])
    assert exited.value.code == 2


# ---------------------------------------------------------------------- a local cluster
def _status(cluster_file) -> tuple[int, dict]:
    done = _run("cluster", "status", str(cluster_file), "--json", "--timeout", "2")
    return done.returncode, {row["id"]: row for row in json.loads(done.stdout)}


def test_up_restarts_then_gives_up_status_shows_it_down_cleans_everything(tmp_path, hook):
    socket_file = tmp_path / "ipcw.sock"
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text(f'key_file = "cluster.key"\n[workers.ipcw]\nbind = "ipc://{socket_file}"\n'
                            f'[workers.tcpw]\nbind = "tcp://127.0.0.1:*"\n')
    up = subprocess.Popen([*SYFTZMQ, "cluster", "up", str(cluster_file), "--max-restarts", "1",
                           "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env=CLUSTER_ENV)
    pids: list[int] = []
    try:
        lines = read_lines_until(up, "all 2 workers ready", timeout=120)
        assert "created key file" in lines[0] and _mode(tmp_path / "cluster.key") == 0o600
        assert state_path(cluster_file).exists()
        assert _run("cluster", "up", str(cluster_file)).returncode == cli.EXISTS

        code, rows = _status(cluster_file)
        assert code == 0 and all(row["answered"] for row in rows.values())
        tcp_address = rows["tcpw"]["address"]
        assert tcp_address.startswith("tcp://127.0.0.1:") and not tcp_address.endswith("*")
        pids += [rows["ipcw"]["pid"], rows["tcpw"]["pid"]]
        assert all(f"(pid {pid})" in "\n".join(lines) for pid in pids)
        assert [rows[w]["incarnation"] for w in ("ipcw", "tcpw")] == [1, 1]
        assert rows["tcpw"]["rss_bytes"] > 10 << 20 and rows["tcpw"]["objects"] == 0

        tcpw = sy.Worker(hook, id="tcpw", address=tcp_address, key_file=tmp_path / "cluster.key")
        kept = torch.zeros(1000).send(tcpw)
        assert tcpw.object_count() == 1
        code, rows = _status(cluster_file)
        assert (rows["tcpw"]["objects"], rows["tcpw"]["bytes_stored"]) == (1, 4000)

        os.kill(pids[0], signal.SIGKILL)  # restarted once, at the same ipc address
        later = read_lines_until(up, "worker ipcw restarted", timeout=90)
        assert f"restarted at ipc://{socket_file}" in later[-1] and "incarnation 2" in later[-1]
        code, rows = _status(cluster_file)
        assert code == 0 and rows["ipcw"]["incarnation"] == 2
        pids.append(rows["ipcw"]["pid"])
        assert rows["tcpw"]["pid"] == pids[1] and rows["tcpw"]["objects"] == 1  # untouched

        os.kill(pids[2], signal.SIGKILL)  # the limit (1 restart per minute) is reached
        later = read_lines_until(up, "given up", timeout=60)
        assert "worker ipcw was killed by SIGKILL; given up after 1 restarts" in later[-1]
        wait_until(lambda: not socket_file.exists(), 10, "the dead worker's socket file removed")
        code, rows = _status(cluster_file)
        assert code == cli.FAILED and not rows["ipcw"]["answered"] and rows["tcpw"]["answered"]
        assert rows["ipcw"]["state"] == "failed" and rows["ipcw"]["last_heard"] is not None
        table = _run("cluster", "status", str(cluster_file), "--timeout", "1").stdout
        header, ipc_row, tcp_row = table.splitlines()[:3]
        assert header.split()[:4] == ["ID", "HOST", "ADDRESS", "INCARNATION"]
        assert ipc_row.split()[:2] == ["ipcw", "local"] and ipc_row.rstrip().endswith("ago")
        assert tcp_row.split()[0] == "tcpw" and "3.9 KiB" in tcp_row and tcp_row.endswith("now")
        assert torch.equal(kept.get(), torch.zeros(1000))
        sy.default_session().forget(tcpw.ref)

        down = _run("cluster", "down", str(cluster_file))
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopping the supervisor" in down.stdout and "all 2 workers stopped" in down.stdout
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert all(wait_for_exit(pid, timeout=10) for pid in pids)
    assert not state_path(cluster_file).exists() and not socket_file.exists()
    assert _cluster_workers() == [] and _keepers() == []


def test_up_names_a_worker_that_cannot_start_and_stops_the_others(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster_file = tmp_path / "cluster.toml"
        cluster_file.write_text(f'[workers.fine]\nbind = "tcp://127.0.0.1:{_free_port()}"\n'
                                f'[workers.bob]\nbind = "tcp://127.0.0.1:{port}"\n')
        done = _run("cluster", "up", str(cluster_file), "--log-level", "WARNING")
    assert done.returncode == cli.FAILED
    assert "cluster did not start: worker bob on local: exited with code" in done.stdout
    assert "Address already in use" in done.stdout + done.stderr
    assert "all workers stopped" in done.stdout
    assert _cluster_workers() == [] and _keepers() == []
    assert not state_path(cluster_file).exists()


def test_down_without_a_supervisor_asks_each_worker(tmp_path, hook):
    port = _free_port()
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text(f'[workers.solo]\nbind = "tcp://127.0.0.1:{port}"\n'
                            f'[workers.absent]\nbind = "tcp://127.0.0.1:{_free_port()}"\n')
    worker = subprocess.Popen([*SYFTZMQ, "worker", "--id", "solo", "--bind",
                               f"tcp://127.0.0.1:{port}", "--log-level", "WARNING"],
                              stdout=subprocess.PIPE, cwd=ROOT, env=CLUSTER_ENV)
    try:
        read_lines_until(worker, "SYFTZMQ-READY", timeout=60)
        code, rows = _status(cluster_file)
        assert code == cli.FAILED and rows["solo"]["answered"] and rows["solo"]["pid"] == worker.pid
        assert not rows["absent"]["answered"] and "absent" in rows["absent"]["error"]
        down = _run("cluster", "down", str(cluster_file), "--timeout", "2")
        assert down.returncode == 0, down.stdout
        assert f"worker solo at tcp://127.0.0.1:{port} stopped" in down.stdout
        assert "worker absent: not running" in down.stdout
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client (ssh) on this machine")
def test_up_says_when_ssh_cannot_reach_a_host(tmp_path):
    cluster_file = tmp_path / "cluster.toml"  # port 1 on loopback: nothing listens there
    cluster_file.write_text('key_file = "cluster.key"\nssh_options = ["-p", "1"]\n'
                            f'[workers.local]\nbind = "tcp://127.0.0.1:{_free_port()}"\n'
                            '[workers.far]\nbind = "tcp://*:5555"\nhost = "root@127.0.0.1"\n')
    done = _run("cluster", "up", str(cluster_file), "--log-level", "WARNING")
    assert done.returncode == cli.FAILED
    assert "cluster did not start: worker far on root@127.0.0.1: ssh to root@127.0.0.1 " \
           "failed or dropped" in done.stdout, done.stdout
    assert "Connection refused" in done.stdout
    assert _cluster_workers() == [] and _keepers() == []
    assert not state_path(cluster_file).exists()


def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path):
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text("".join(f'[workers.w{i}]\nbind = "tcp://127.0.0.1:{_free_port()}"\n'
                                    for i in range(2)))
    up = subprocess.Popen([*SYFTZMQ, "cluster", "up", str(cluster_file), "--log-level", "WARNING"],
                          stdout=subprocess.PIPE, text=True, cwd=ROOT, env=CLUSTER_ENV)
    try:
        lines = read_lines_until(up, "all 2 workers ready", timeout=120)
        pids = [int(line.split("(pid ")[1].split(")")[0]) for line in lines if "(pid " in line]
        assert len(pids) == 2
        up.kill()  # no chance to clean up: the keepers see their input end, and stop
        up.wait()
        assert all(wait_for_exit(pid, timeout=15) for pid in pids)
        wait_until(lambda: _cluster_workers() == [] and _keepers() == [], 15,
                   "no keeper or worker left")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert cli.main(["cluster", "status", str(cluster_file), "--timeout", "0.5"]) == cli.FAILED
    assert not state_path(cluster_file).exists()  # the stale state file was noticed and removed

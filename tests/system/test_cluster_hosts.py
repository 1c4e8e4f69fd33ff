"""A cluster across hosts for real: 8 workers on 4 hosts, started over SSH from one file, CURVE on.

The hosts are network namespaces on this machine, each with its own address and OpenSSH server
(see netns_hosts.py); the operator (``syftzmq cluster up`` and the user's client) runs in a
namespace of its own. Skipped, saying why, where the machine cannot build them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import netns_hosts
from support.workers import ROOT, RUN_MARK
from support.processes import read_lines_until, wait_for_exit, wait_until
from syftzmq.deploy import cli
from syftzmq.deploy.state import state_path

UNAVAILABLE = netns_hosts.unavailable()
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow,
              pytest.mark.skipif(UNAVAILABLE is not None,
                                 reason=f"cross-host cluster test needs network namespaces and "
                                        f"sshd: {UNAVAILABLE}")]

# two workers per host; ids as in PySyft's tests, and three more
NAMES = ["bob", "alice", "james", "charlie", "secure_worker", "dan", "eve", "frank"]
VICTIM = "james"  # on host 2
SUPPORT = Path(__file__).resolve().parents[1] / "support"


def _cluster_file(tmp_path: Path, net: netns_hosts.NetnsHosts) -> Path:
    lines = ['key_file = "keys/cluster.key"', 'curve_dir = "keys/curve"',
             f'python = "{sys.executable}"', "threads = 1",
             f'ssh_options = ["-F", "{net.ssh_config}"]',
             "[env]", f'PYTHONPATH = "{ROOT}"', 'SYFTZMQ_SHM = "0"',  # hosts share no memory
             f'SYFTZMQ_TEST_RUN = "{RUN_MARK}"']
    for number, name in enumerate(NAMES):
        host = net.hosts[number // 2]
        lines += [f"[workers.{name}]", f'bind = "tcp://*:{5555 + number % 2}"',
                  f'host = "{host.ssh}"', f'workdir = "{host.workdir}"']
    path = tmp_path / "hosts.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _syftzmq(net, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(net.in_operator([sys.executable, "-m", "syftzmq", *args]),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _status(net, cluster_file) -> dict:
    done = _syftzmq(net, "cluster", "status", str(cluster_file), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return {row["id"]: row for row in json.loads(done.stdout)}


def _event(process: subprocess.Popen, marker: str, timeout: float) -> dict:
    line = read_lines_until(process, marker, timeout)[-1]
    return json.loads(line.split(marker, 1)[1])


def test_eight_workers_on_four_hosts_over_ssh_with_curve(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYFTZMQ_SHM": "0"}
    with netns_hosts.NetnsHosts(4, tmp_path / "net") as net:
        assert cli.main(["keygen", str(tmp_path / "keys")]) == cli.OK
        cluster_file = _cluster_file(tmp_path, net)
        up = subprocess.Popen(net.in_operator([sys.executable, "-m", "syftzmq", "cluster", "up",
                                               str(cluster_file), "--log-level", "WARNING"]),
                              stdout=subprocess.PIPE, env=env, cwd=ROOT)
        client = None
        try:
            lines = read_lines_until(up, "all 8 workers ready", timeout=400)
            for number, name in enumerate(NAMES):
                host = net.hosts[number // 2]
                address = f"tcp://{host.address}:{5555 + number % 2}"  # derived from host
                assert any(f"worker {name} ready at {address} (pid" in line
                           and line.endswith(f"on {host.ssh}") for line in lines), lines

            before = _status(net, cluster_file)
            for number, name in enumerate(NAMES):  # each worker runs on its own host
                assert net.namespace_of(before[name]["pid"]) == net.hosts[number // 2].namespace
            copies = [p for h in net.hosts for p in h.workdir.rglob("*")]
            assert {p.name for p in copies if p.is_file()} == {
                "cluster.key", "server.key", "server.key_secret", "client.key"}  # no client secret
            assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in copies if p.is_file())

            client = subprocess.Popen(net.in_operator([sys.executable, str(SUPPORT / "hosts_client.py"),
                                                       str(cluster_file)]),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      cwd=SUPPORT, text=True)
            phase1 = _event(client, "PHASE1 ", timeout=400)
            assert phase1["workers"] == sorted(NAMES)
            move = phase1["move"]
            assert move["equal"] and (move["source_objects"], move["destination_objects"]) == (0, 1)
            assert move["client_received"] < 64 << 10 and move["client_sent"] < 64 << 10, move
            assert move["get_received"] >= move["bytes"]  # the counter does count bulk bytes
            assert phase1["fedavg_error"] < 1e-5
            assert phase1["after_fedavg"] == dict.fromkeys(NAMES, 0)
            assert phase1["markers"] == dict.fromkeys(NAMES, 1)

            victim_pid = before[VICTIM]["pid"]
            os.kill(victim_pid, signal.SIGKILL)  # a worker on host 2, killed outright
            later = read_lines_until(up, f"worker {VICTIM} restarted", timeout=180)
            assert any(f"worker {VICTIM} was killed by SIGKILL; restarting" in l for l in later)
            assert wait_for_exit(victim_pid, 0)
            client.stdin.write(f"killed {VICTIM}\n")
            client.stdin.flush()
            phase2 = _event(client, "PHASE2 ", timeout=180)
            assert phase2["kept"] == {name: True for name in NAMES if name != VICTIM}
            assert VICTIM in phase2["victim_error"] and "restarted" in phase2["victim_error"]
            assert phase2["fresh_incarnation_differs"] and phase2["fresh_result"] == [0.0, 2.0, 4.0]
            assert phase2["left"] == dict.fromkeys(NAMES, 0)
            assert client.wait(60) == 0

            after = _status(net, cluster_file)
            assert after[VICTIM]["incarnation"] == 2 and after[VICTIM]["pid"] != victim_pid
            assert net.namespace_of(after[VICTIM]["pid"]) == net.hosts[1].namespace
            assert after[VICTIM]["address"] == before[VICTIM]["address"]
            for name in NAMES:
                if name != VICTIM:  # untouched
                    assert (after[name]["pid"], after[name]["incarnation"]) == \
                        (before[name]["pid"], 1)
                    assert after[name]["uptime"] > before[name]["uptime"]
            table = _syftzmq(net, "cluster", "status", str(cluster_file))
            assert table.returncode == 0
            rows = table.stdout.splitlines()
            assert rows[0].split()[:3] == ["ID", "HOST", "ADDRESS"] and len(rows) == 9
            assert all(row.rstrip().endswith("now") for row in rows[1:])

            down = _syftzmq(net, "cluster", "down", str(cluster_file))
            assert down.returncode == 0, down.stdout + down.stderr
            assert "all 8 workers stopped" in down.stdout
            assert up.wait(60) == 0
        finally:
            for process in (client, up):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        for host in net.hosts:  # nothing left on any host: processes, key copies, sockets
            wait_until(lambda: net.processes_in(host.namespace) == [], 30,
                       f"every process in {host.namespace} (but sshd) gone")
            assert list(host.workdir.iterdir()) == []
        assert net.processes_in(net.operator) == []
        assert not state_path(cluster_file).exists()

"""Separate "hosts" on this machine for tests: network namespaces, each with an address and sshd.

One namespace per host plus one for the operator (where ``syftzmq cluster up`` and the client
run), all joined by a bridge in a switch namespace of their own. Every address (10.231.0.x/24)
lives only inside namespaces created here, so nothing is added to the machine's own network;
names carry a random token, so runs never collide. Each host runs the system's OpenSSH server
with a throw-away host key, listening only on that host's address, admitting root by public
key only (the test's own throw-away client key). The operator's ``ssh`` uses a config file of
its own (``-F``): that key, those host keys, strict host-key checking.

The namespaces share the machine's filesystem and process table: a test can look at every
process and file the cluster leaves, and ``kill -9`` a worker on any host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SUBNET = "10.231.0"
OPERATOR_ADDRESS = f"{SUBNET}.1"


def unavailable() -> str | None:
    """Why this machine cannot build the hosts, or None if it can."""
    if os.geteuid() != 0:
        return "not root: creating network namespaces and running sshd need root"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"no `{tool}` command (install iproute2 / openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"no OpenSSH server at {SSHD} (apt-get install -y openssh-server)"
    probe = f"szqprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create network namespaces here (`ip netns add`: {made.stderr.strip()})"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class Host:
    namespace: str
    address: str
    workdir: Path
    sshd: subprocess.Popen | None = None

    @property
    def ssh(self) -> str:
        return f"root@{self.address}"


class NetnsHosts:
    """``with NetnsHosts(4, tmp_path) as net:`` — hosts ``net.hosts``, operator namespace
    ``net.operator``; everything is torn down on exit, also after a failure."""

    def __init__(self, count: int, root: Path) -> None:
        token = secrets.token_hex(3)
        self.root = root
        self.switch = f"szq{token}sw"
        self.operator = f"szq{token}op"
        self.hosts = [Host(f"szq{token}h{i + 1}", f"{SUBNET}.{11 + i}", root / f"host{i + 1}")
                      for i in range(count)]
        self.namespaces: list[str] = []
        self.ssh_config = root / "ssh_config"

    # ------------------------------------------------------------------ building
    def __enter__(self) -> "NetnsHosts":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in [self.switch, self.operator, *(h.namespace for h in self.hosts)]:
            _ip("netns", "add", name)
            self.namespaces.append(name)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        ends = [(self.operator, OPERATOR_ADDRESS)] + [(h.namespace, h.address) for h in self.hosts]
        for number, (namespace, address) in enumerate(ends):
            port = f"port{number}"
            _ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        self._start_sshds()

    def _start_sshds(self) -> None:
        client_key = self.root / "client_key"
        authorized = self.root / "authorized_keys"
        authorized.write_text(_keygen(client_key, "syftzmq-test-client") + "\n")
        os.chmod(authorized, 0o600)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        known = []
        for host in self.hosts:
            directory = self.root / host.namespace
            directory.mkdir()
            host.workdir.mkdir()
            host_key = directory / "host_key"
            known.append(f"{host.address} {_keygen(host_key, host.namespace)}")
            config = directory / "sshd_config"
            config.write_text("\n".join([
                f"ListenAddress {host.address}:22", f"HostKey {host_key}", "PidFile none",
                f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes", "AuthenticationMethods publickey",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                "StrictModes no", "AllowTcpForwarding no", "X11Forwarding no",
                "PermitTTY no", "PrintMotd no", "LogLevel INFO", ""]))
            log = (directory / "sshd.log").open("w")
            host.sshd = subprocess.Popen(["ip", "netns", "exec", host.namespace, SSHD, "-D", "-e",
                                          "-f", str(config)], stdout=log, stderr=log)
            log.close()
        (self.root / "known_hosts").write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join([
            f"Host {SUBNET}.*", "  User root", f"  IdentityFile {client_key}",
            "  IdentitiesOnly yes", f"  UserKnownHostsFile {self.root / 'known_hosts'}",
            "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes",
            "  LogLevel ERROR", ""]))
        deadline = time.monotonic() + 30
        for host in self.hosts:
            log = self.root / host.namespace / "sshd.log"
            while "Server listening on" not in log.read_text():
                if host.sshd.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd in {host.namespace} did not start: {log.read_text()}")
                time.sleep(0.02)  # polling another process's log, with a deadline

    # ------------------------------------------------------------------ using
    def in_operator(self, argv: list[str]) -> list[str]:
        """``argv`` run in the operator's namespace (where the hosts are reachable)."""
        return ["ip", "netns", "exec", self.operator, *argv]

    def namespace_of(self, pid: int) -> str | None:
        """Which of our namespaces process ``pid`` lives in (None: another one, or gone)."""
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return None
        for name in self.namespaces:
            if os.stat(f"/run/netns/{name}").st_ino == inode:
                return name
        return None

    def processes_in(self, namespace: str) -> list[int]:
        """Live processes in ``namespace``, except the sshd listeners this object started."""
        ours = {h.sshd.pid for h in self.hosts if h.sshd is not None}
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in ours:
                try:
                    if "State:\tZ" in (entry / "status").read_text():
                        continue
                except OSError:
                    continue
                if self.namespace_of(int(entry.name)) == namespace:
                    found.append(int(entry.name))
        return found

    # ------------------------------------------------------------------ tearing down
    def close(self) -> None:
        for host in self.hosts:
            if host.sshd is not None and host.sshd.poll() is None:
                host.sshd.terminate()
                try:
                    host.sshd.wait(10)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
                    host.sshd.wait()
        for name in self.namespaces:  # whatever a failed test left there goes too
            for pid in self.processes_in(name):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        self.namespaces = []

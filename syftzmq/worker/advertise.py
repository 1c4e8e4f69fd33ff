"""The address a worker tells others to reach it at: never a wildcard.

A worker bound to ``tcp://0.0.0.0:P`` (or ``*``, ``::``) used to advertise exactly that, and
``0.0.0.0`` is nobody's address: chains then failed with a false "worker was restarted" and
moves with a timeout. Without ``--advertise`` the worker now advertises this host's primary
address — the IPv4 address of the interface that carries the default route (read from
``/proc/net/route`` and the interface itself; nothing is sent on the network), else of the
first non-loopback interface that is up — or refuses to start, saying to pass ``--advertise``.
"""

from __future__ import annotations

import fcntl
import socket
import struct

WILDCARD_HOSTS = {"0.0.0.0", "*", "::", "[::]", "[*]"}
_SIOCGIFADDR = 0x8915


def advertised_address(endpoint: str, advertise: str | None) -> str:
    """``advertise`` if given; else ``endpoint`` (as bound), its wildcard host replaced by this
    host's primary address. Raises ``ValueError`` if no routable address can be found."""
    if advertise:
        return advertise
    if not endpoint.startswith("tcp://"):
        return endpoint
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if host not in WILDCARD_HOSTS:
        return endpoint
    primary = primary_address()
    if primary is None:
        raise ValueError(f"bound to {endpoint}, a wildcard that nobody can connect to, and no "
                         f"routable address of this host was found to advertise instead: pass "
                         f"--advertise tcp://HOST:{port} (the address other hosts reach this "
                         f"one at)")
    return f"tcp://{primary}:{port}"


def primary_address() -> str | None:
    """The IPv4 address of the default route's interface, else of the first interface that
    has a non-loopback one; ``None`` if there is none."""
    candidates = [_default_route_interface()] + [name for _, name in _interfaces()]
    for name in candidates:
        if name and name != "lo":
            address = _interface_address(name)
            if address and not address.startswith("127."):
                return address
    return None


def _default_route_interface() -> str | None:
    try:
        with open("/proc/net/route") as routes:
            next(routes, None)  # the header
            for line in routes:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":  # destination 0.0.0.0
                    return fields[0]
    except OSError:
        pass
    return None


def _interfaces() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:
        return []


def _interface_address(name: str) -> str | None:
    """The IPv4 address of interface ``name`` (an ioctl on a socket that sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            return socket.inet_ntoa(answer[20:24])
    except OSError:
        return None

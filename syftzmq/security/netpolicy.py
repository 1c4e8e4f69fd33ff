"""Which endpoints are private to this machine: a worker binds anything else only with a key."""

from __future__ import annotations

import ipaddress


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and TCP endpoints on a loopback address.

    ``tcp://*:5555``, ``tcp://0.0.0.0:5555`` and named interfaces are not loopback.
    """
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

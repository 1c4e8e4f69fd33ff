"""CURVE encryption and client authentication between hosts: one directory, one option.

A cluster's CURVE directory holds::

    server.key, server.key_secret    the workers' key pair (all workers of the cluster share it)
    client.key, client.key_secret    a client's key pair (give each client its own if you like)
    authorized/*.key                 public keys allowed to connect: the clients' and the server's

Workers (``syftzmq-worker --curve-dir DIR``) encrypt their ROUTER with the server key and run a
ZAP authenticator that admits only the public keys in ``authorized/``; they connect to each
other with the server key pair, which is authorized too. Clients
(``sy.Worker(..., curve_dir=DIR)``) need ``server.key`` and their own ``client.key_secret``.
Without a ZAP handler any client that knows the server's public key would get in.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def create_curve_dir(directory: str | os.PathLike, clients: tuple[str, ...] = ("client",)) -> Path:
    """Create the key pairs and the authorized list; secret files are mode 0600."""
    root = Path(directory)
    authorized = root / "authorized"
    authorized.mkdir(parents=True, exist_ok=True)
    for name in ("server", *clients):
        public, secret = zmq.auth.create_certificates(root, name)
        os.chmod(secret, 0o600)
        shutil.copy(public, authorized / Path(public).name)
    return root


def _keypair(path: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key")
    return public, secret


class CurveServer:
    """A worker's CURVE set-up: encrypted ROUTER, authorized clients only, encrypted peers."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.public, self.secret = _keypair(self.directory / "server.key_secret")
        self.authorized = self.directory / "authorized"
        if not self.authorized.is_dir():
            raise FileNotFoundError(f"{self.authorized}: no authorized public keys")
        self._auth: ThreadAuthenticator | None = None

    def serve(self, context: zmq.Context, router: zmq.Socket) -> None:
        """Start the ZAP authenticator and make ``router`` a CURVE server (before ``bind``)."""
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.authorized))
        router.curve_secretkey = self.secret
        router.curve_publickey = self.public
        router.curve_server = True

    def client(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (a connection to a peer worker) a CURVE client (before ``connect``)."""
        sock.curve_serverkey = self.public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


class CurveClient:
    """A client's CURVE keys: the workers' public key and its own key pair."""

    def __init__(self, directory: str | os.PathLike, name: str = "client") -> None:
        directory = Path(directory)
        self.server_public, _ = zmq.auth.load_certificate(directory / "server.key")
        self.public, self.secret = _keypair(directory / f"{name}.key_secret")

    def client(self, sock: zmq.Socket) -> None:
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

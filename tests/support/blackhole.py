"""A TCP relay that can be cut: the network path to a worker goes dark while both ends live.

``Relay(target_port)`` listens on a free loopback port and copies bytes both ways. After
:meth:`Relay.cut`, bytes are read and dropped: connections stay open and nothing is refused,
exactly like a link that stopped carrying packets (no RST, no FIN), so only an application
level liveness check can tell.
"""

from __future__ import annotations

import selectors
import socket
import threading


class Relay:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-relay")
        self._thread.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._cut.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                if key.data is None:
                    self._accept()
                else:
                    self._copy(key.fileobj, key.data)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(self._target)
        for sock in (client, upstream):
            sock.setblocking(False)
            self._sockets.append(sock)
        self._selector.register(client, selectors.EVENT_READ, upstream)
        self._selector.register(upstream, selectors.EVENT_READ, client)

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(1 << 16)
        except (BlockingIOError, ConnectionError):
            return
        if not data:
            self._selector.unregister(source)
            return
        if self._cut.is_set():
            return  # dropped on the floor: a dark link
        try:
            sink.setblocking(True)
            sink.sendall(data)
            sink.setblocking(False)
        except OSError:
            pass

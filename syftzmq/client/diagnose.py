"""Why a worker cannot be reached, said in words that name the cause and the fix.

Very different mistakes used to end the same way, "no answer within 5.0 s". Two sources tell
them apart:

- What ZeroMQ itself reports about the connection (a socket monitor on the handshake
  connection, :class:`HandshakeWatch`): never ``CONNECTED`` means nothing listens at the
  address; ``HANDSHAKE_FAILED_PROTOCOL`` with a mechanism mismatch means one side uses CURVE
  and the other does not; ``HANDSHAKE_FAILED_AUTH`` means the worker's authenticator refused
  this client's CURVE key; ``HANDSHAKE_FAILED_NO_DETAIL`` means the CURVE handshake broke, in
  practice because the server key the client holds is not this worker's. Handshake failures
  are final (ZeroMQ would retry forever), so they end the wait at once.
- What the worker says about a message it dropped at the envelope (a rejection notice, see
  :mod:`syftzmq.wire.notice`): a bad signature (another key), an unsigned message (the client
  has no key), a signed one to a worker without a key, another protocol version, a size over
  its limit (:func:`rejection_error`).

Only when the handshake succeeded and the worker still answers nothing is the answer a
timeout — and it then says so, with what that leaves (busy, frozen, or not a syftzmq worker).
"""

from __future__ import annotations

import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..errors import NotConnected

_WATCHED = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_MECHANISM_MISMATCH = 0x11000002  # ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH

_NEEDS_CURVE = ("the worker uses CURVE encryption and this client does not: pass curve_dir=DIR "
                "(holding the workers' server.key and your client.key_secret) or set "
                "SYFTZMQ_CURVE_DIR")
_NO_CURVE_THERE = ("this client uses CURVE encryption and the worker does not: drop curve_dir "
                   "(and SYFTZMQ_CURVE_DIR) here, or restart the worker with --curve-dir")
_KEY_HINT = ("give the client the cluster's key file (sy.Worker(..., key_file=PATH) or "
             "SYFTZMQ_KEY_FILE), the same file the workers were started with (--key-file)")
_REJECTION_FIXES = {
    "bad_signature": "this client's key is not the worker's: " + _KEY_HINT,
    "unsigned": "the worker requires signed messages and this client has no key: " + _KEY_HINT,
    "unexpected_signature": "the worker runs without a key and this client signs its messages: "
                            "drop key/key_file (and SYFTZMQ_KEY_FILE) here, or restart the "
                            "worker with --key-file",
    "wrong_protocol": "install the same syftzmq version on the client and every worker",
    "too_large": "send the data in parts, or start the worker with a larger "
                 "--max-message-bytes",
    "replayed": "a message was delivered twice (a replay): if nobody replays traffic on this "
                "network, report it",
}


def rejection_error(worker: str, address: str, notice: dict) -> NotConnected:
    """The error for a rejection notice received from the worker at ``address``."""
    reason = notice.get("reason", "")
    fix = _REJECTION_FIXES.get(reason, "check that client and worker use the same key, CURVE "
                                       "setting and syftzmq version")
    return NotConnected(worker, address, f"it rejected this client's message "
                                         f"({notice.get('detail') or reason}); {fix}")


class HandshakeWatch:
    """A ZeroMQ monitor on one connecting DEALER, read until its handshake is settled.

    Create it before the socket connects (events before the monitor exist are lost) — or,
    for a socket that already connected, right after: the first reconnect or handshake is
    still seen within the interval ZeroMQ retries at.
    """

    def __init__(self, sock: zmq.Socket, address: str, worker: str, curve: Any) -> None:
        self._address = address
        self._worker = worker
        self._curve = curve
        self._monitor = sock.get_monitor_socket(_WATCHED)
        self._sock = sock
        self.refused = 0
        self.connected = False
        self.settled = False

    def wait(self, deadline: float) -> None:
        """Return once the handshake succeeded; raise :class:`NotConnected` naming the cause
        when it failed, or at ``deadline`` (monotonic seconds) when no connection was made."""
        seconds = max(0.0, deadline - time.monotonic())
        while not self.settled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._no_connection(seconds)
            if self._monitor.poll(int(remaining * 1000) + 1):
                self._read(parse_monitor_message(self._monitor.recv_multipart()))

    def _read(self, event: dict) -> None:
        kind, value = event["event"], int(event["value"])
        if kind == zmq.EVENT_CONNECT_RETRIED:
            self.refused += 1
        elif kind == zmq.EVENT_CONNECTED:
            self.connected = True
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.settled = True
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MECHANISM_MISMATCH:
            raise self._error(_NEEDS_CURVE if self._curve is None else _NO_CURVE_THERE)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            raise self._error(f"the ZeroMQ handshake failed (protocol error {value:#x}): it "
                              f"is not a syftzmq worker, or speaks another ZeroMQ protocol")
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            raise self._error(
                f"the worker refused this client's CURVE key (ZAP status {value}): copy this "
                f"client's public key (client.key) into the worker's authorized/ directory, "
                f"or use a client key pair from the cluster's CURVE directory")
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            # The worker closed the handshake without saying why. A client without CURVE can
            # only fail that way against a CURVE worker (the mismatch was not read in time).
            raise self._error(
                "the ZeroMQ handshake failed, most likely because " + _NEEDS_CURVE
                if self._curve is None else
                "the CURVE handshake failed: the server key this client holds (server.key in "
                "its curve_dir) is not this worker's; use the CURVE directory of the cluster "
                "this worker belongs to (or, if the worker does not use CURVE, drop curve_dir)")

    def _no_connection(self, seconds: float) -> NotConnected:
        within = f"no connection within {seconds:.1f} s: "
        if self.connected:
            return self._error(within + "a connection was made but the ZeroMQ handshake did not "
                               "finish: the worker process is frozen (stopped, or swamped), or "
                               "what listens at that port is not a ZeroMQ service")
        if self.refused:
            return self._error(within + f"nothing is listening there (the connection was refused "
                               f"{self.refused} times): start the worker, or check the host "
                               f"and port (a worker prints its address in its SYFTZMQ-READY "
                               f"line)")
        return self._error(within + "no host answers at that address, or "
                           "a firewall drops the traffic: check the host and port, and that "
                           "the worker runs and is reachable from here")

    def _error(self, detail: str) -> NotConnected:
        return NotConnected(self._worker, self._address, detail)

    def close(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)


def no_answer(worker: str, address: str, seconds: float) -> NotConnected:
    """The error when the handshake succeeded but the worker answered nothing in time."""
    return NotConnected(worker, address,
                        f"connected, but no answer to the handshake within {seconds:.1f} s: the "
                        f"worker is busy or frozen (SIGSTOP), or what listens there is not a "
                        f"syftzmq worker. (A wrong key, a CURVE mismatch and an unknown client "
                        f"key are reported at once, not after a wait)")

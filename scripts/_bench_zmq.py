"""The raw pyzmq floor: a DEALER client and a ROUTER server in another process, nothing else.

No serialization, no signature, no object store: this is the least a round trip or a pipelined
burst can cost between two Python processes over ZeroMQ on this machine. Both ends use the same
transport syftzmq uses by default (``tcp://127.0.0.1``) and unlimited high-water marks, so no
message is dropped in a burst (a ROUTER silently drops past its HWM).

Server requests are ``[command, payload...]``:
``echo`` returns the payload; ``sink`` returns ``ok`` (one-way bulk); ``source <n>`` returns n
bytes.
"""

from __future__ import annotations

import os
import sys

import zmq

from _bench_common import (RAW_ZMQ, ROUND_TRIP, Config, Measurement, MiB, Results, Watchdog,
                           bulk_name, exit_with_parent, pipelined_name, read_line, spawn_helper,
                           stop_helper, timings)

READY = "ZMQ-ECHO-PORT"
TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------- server
def serve() -> None:
    """Entry point of the echo process; exits when its parent closes our stdin."""
    exit_with_parent()
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    for option in (zmq.SNDHWM, zmq.RCVHWM):
        router.setsockopt(option, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(READY, port, flush=True)
    sources: dict[int, bytes] = {}
    while True:
        identity, command, *payload = router.recv_multipart(copy=False)
        verb = command.bytes
        if verb == b"echo":
            router.send_multipart([identity, *payload], copy=False)
        elif verb == b"sink":
            router.send_multipart([identity, b"ok"])
        elif verb == b"source":
            size = int(payload[0].bytes)
            if size not in sources:
                sources[size] = os.urandom(size)
            router.send_multipart([identity, sources[size]], copy=False)


# ---------------------------------------------------------------------------------------- client
class EchoClient:
    """One DEALER to the echo process; every receive has a deadline."""

    def __init__(self, port: int) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        for option in (zmq.SNDHWM, zmq.RCVHWM):
            self.socket.setsockopt(option, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, int(TIMEOUT_S * 1000))
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    def request(self, *frames: bytes | memoryview) -> list:
        self.socket.send_multipart([*frames], copy=False)
        return self.socket.recv_multipart(copy=False)

    def burst(self, count: int, payload: bytes) -> None:
        """``count`` echo requests back to back, then drain the ``count`` replies."""
        for _ in range(count):
            self.socket.send_multipart([b"echo", payload])
        for _ in range(count):
            self.socket.recv_multipart(copy=False)

    def close(self) -> None:
        self.socket.close(linger=1000)
        self.context.term()


# ---------------------------------------------------------------------------------------- cases
def run(config: Config, cases: set[int], results: Results, watchdog: Watchdog) -> None:
    """Cases 1-3 against the echo process (bulk here is extra context, not a target)."""
    popen = spawn_helper("_bench_zmq", "serve", watchdog=watchdog)
    try:
        label, port = read_line(popen, TIMEOUT_S).split()
        if label != READY:
            raise RuntimeError(f"echo process said {label!r}")
        client = EchoClient(int(port))
        try:
            _run_cases(client, config, cases, results)
        finally:
            client.close()
    finally:
        stop_helper(popen, watchdog)


def _run_cases(client: EchoClient, config: Config, cases: set[int], results: Results) -> None:
    small = bytes(16)  # four float32s, the size of case 1's tensor
    if 1 in cases:
        results.add(Measurement(1, ROUND_TRIP, RAW_ZMQ,
                                timings(lambda: client.request(b"echo", small), config.reps_small),
                                note="16-byte echo, no serialization"))
    if 2 in cases:
        ops = config.pipelined_ops
        results.add(Measurement(2, pipelined_name(ops), RAW_ZMQ,
                                timings(lambda: client.burst(ops, small), config.reps_pipelined),
                                work=ops, work_unit="ops"))
    if 3 in cases:
        for mib in config.bulk_mib:
            data = memoryview(os.urandom(mib * MiB))
            size = str(len(data)).encode()
            send = timings(lambda: client.request(b"sink", data), config.reps_bulk)
            get = timings(lambda: client.request(b"source", size), config.reps_bulk)
            results.add(Measurement(3, bulk_name("send", mib), RAW_ZMQ, send, work=mib * MiB,
                                    work_unit="B"),
                        Measurement(3, bulk_name("get", mib), RAW_ZMQ, get, work=mib * MiB,
                                    work_unit="B"))

if __name__ == "__main__":
    sys.exit("run scripts/bench.py; this module is its raw-zmq helper")

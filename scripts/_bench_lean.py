"""The lean Python floor: the least plain code that does case 1's and case 2's job honestly.

What any Python implementation of a signed remote-tensor protocol must pay per message, over the
transport syftzmq uses (pyzmq DEALER -> ROUTER on ``tcp://127.0.0.1``, the server a separate OS
process), and nothing more:

* every message is ``[signature, header, *buffers]``; the signature is HMAC-SHA256 with a shared
  key over every other frame, checked (``hmac.compare_digest``) before anything is unpickled,
  and a replayed signature is refused (each header carries a fresh message number, so no two
  signatures repeat);
* the header is a pickled ``(message number, verb, arguments)``;
* the server holds tensors by id; ``op`` runs ``torch.<name>`` on stored tensors and numbers and
  either stores the result under a new id (fire-and-forget: no reply) or returns it; a returned
  tensor travels as raw bytes behind a small signed header ``(number, dtype, shape)``, which the
  client verifies and rebuilds with ``torch.frombuffer``.

It does not do what syftzmq also does (errors surfacing later, leases, backpressure, pointers,
shared memory), so it is a floor, not a rival: it is written plainly, not tuned either way.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import itertools
import os
import pickle
import secrets
import sys
from typing import Any, Callable, Iterator, Sequence

import torch
import zmq

from _bench_common import (LEAN, ROUND_TRIP, Config, Measurement, Results, Watchdog,
                           exit_with_parent, pipelined_name, read_line, spawn_helper, stop_helper,
                           timings)

READY = "LEAN-PORT"
KEY_VAR = "SYFTZMQ_BENCH_LEAN_KEY"  # the key travels in the environment, not on the command line
TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------- both ends
class Signer:
    """HMAC-SHA256 over every frame, and a window of recent signatures against replays."""

    def __init__(self, key: bytes, window: int = 1 << 16) -> None:
        self.key = key
        self.recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.window = window

    def sign(self, frames: Sequence[Any]) -> bytes:
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for frame in frames:
            mac.update(frame)
        return mac.digest()

    def pack(self, header: Any, *buffers: Any) -> list:
        body = [pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL), *buffers]
        return [self.sign(body), *body]

    def unpack(self, frames: Sequence[zmq.Frame]) -> tuple[Any, list[memoryview]]:
        """The header and buffers of a verified message; raises before unpickling a bad one."""
        if len(frames) < 2:
            raise ValueError(f"message of {len(frames)} frames; at least 2 expected")
        signature, *body = (frame.buffer for frame in frames)
        if not hmac.compare_digest(bytes(signature), self.sign(body)):
            raise ValueError("bad signature: message rejected")
        if bytes(signature) in self.recent:
            raise ValueError("replayed message rejected")
        self.recent[bytes(signature)] = None
        if len(self.recent) > self.window:
            self.recent.popitem(last=False)
        return pickle.loads(body[0]), body[1:]


def tensor_frames(number: int, tensor: torch.Tensor) -> tuple[tuple, memoryview]:
    """A tensor as a small header and its raw bytes (no copy for a contiguous tensor)."""
    tensor = tensor.detach().contiguous()
    header = (number, str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))
    return header, memoryview(tensor.numpy()).cast("B")


def rebuild(header: tuple, buffer: memoryview) -> torch.Tensor:
    """The tensor behind :func:`tensor_frames` (copied out of the received frame)."""
    _, dtype, shape = header
    return torch.frombuffer(bytearray(buffer), dtype=getattr(torch, dtype)).reshape(shape)


class Ref:
    """An argument naming a stored tensor rather than carrying a value."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id

    def __reduce__(self) -> tuple:
        return Ref, (self.id,)


# ---------------------------------------------------------------------------------------- server
def serve() -> None:
    """Entry point of the server process; exits when its parent closes our stdin."""
    exit_with_parent()
    signer = Signer(bytes.fromhex(os.environ[KEY_VAR]))
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    for option in (zmq.SNDHWM, zmq.RCVHWM):
        router.setsockopt(option, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(READY, port, flush=True)
    store: dict[int, torch.Tensor] = {}
    while True:
        identity, *frames = router.recv_multipart(copy=False)
        try:
            (number, verb, args), buffers = signer.unpack(frames)
        except Exception as exc:  # unauthenticated: nobody is owed an answer
            print(f"lean server: dropped a message: {exc}", file=sys.stderr, flush=True)
            continue
        if verb == "put":  # (id, dtype, shape) + raw bytes; answered, so the client knows
            store[args[0]] = rebuild((number, *args[1:]), buffers[0])
            router.send_multipart([identity, *signer.pack((number, "ok"))], copy=False)
        elif verb == "op":  # (torch function name, arguments, result id or None, ids to free)
            name, operands, result_id, free = args
            result = getattr(torch, name)(*(store[a.id] if isinstance(a, Ref) else a
                                            for a in operands))
            for dead in free:
                del store[dead]
            if result_id is not None:
                store[result_id] = result
            else:
                header, data = tensor_frames(number, result)
                router.send_multipart([identity, *signer.pack(header, data)], copy=False)
        elif verb == "get":  # (id,): the tensor comes back and leaves the store
            header, data = tensor_frames(number, store.pop(args[0]))
            router.send_multipart([identity, *signer.pack(header, data)], copy=False)


# ---------------------------------------------------------------------------------------- client
class LeanClient:
    """One DEALER to the server; every receive has a deadline."""

    def __init__(self, port: int, key: bytes) -> None:
        self.server_pid: int | None = None
        self.signer = Signer(key)
        self.numbers = itertools.count(1)
        self.ids = itertools.count(1)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        for option in (zmq.SNDHWM, zmq.RCVHWM):
            self.socket.setsockopt(option, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, int(TIMEOUT_S * 1000))
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    def _send(self, verb: str, *args: Any, buffers: Sequence[Any] = ()) -> int:
        number = next(self.numbers)
        self.socket.send_multipart(self.signer.pack((number, verb, args), *buffers), copy=False)
        return number

    def _reply(self, number: int) -> tuple[Any, list[memoryview]]:
        header, buffers = self.signer.unpack(self.socket.recv_multipart(copy=False))
        if header[0] != number:
            raise RuntimeError(f"reply to message {header[0]}, expected {number}")
        return header, buffers

    def put(self, tensor: torch.Tensor) -> Ref:
        ref = Ref(next(self.ids))
        (_, dtype, shape), data = tensor_frames(0, tensor)
        self._reply(self._send("put", ref.id, dtype, shape, buffers=[data]))
        return ref

    def op_stored(self, name: str, *operands: Any, free: Sequence[Ref] = ()) -> Ref:
        """Fire-and-forget: the result stays on the server under a new id."""
        ref = Ref(next(self.ids))
        self._send("op", name, operands, ref.id, tuple(r.id for r in free))
        return ref

    def op_returned(self, name: str, *operands: Any) -> torch.Tensor:
        """One round trip: the server runs the op and returns the result."""
        header, buffers = self._reply(self._send("op", name, operands, None, ()))
        return rebuild(header, buffers[0])

    def get(self, ref: Ref) -> torch.Tensor:
        header, buffers = self._reply(self._send("get", ref.id))
        return rebuild(header, buffers[0])

    def close(self) -> None:
        self.socket.close(linger=1000)
        self.context.term()


# ---------------------------------------------------------------------------------------- cases
def run(config: Config, cases: set[int], results: Results, watchdog: Watchdog) -> None:
    """Cases 1 and 2 against one server process."""
    if not cases & {1, 2}:
        return
    with serving(watchdog) as client:
        _run_cases(client, config, cases, results)


@contextlib.contextmanager
def serving(watchdog: Watchdog) -> Iterator[LeanClient]:
    """A lean server process and a client connected to it, both closed at the end."""
    key = secrets.token_bytes(32)
    popen = spawn_helper("_bench_lean", "serve", watchdog=watchdog, env={KEY_VAR: key.hex()})
    try:
        label, port = read_line(popen, TIMEOUT_S).split()
        if label != READY:
            raise RuntimeError(f"lean server said {label!r}")
        client = LeanClient(int(port), key)
        client.server_pid = popen.pid  # read by scripts/measure_cpu.py
        try:
            yield client
        finally:
            client.close()
    finally:
        stop_helper(popen, watchdog)


def round_trip(client: LeanClient) -> Callable[[], torch.Tensor]:
    """Case 1's job, ``(p + p).get()``, as a callable on a freshly stored tensor (checked once)."""
    stored = client.put(torch.ones(4))
    _check(torch.equal(client.op_returned("add", stored, stored), torch.full((4,), 2.0)), "p + p")
    return lambda: client.op_returned("add", stored, stored)


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"lean Python: wrong result: {what}")


def _run_cases(client: LeanClient, config: Config, cases: set[int], results: Results) -> None:
    stored = client.put(torch.ones(4))
    if 1 in cases:
        results.add(Measurement(1, ROUND_TRIP, LEAN, timings(round_trip(client), config.reps_small),
            note="one signed pickled op; the server adds and returns raw bytes; "
                 "verified and rebuilt"))
    if 2 in cases:
        ops = config.pipelined_ops

        def burst() -> torch.Tensor:
            value = client.op_stored("add", stored, 1.0)
            for _ in range(ops - 1):
                value = client.op_stored("add", value, 1.0, free=[value])
            return client.get(value)

        _check(torch.equal(burst(), torch.full((4,), 1.0 + ops)), "pipelined sum")
        results.add(Measurement(2, pipelined_name(ops), LEAN,
                                timings(burst, config.reps_pipelined), work=ops, work_unit="ops",
                                note="v = v + 1 as fire-and-forget signed ops (each frees the "
                                     "previous v), then one get"))


if __name__ == "__main__":
    sys.exit("run scripts/bench.py; this module is its lean-Python helper")

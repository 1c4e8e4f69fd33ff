"""One client of the load test: pipelines COMMANDS fire-and-forget commands into two workers.

Each worker holds one int64 value per client, driven through an affine map modulo a prime with
three non-commuting in-place operations per step (mul_, add_, remainder_): a lost, duplicated or
reordered command changes the result. Every 10,000 commands a clone is kept, to check
intermediate results too. Commands go through the session, exactly as pointer operations send
them (without the client-side shape inference, which would make the client the bottleneck).

    python load_client.py KEY_FILE ADDRESS_A ADDRESS_B SEED COMMANDS
"""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import syftzmq as sy  # noqa: E402
from syftzmq.core.ids import new_id  # noqa: E402
from syftzmq.core.meta import TensorMeta  # noqa: E402

PRIME = 1_000_003


def main() -> int:
    key_file, address_a, address_b, seed, commands = sys.argv[1:6]
    commands = int(commands)
    hook = sy.TorchHook(torch)
    workers = [sy.Worker(hook, id="load_a", address=address_a, key_file=key_file),
               sy.Worker(hook, id="load_b", address=address_b, key_file=key_file)]
    session = sy.default_session()
    rng = random.Random(int(seed))
    values = [rng.randrange(PRIME), rng.randrange(PRIME)]
    pointers = [torch.tensor([v]).send(w) for v, w in zip(values, workers)]
    meta = TensorMeta(torch.Size([1]), torch.int64)
    print("READY", flush=True)
    sys.stdin.readline()                                    # all clients start together

    snapshots = []                                          # (pointer, expected value)
    sent = 0
    start = time.monotonic()
    while sent < commands:
        which = rng.randrange(2)
        ref, pointer = workers[which].ref, pointers[which]
        if sent and sent % 10_000 == 0:
            result = new_id()
            session.command(ref, ("method", "clone"), (pointer,), {}, [result], [meta])
            snapshots.append((session.new_pointer(ref, result, meta=meta), values[which]))
            sent += 1
            continue
        a, b = rng.randrange(1, PRIME), rng.randrange(PRIME)
        for op, arg in (("mul_", a), ("add_", b), ("remainder_", PRIME)):
            if sent == commands or (sent and sent % 10_000 == 0):
                break
            session.command(ref, ("method", op), (pointer, arg), {}, [])
            sent += 1
            v = values[which]
            values[which] = v * arg if op == "mul_" else v + arg if op == "add_" else v % arg
    sending = time.monotonic() - start
    finals = [p.get().item() for p in pointers]
    got = [(s.get().item(), expected) for s, expected in snapshots]
    bad = [(g, e) for g, e in got if g != e]
    print(f"SENT {sent} in {sending:.1f}s; finals {finals}; expected {values}; "
          f"{len(got)} snapshots, {len(bad)} wrong", flush=True)
    return 0 if finals == values and not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())

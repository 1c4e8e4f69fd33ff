"""Shared pieces of ``scripts/bench.py``: run settings, samples, and process-level probes.

Every system's cases report :class:`Measurement` objects built from wall-clock samples taken with
``time.perf_counter``; the report module turns them into one table. The probes here read what the
operating system knows (a process's resident memory, the bytes that crossed this process's TCP
sockets), so no number depends on the library under test counting itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

MiB = 1 << 20
GiB = 1 << 30
SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Config:
    """How much work each case does; ``--quick`` trades repetitions and sizes for time."""

    quick: bool
    reps_small: int            # cases 1 and 5: sub-millisecond measurements
    reps_memcpy: int           # case 3's memcpy floor
    reps_pipelined: int
    pipelined_ops: int
    reps_bulk: int             # cases 3 and 4
    bulk_mib: tuple[int, ...]
    move_mib: int
    chain_depths: tuple[int, ...]
    fedavg_workers: tuple[int, ...]
    fedavg_reps: int
    memory_big_mib: int
    memory_big_tensors: int
    memory_small_tensors: int
    syftzmq_timeout_s: float   # the library's deadline for one observation (SYFTZMQ_TIMEOUT)
    deadline_s: float          # the whole run; a watchdog ends it (and its children) after this
    part6_images: int          # case 8: MNIST-shaped images in the epoch (split over 2 workers)
    part6_reps: int
    start_workers: int         # cases 9-10: workers started one after the other, kept idle
    idle_workers_target: int   # case 10: the fleet size the memory target is about


#: The spec's figures for cases 9 and 10.
START_TARGET_S = 0.3
IDLE_FLEET_TARGET_BYTES = 4 << 30


# QUICK stays under a minute on a busy two-core machine (most of it is spawning processes).
QUICK = Config(quick=True, reps_small=50, reps_memcpy=15, reps_pipelined=3, pipelined_ops=2_000, reps_bulk=3,
               bulk_mib=(1, 64), move_mib=64, chain_depths=(1, 2, 4), fedavg_workers=(2, 4),
               fedavg_reps=2, memory_big_mib=256, memory_big_tensors=64,
               memory_small_tensors=5_000, syftzmq_timeout_s=20, deadline_s=240,
               part6_images=1_280, part6_reps=1, start_workers=4, idle_workers_target=64)
FULL = Config(quick=False, reps_small=500, reps_memcpy=30, reps_pipelined=5, pipelined_ops=10_000, reps_bulk=5,
              bulk_mib=(1, 64, 256), move_mib=256, chain_depths=(1, 2, 4, 8),
              fedavg_workers=(2, 4, 8), fedavg_reps=5, memory_big_mib=1024,
              memory_big_tensors=256, memory_small_tensors=100_000, syftzmq_timeout_s=60,
              deadline_s=1800, part6_images=6_000, part6_reps=3, start_workers=64,
              idle_workers_target=64)


# ---------------------------------------------------------------------------------------- names
# Rows of different systems line up in the table by (case, name): every module names them here.
SYFT = "syftzmq"
SYFT_SEND = "syftzmq one-way send"  # case 4's yardstick for a move
SYFT_DERIVED = "syftzmq (derived)"   # computed from other syftzmq rows
SYFT_PLAN = "syftzmq Plan"           # case 6 with sy.func2plan; its ratio is Plan/local
RAW_ZMQ = "raw zmq"
TORCH = "torch.rpc"
MEMCPY = "memcpy"
LOCAL = "local sequential"
LEAN = "lean Python"                 # the least Python that does the job: signed, pickled
# The same floor measured in syftzmq's phase, blocks of the two alternating: a ratio of two
# phases minutes apart also measures how the machine's wake-up latency drifted meanwhile
LEAN_INTERLEAVED = "lean Python, interleaved"
RAY = "Ray"
RAY_ZERO_COPY = "Ray zero-copy"      # RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1
# table order in a case
SYSTEMS = (SYFT, SYFT_PLAN, SYFT_SEND, SYFT_DERIVED, LEAN_INTERLEAVED, LEAN, RAW_ZMQ, TORCH, RAY, RAY_ZERO_COPY,
           MEMCPY, LOCAL)
RUN_MARK_VAR = "SYFTZMQ_BENCH_RUN"  # inherited by every process a run starts, to find them
ROUND_TRIP = "(p + p).get(), 4 floats"


def pipelined_name(ops: int) -> str:
    return f"{ops} pipelined ops + get"


def bulk_name(direction: str, mib: int) -> str:
    return f"{direction} {mib} MiB"


def move_name(mib: int) -> str:
    return f"move {mib} MiB A->B"


def chain_name(depth: int) -> str:
    return f"(chain + 1).get(), depth {depth}"


def traffic_name(mib: int) -> str:
    return f"client TCP bytes, {move_name(mib)}"


HOP_GROWTH = "latency growth per extra hop"


def fedavg_name(workers: int) -> str:
    return f"FedAvg round, {workers} workers"


MEMORY_IDLE = "worker RSS, idle"


def memory_stored_name(total: int, tensors: int) -> str:
    return f"worker RSS, {size_name(total)} in {tensors} tensors"


def overhead_name(count: int) -> str:
    return f"per-object overhead, {count} x 4 floats"


def part6_name(images: int) -> str:
    return f"Part 6 epoch, {images} images, batch 64"


WORKER_START = "sy.VirtualWorker(...) until usable"


IDLE_USED = "after one small op each"  # the fleet reading case 10's target is judged on


def idle_pss_name(workers: int, extrapolated: bool = False, label: str = IDLE_USED) -> str:
    return (f"total PSS, {workers} idle workers" + (" (extrapolated)" if extrapolated else "")
            + f", {label}")


def size_name(nbytes: float) -> str:
    """1073741824 -> '1 GiB', 268435456 -> '256 MiB' (sizes in row names)."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


# ---------------------------------------------------------------------------------------- results
@dataclass
class Measurement:
    """Samples of one quantity for one system.

    ``samples`` are seconds for timings (``unit == "s"``) or plain values otherwise (bytes).
    ``work`` is what one timed sample accomplished (operations or bytes), so a rate can be
    shown next to the time; ``work_unit`` names it.
    """

    case: int
    name: str
    system: str
    samples: list[float]
    unit: str = "s"
    work: float | None = None
    work_unit: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        """Nearest-rank 90th percentile: the slow tail for timings."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]

    @property
    def rate(self) -> float | None:
        """Work per second at the median time, e.g. ops/s or bytes/s."""
        if self.work is None or self.unit != "s" or self.median <= 0:
            return None
        return self.work / self.median

    def to_json(self) -> dict:
        return {"case": self.case, "name": self.name, "system": self.system, "unit": self.unit,
                "median": self.median, "p90": self.p90, "n": len(self.samples),
                "samples": self.samples, "work": self.work, "work_unit": self.work_unit,
                "rate_per_s": self.rate, "note": self.note}


@dataclass
class Notice:
    """A case (or part of one) that could not run, with the reason shown to the reader."""

    case: int
    system: str
    text: str


@dataclass
class Results:
    """Everything one run produced, in the order it was measured."""

    measurements: list[Measurement] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def add(self, *items: Measurement) -> None:
        self.measurements.extend(items)

    def notice(self, case: int, system: str, text: str) -> None:
        self.notices.append(Notice(case, system, text))
        print(f"  case {case} [{system}]: {text}", flush=True)

    def find(self, case: int, name: str, system: str) -> Measurement | None:
        return next((m for m in self.measurements
                     if (m.case, m.name, m.system) == (case, name, system)), None)


# ---------------------------------------------------------------------------------------- timing
def sample(run_once: Callable[[], T], reps: int, warmup: int = 1) -> list[T]:
    """Call ``run_once`` ``warmup + reps`` times; keep what the last ``reps`` calls returned.

    ``run_once`` times itself (with :func:`stopwatch`) so untimed setup and cleanup can live in
    the same function as the timed part; it may return several numbers (say a duration and a
    byte count) as a tuple. The warm-up pays one-time costs (lazy connections,
    first-call compilation of shape inference, page faults) outside the samples.
    """
    for _ in range(warmup):
        run_once()
    return [run_once() for _ in range(reps)]


def timings(action: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    """Durations of ``reps`` calls of ``action`` (after ``warmup`` untimed ones)."""
    return sample(lambda: stopwatch(action), reps, warmup)


def stopwatch(action: Callable[[], object]) -> float:
    """Seconds ``action`` took, by ``time.perf_counter``.

    Whatever ``action`` returns is released only after the clock stopped, for every system
    alike: freeing a fetched 256 MiB result (unmapping its pages) is not part of fetching it.
    """
    start = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (the local, sequential references).

    On a busy two-core machine a parallel region waits for its second thread to be scheduled:
    a 1 MiB clone measured 8 ms instead of 50 us that way. A plain memcpy, or a process doing the
    work "sequentially", is single-threaded anyway.
    """
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------- probes
def cpu_count() -> int:
    """CPUs this process may run on (what the benchmark actually gets)."""
    return len(os.sched_getaffinity(0))


def proc_stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name, which may hold spaces and
    parentheses (so the line is split after its last ``)``): index 0 is the state, 1 the
    parent's pid, 11 and 12 user and system CPU in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def smaps_rollup(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` in bytes: ``Pss``, ``Rss``, ``Private_Dirty``, ...

    PSS (proportional set size) charges each shared page to the processes mapping it in equal
    parts, so summing it over processes counts every page once: what a fleet really uses.
    """
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return values


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (from ``/proc/<pid>/task/*/children``)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except OSError:
            continue  # exited meanwhile
    return found


def marked_processes(mark: str) -> list[int]:
    """Live processes (other than this one) whose environment carries this run's mark."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if mark.encode() not in environ.read():
                    continue
            with open(f"/proc/{entry}/status") as status:
                if "State:\tZ" not in status.read():
                    found.append(int(entry))
        except OSError:
            continue  # gone, or not ours to read
    return found


def command_line(pid: int) -> str:
    """The process's command line with spaces between arguments ('' if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def mem_available() -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked at offset 120, tcpi_bytes_received at 128.
_TCP_INFO_LEN = 136
_BYTES_ACKED_AT = 120


def _tcp_counters() -> dict[str, tuple[int, int]]:
    """(bytes sent and acknowledged, bytes received) of every TCP socket this process holds."""
    counters: dict[str, tuple[int, int]] = {}
    for fd_name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd_name}")
            if not link.startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(fd_name)))
        except OSError:
            continue  # closed meanwhile
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
                if len(info) >= _TCP_INFO_LEN:
                    counters[link] = struct.unpack_from("QQ", info, _BYTES_ACKED_AT)
        except OSError:
            pass
        finally:
            sock.close()  # closes our duplicate only
    return counters


class ClientTraffic:
    """Bytes that crossed this process's TCP sockets while the ``with`` block ran.

    The kernel's per-socket counters see every byte any thread of this process (ZeroMQ's I/O
    threads included) put on or took off a TCP connection, so the count does not rely on the
    library under test. It cannot see shared-memory transports, and a socket closed inside the
    block loses its count (``lost_sockets`` says so).
    """

    def __enter__(self) -> "ClientTraffic":
        self._before = _tcp_counters()
        self.sent = self.received = self.lost_sockets = 0
        return self

    def __exit__(self, *exc: object) -> None:
        after = _tcp_counters()
        for key, (sent, received) in after.items():
            old_sent, old_received = self._before.get(key, (0, 0))
            self.sent += sent - old_sent
            self.received += received - old_received
        self.lost_sockets = len(set(self._before) - set(after))

    @property
    def total(self) -> int:
        return self.sent + self.received


# ---------------------------------------------------------------------------------------- safety
class Watchdog:
    """The deadline of the whole run: past it, kill every adopted child and exit.

    Individual waits have their own deadlines; this is the backstop for a wait that has none we
    can set (``torch.distributed.rpc`` rendezvous and graceful shutdown can block indefinitely).
    syftzmq workers need no adoption: they exit when this process does (their lifeline pipe).
    """

    def __init__(self, seconds: float) -> None:
        self._pids: set[int] = set()
        self._timer = threading.Timer(seconds, self._fire, args=(seconds,))
        self._timer.daemon = True
        self._timer.start()

    def adopt(self, pid: int) -> None:
        self._pids.add(pid)

    def release(self, pid: int) -> None:
        self._pids.discard(pid)

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self, seconds: float) -> None:
        print(f"\nbench: the run exceeded its {seconds:.0f} s deadline; killing children "
              f"{sorted(self._pids)} and exiting", file=sys.stderr, flush=True)
        kill_all(self._pids)
        os._exit(3)


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each pid that still exists (only pids this process started are ever passed)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------- helpers
def spawn_helper(module: str, function: str, *args: str, watchdog: Watchdog,
                 ready_line: bool = True, env: dict[str, str] | None = None
                 ) -> subprocess.Popen:
    """Run ``module.function(*args)`` (a ``scripts/_bench_*`` module) in a new Python process.

    The child's stdin is a pipe only we write to: closing it (or our death) tells the child to
    exit, see :func:`exit_with_parent`. With ``ready_line`` its stdout is a pipe for
    :func:`read_line`; otherwise it shares ours (an unread pipe could fill and block it).
    ``env`` adds to (or overrides) this process's environment for the child.
    """
    code = (f"import sys; sys.path.insert(0, {SCRIPTS_DIR!r}); import {module}; "
            f"{module}.{function}(*sys.argv[1:])")
    popen = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE if ready_line else None, text=True,
                             env={**os.environ, **env} if env else None)
    watchdog.adopt(popen.pid)
    return popen


def read_line(popen: subprocess.Popen, timeout: float) -> str:
    """The child's next stdout line, waiting at most ``timeout`` seconds."""
    assert popen.stdout is not None  # spawn_helper always asks for a pipe
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"helper process {popen.pid} said nothing within {timeout:.0f} s")
    line = popen.stdout.readline()
    if not line:
        raise RuntimeError(f"helper process {popen.pid} exited with code {popen.wait(timeout)}")
    return line.strip()


def stop_helper(popen: subprocess.Popen, watchdog: Watchdog, timeout: float = 5.0) -> None:
    """Close the child's lifeline, wait up to ``timeout``, then kill it; always reaps it."""
    try:
        if popen.stdin is not None:
            popen.stdin.close()
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout)
    finally:
        if popen.stdout is not None:
            popen.stdout.close()
        watchdog.release(popen.pid)


def exit_with_parent() -> None:
    """In a helper: exit as soon as stdin reaches end-of-file (the parent closed it or died)."""
    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader's lock makes
        # the interpreter abort at a normal exit.
        while os.read(0, 4096):
            pass
        os._exit(0)
    threading.Thread(target=watch, name="lifeline", daemon=True).start()

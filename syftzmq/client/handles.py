"""Worker handles: what ``sy.VirtualWorker(...)``, ``sy.Worker(...)`` and ``sy.cluster(...)``
return, and this process's client session (:func:`default_session`), which they share."""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from ..core.messages import OBJECTS, message
from ..core.refs import WorkerRef
from ..security.curve import CurveClient
from ..security.keys import read_key
from ..tensor.mirrors import warm_up
from ..settings import SETTINGS, Settings
from .launcher import WorkerProcess
from .session import ClientSession
from .zygote import start_local_worker

log = logging.getLogger("syftzmq.client")

REPR_TIMEOUT = 0.25  # seconds repr(worker) may wait for the object count before showing "?"

_default: ClientSession | None = None


def default_session() -> ClientSession:
    """This process's session, created on first use: every handle and pointer of this
    process talks to its workers through it."""
    global _default
    if _default is None:
        _default = ClientSession(SETTINGS, make_handle=_handle_for)
    return _default


def _handle_for(session: ClientSession, ref: WorkerRef) -> Any:
    """The handle of a worker the session learned of from a pointer (no handshake)."""
    if ref.incarnation == session.ref.incarnation:
        return LocalWorker()
    return Worker._for_ref(session, ref)


def _key_from(key: bytes | str | None, key_file: str | os.PathLike | None,
              settings: Settings) -> bytes | None:
    if key is not None:
        return key.encode() if isinstance(key, str) else key
    key_file = key_file or settings.key_file
    return read_key(key_file) if key_file else None


class Worker:
    """A connection to a running worker process.

    ``Worker(hook, id="bob", address="tcp://10.0.0.5:5555", key_file="cluster.key")`` checks
    that the worker at ``address`` answers, within the session's deadline, as ``bob``.
    """

    process: WorkerProcess | None = None

    def __init__(self, hook: Any = None, id: str | None = None, address: str | None = None, *,
                 key: bytes | str | None = None, key_file: str | os.PathLike | None = None,
                 timeout: float | None = None, curve_dir: str | os.PathLike | None = None) -> None:
        if address is None:
            raise ValueError("Worker(...) needs the address of a running worker; "
                             "use VirtualWorker(hook, id=...) to start one")
        self._session: ClientSession = default_session()
        settings = self._session.settings
        curve_dir = curve_dir or settings.curve_dir
        curve = CurveClient(curve_dir) if curve_dir else None
        self._ref = self._session.connect(address, _key_from(key, key_file, settings), expected_id=id,
                                          timeout=timeout, curve=curve)
        self._session.register(self)

    @classmethod
    def _for_ref(cls, session: ClientSession, ref: WorkerRef) -> "Worker":
        """A handle for a worker learned from a pointer (no handshake)."""
        handle = cls.__new__(cls)
        handle._session = session
        handle._ref = ref
        return handle

    @property
    def session(self) -> ClientSession:
        """The client session commands to this worker go through."""
        return self._session

    @property
    def id(self) -> str:
        return self._ref.id

    @property
    def ref(self) -> WorkerRef:
        return self._ref

    @property
    def address(self) -> str | None:
        return self._ref.address

    @property
    def _objects(self) -> dict:
        """A snapshot of the worker's store: id -> tensor, or id -> pointer for stored pointers."""
        return self._session.objects(self._ref)

    def object_count(self, timeout: float | None = None) -> int:
        """How many objects the worker stores; only the number travels, not the objects."""
        return self._session.observe(self._ref, message(OBJECTS, count_only=True), timeout)

    def ping(self, timeout: float | None = None) -> dict:
        return self._session.ping(self._ref, timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to stop; a process this client started is also reaped."""
        try:
            self._session.shutdown(self._ref, timeout)
        finally:
            if self.process is not None:
                if not self.process.wait(timeout):
                    self.process.stop()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Worker, WorkerRef)):
            return self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        """``<Worker id:bob #objects:3>``; never waits long: an unreachable or busy worker
        shows ``#objects:?``."""
        try:
            count: Any = self.object_count(timeout=REPR_TIMEOUT)
        except Exception:  # a repr must not raise; why it shows "?" is in the debug log
            log.debug("repr(%s) could not count its objects", self.id, exc_info=True)
            count = "?"
        return f"<Worker id:{self.id} #objects:{count}>"


class VirtualWorker(Worker):
    """Starts a worker *process* on this machine and connects to it.

    The process ends when ``shutdown()`` is called or this client exits — also when this
    client is killed (see :mod:`syftzmq.client.launcher`). It is forked from this client's
    worker template, which has torch imported already (:mod:`syftzmq.client.zygote`;
    ``SYFTZMQ_ZYGOTE=0`` starts a fresh process instead). It runs torch on ``threads`` threads
    (default ``$SYFTZMQ_WORKER_THREADS``, else 1: local workers share this host's cores).
    """

    def __init__(self, hook: Any = None, id: str | None = None, *, timeout: float | None = None,
                 log_level: str | None = None, safe: bool = False,
                 lease_seconds: float | None = None, worker_args: Sequence[str] = (),
                 threads: int | None = None) -> None:
        if not id:
            raise ValueError("VirtualWorker needs an id, e.g. VirtualWorker(hook, id='bob')")
        session = default_session()
        key_file = session.cluster_key_file()
        extra = list(worker_args) + (["--safe"] if safe else [])
        if lease_seconds is not None:
            extra += ["--lease-seconds", str(lease_seconds)]
        process = start_local_worker(session, id, key_file=key_file, extra_args=extra,
                                     threads=threads, while_starting=warm_up,
                                     log_level=log_level or session.settings.spawned_log_level)
        session.adopt(process)
        self.process = process
        try:
            super().__init__(hook, id, process.endpoint, key_file=key_file, timeout=timeout)
        except BaseException:
            process.stop()
            raise


class LocalWorker:
    """``sy.local_worker``: the client itself (id ``me``). It holds no remote objects."""

    id = "me"
    # PySyft 0.2's flag (tutorial part 8 sets it to False so the client may store plan state).
    # Nothing depends on it here: a client never stores objects for workers.
    is_client_worker = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalWorker) or (isinstance(other, WorkerRef) and other.id == "me")

    def __hash__(self) -> int:
        return hash("me")

    @property
    def session(self) -> ClientSession:
        return default_session()

    @property
    def ref(self) -> WorkerRef:
        return default_session().ref

    @property
    def _objects(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return "<Worker id:me #objects:0>"

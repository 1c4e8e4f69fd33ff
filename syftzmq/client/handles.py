"""Worker handles: what ``sy.VirtualWorker(...)``, ``sy.Worker(...)`` and ``sy.cluster(...)``
return, and this process's client session (:func:`default_session`), which they share."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Iterable, Sequence

import torch

from ..core.messages import OBJECTS, message
from ..core.refs import WorkerRef
from ..security.curve import CurveClient
from ..security.keys import read_key
from ..tensor.mirrors import warm_up
from ..tensor.pointer import PointerTensor
from ..settings import SETTINGS, Settings
from .launcher import WorkerProcess
from .object_store import RemoteObjectStore, tensors_of
from .search import search_terms
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

    @property
    def _tensors(self) -> dict:
        """The tensors (and stored pointers) of a snapshot of the worker's store."""
        return tensors_of(self._objects)

    @property
    def object_store(self) -> RemoteObjectStore:
        """PySyft's ``worker.object_store`` (``_objects``, ``_tensors``, ``get_obj``), read
        from the worker process."""
        return RemoteObjectStore(self)

    def object_count(self, timeout: float | None = None) -> int:
        """How many objects the worker stores; only the number travels, not the objects."""
        return self._session.observe(self._ref, message(OBJECTS, count_only=True), timeout)

    def search(self, query: Any = ()) -> list[PointerTensor]:
        """Pointers to the worker's tensors matching ``query``: a tag (exact string), an object
        id, or a list/tuple of those that must all match; empty: every tagged tensor.

        The pointers do not delete their object when dropped (PySyft's choice): the object
        stays until ``.get()``, its owning pointer dies, or ``clear_objects()``. One to an
        object another process owns can compute but not ``.get()`` or ``.move()`` it.
        """
        return self._session.search(self._ref, search_terms(query))

    def clear_objects(self, return_self: bool = True) -> "Worker | None":
        """Drop every object *this client* owns on the worker; returns the worker.

        PySyft emptied the whole store. A worker here may serve several clients, and one must
        not drop another's data, so objects other processes own (another client's, or the
        target of a pointer this client sent on to another worker, which that worker owns)
        stay. Pointers to the dropped objects raise :class:`ObjectNotFoundError` when used.
        Like every observation, it raises an earlier command's error first (nothing is
        dropped then; call it again).
        """
        self._session.clear_objects(self._ref)
        return self if return_self else None

    def add_worker(self, worker: Any) -> "Worker":
        """Remember ``worker`` in ``_known_workers``; returns this worker.

        PySyft registered in-process workers with each other so that they could send each
        other messages. Workers here reach each other by the address every pointer carries, so
        nothing else is needed: this only keeps PySyft code (and ``_known_workers``) working.
        """
        worker_id = getattr(worker, "id", None)
        if worker_id is None:
            raise TypeError(f"add_worker() takes a worker, got {type(worker).__name__}")
        known = self._known()
        if worker_id in known and known[worker_id] is not worker:
            warnings.warn(f"Worker {worker_id} already exists. Replacing old worker which could "
                          f"cause unexpected behavior", stacklevel=2)
        known[worker_id] = worker
        return self

    def add_workers(self, workers: Iterable[Any]) -> "Worker":
        """:meth:`add_worker` for each; returns this worker."""
        for worker in workers:
            self.add_worker(worker)
        return self

    @property
    def _known_workers(self) -> dict:
        """The workers added with :meth:`add_worker`, by id."""
        return dict(self._known())

    def _known(self) -> dict:
        known = self.__dict__.get("_known_workers_by_id")
        if known is None:
            known = self.__dict__["_known_workers_by_id"] = {}
        return known

    def ping(self, timeout: float | None = None, vitals: bool = False) -> dict:
        """Who the worker is and what it has seen (counters, pid, uptime, memory). The worker
        answers once it has applied what this client sent it before (one connection keeps
        order) without waiting for what it forwarded down a chain, and cheaply whatever it
        holds; ``vitals=True`` adds ``bytes_stored``, the bytes of its tensors, which costs the
        worker a walk over its store (about 65 ms with 100,000 objects)."""
        return self._session.ping(self._ref, timeout, vitals)

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

    ``data=(t1, t2)`` (PySyft's keyword) stores each tensor on the worker at start, with its
    tags and description, so that ``worker.search(tag)`` finds it. The worker holds a copy
    (PySyft's in-process worker held the very tensor object) under a new id, owned by this
    client; nothing points at it until a search returns a pointer, and it stays until fetched,
    cleared, or this client goes away.
    """

    def __init__(self, hook: Any = None, id: str | None = None, data: Iterable[Any] | None = None,
                 *, timeout: float | None = None,
                 log_level: str | None = None, safe: bool = False,
                 lease_seconds: float | None = None, worker_args: Sequence[str] = (),
                 threads: int | None = None) -> None:
        if not id:
            raise ValueError("VirtualWorker needs an id, e.g. VirtualWorker(hook, id='bob')")
        data = _checked_data(data)
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
        for tensor in data:
            self._store_data(tensor)

    def _store_data(self, tensor: torch.Tensor) -> None:
        tags = getattr(tensor, "tags", None)
        description = getattr(tensor, "description", None)
        pointer = self._session.store_tensor(self._ref, tensor,
                                             tags=set(tags or ()), description=description)
        object.__setattr__(pointer, "_gc", False)  # the data outlives this pointer


def _checked_data(data: Iterable[Any] | None) -> list[torch.Tensor]:
    """``data=`` as a list of tensors, checked before a process is started for them."""
    if data is None:
        return []
    if isinstance(data, torch.Tensor):
        data = [data]
    items = list(data)
    for item in items:
        if isinstance(item, PointerTensor) or not isinstance(item, torch.Tensor):
            raise TypeError(f"data= takes local tensors to store on the new worker; got a "
                            f"{type(item).__name__} (send a pointer on with ptr.send(worker))")
    return items


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

    def clear_objects(self, return_self: bool = True) -> "LocalWorker | None":
        """Nothing to clear: the client itself never holds remote objects."""
        return self if return_self else None

    def __repr__(self) -> str:
        return "<Worker id:me #objects:0>"

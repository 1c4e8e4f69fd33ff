"""The worker process: ``syftzmq-worker`` / ``python -m syftzmq.worker``."""

from .server import WorkerServer

__all__ = ["WorkerServer"]

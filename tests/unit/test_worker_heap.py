"""syftzmq.worker.heap: the thresholds are set once, at the first backward, and not at all when
opted out (SYFTZMQ_WORKER_KEEP_HEAP=0)."""

from __future__ import annotations

from syftzmq.worker import heap


def test_only_the_first_backward_sets_the_thresholds(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(heap, "_decided", False)
    heap.on_backward()
    heap.on_backward()
    assert calls == [1]


def test_opted_out_never_sets_them(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(heap, "_decided", True)  # what SYFTZMQ_WORKER_KEEP_HEAP=0 leaves
    heap.on_backward()
    assert calls == []


def test_the_environment_variable_opts_out():
    from syftzmq.settings import Settings

    assert Settings.from_environ({"SYFTZMQ_WORKER_KEEP_HEAP": "0"}).worker_keep_heap is False
    assert Settings.from_environ({}).worker_keep_heap is True

"""Validate and mask big batches of events in worker processes.

Preparing an event (validation, masking, canonical encoding: `records.prepare`) is the
heaviest step between a kernel's report and the trail, and it is pure Python: in the server
process it runs on one core and competes for the GIL with the event loop and the writer
thread. `PreparePool` hands big batches (kernel ingest, spool backlogs) to spawned worker
processes, each with its own copy of the masking engine (same key, so the same pseudonyms),
while the writer thread chains and inserts the previous batch.

Small batches are prepared in-process (a worker round trip costs more than they do). Results
come back in submission order. A worker that fails or dies makes its part of the batch fall
back to in-process preparation, so a pool problem costs speed, never events. A worker whose
server is gone (killed outright, so it could not shut the pool down) ends within a second.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..events import EventValidationError
from .records import Prepared, prepare

log = logging.getLogger("jupyter_audit.pool")

#: batches smaller than this are prepared in-process
MIN_BATCH = 64
#: events per task sent to a worker
CHUNK = 500


def default_workers() -> int:
    """One worker per core, at most four (the writer thread's DuckDB insert is the next
    limit). Not one fewer: the server process mostly waits on DuckDB and the WAL, and on two
    cores two workers ingest ~20 % faster than one (benchmarks/bench_writer.py)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


_state: tuple | None = None  # (masker, max_field_bytes) in a worker process


def _init_worker(masker, max_field_bytes: int, parent: int | None = None) -> None:
    global _state
    # Ctrl-C in a terminal reaches the whole process group: the server shuts the pool down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state = (masker, max_field_bytes)
    if parent is not None:  # the server's pid, given by the server: it may be gone already
        threading.Thread(
            target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
        ).start()


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """A server killed outright (kill -9, OOM) cannot shut its pool down, and a worker
    waiting for work would wait forever: a worker ends once its parent is gone."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


def _per_event(events: list, values: list | None) -> list:
    return values if values is not None else [None] * len(events)


def _prepare_chunk(events: list, event_ids: list | None = None, origins=None) -> list:
    """In a worker: a Prepared's wire tuple, or the validation message (str), per event."""
    masker, cap = _state  # type: ignore[misc]  # a worker: `_init_worker` has set it
    out: list[tuple | str] = []
    ids, froms = _per_event(events, event_ids), _per_event(events, origins)
    for event, event_id, origin in zip(events, ids, froms, strict=True):
        try:
            out.append(prepare(event, masker, cap, event_id=event_id, origin=origin).to_wire())
        except EventValidationError as e:
            out.append(str(e))
    return out


class PreparePool:
    """`prepare_many` for one Writer; workers start on the first big batch."""

    def __init__(self, masker, max_field_bytes: int, workers: int | None = None):
        self.masker = masker
        self.max_field_bytes = max_field_bytes
        self.workers = default_workers() if workers is None else max(0, workers)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def prepare_many(
        self, events: list, event_ids: list | None = None, origins: list | None = None
    ) -> list[Prepared | EventValidationError]:
        """A Prepared or an EventValidationError for each event, in order. `event_ids`: ids
        the server chose ahead of time, `origins`: a collector's forwarded records' origins,
        each one per event (`records.prepare`)."""
        if event_ids is not None and len(event_ids) != len(events):
            raise ValueError("one event_id per event")
        if origins is not None and len(origins) != len(events):
            raise ValueError("one origin per event")
        if self.workers == 0 or len(events) < MIN_BATCH or self._closed:
            return self._inline(events, event_ids, origins)
        executor = self._get_executor()
        if executor is None:
            return self._inline(events, event_ids, origins)
        size = max(MIN_BATCH, min(CHUNK, -(-len(events) // self.workers)))
        starts = range(0, len(events), size)
        chunks = [
            (
                events[i : i + size],
                None if event_ids is None else event_ids[i : i + size],
                None if origins is None else origins[i : i + size],
            )
            for i in starts
        ]
        try:
            futures = [executor.submit(_prepare_chunk, *c) for c in chunks]
        except Exception as e:  # noqa: BLE001 - a broken or closing pool: prepare here
            self._broken(executor, e)
            return self._inline(events, event_ids, origins)
        out: list = []
        for chunk, fut in zip(chunks, futures, strict=True):
            try:
                results = fut.result()
            except BrokenProcessPool as e:  # a worker died: prepare here, start afresh later
                self._broken(executor, e)
                out.extend(self._inline(*chunk))
                continue
            except Exception:  # noqa: BLE001 - an error in prepare itself: report it as here
                out.extend(self._inline(*chunk))
                continue
            from_wire = Prepared.from_wire
            out.extend(EventValidationError(r) if type(r) is str else from_wire(r) for r in results)
        return out

    def _inline(
        self, events: list, event_ids: list | None = None, origins: list | None = None
    ) -> list[Prepared | EventValidationError]:
        out: list[Prepared | EventValidationError]
        masker, cap, out = self.masker, self.max_field_bytes, []
        ids, froms = _per_event(events, event_ids), _per_event(events, origins)
        for event, event_id, origin in zip(events, ids, froms, strict=True):
            try:
                out.append(prepare(event, masker, cap, event_id=event_id, origin=origin))
            except EventValidationError as e:
                out.append(e)
        return out

    def _get_executor(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._executor is None and not self._closed:
                try:
                    self._executor = ProcessPoolExecutor(
                        max_workers=self.workers,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_init_worker,
                        initargs=(self.masker, self.max_field_bytes, os.getpid()),
                    )
                except Exception as e:  # noqa: BLE001 - no processes here: stay in-process
                    log.warning("jupyter-audit: cannot start prepare workers (%s)", e)
                    self.workers = 0
            return self._executor

    def _broken(self, executor: ProcessPoolExecutor, error: Exception) -> None:
        with self._lock:
            if self._executor is not executor:
                return  # already replaced (reported once)
            self._executor = None
        log.warning("jupyter-audit: a prepare worker failed (%s); prepared in-process", error)
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

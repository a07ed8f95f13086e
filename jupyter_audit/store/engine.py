"""The write engine every trail store shares: one thread, a queue, rounds, acks, checkpoints.

`QueuedStore` implements the write side of `base.TrailStore` whatever the database: events are
validated and masked (`records.prepare`, big batches in `pool`), queued, taken off the queue
in rounds by one thread, sequenced and chained (`batch.seal`), stored in one transaction by
the backend's `_insert`, and only then acknowledged (`acks`); signed checkpoints are made on
the same thread (`checkpoints`). A backend (`writer.Writer` for DuckDB, `pg.PgStore` for
PostgreSQL) opens and closes its database, restores the chain's state at open and supplies
the three storage hooks (`_insert`, `_held_client_ids`, `_flush_storage`) and the read verbs.
No code path here UPDATEs or DELETEs a log row, and no other thread appends to the log.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from ..events import EventValidationError
from ..identity.snapshot import system_identity
from .acks import AppendResult, BatchFuture, fail, resolve, stored_results
from .base import TrailStore
from .batch import SealedBatch, seal
from .canonical import GENESIS_HASH
from .checkpoints import (
    append_checkpoint_line,
    archived_message,
    rotation_message,
    sign_checkpoint,
)
from .errors import TrailWriteError, loggable_error
from .merkle import MerkleFrontier
from .pool import PreparePool
from .records import Prepared, prepare
from .signing import SigningKey, public_b64

log = logging.getLogger("jupyter_audit.writer")

_STOP = object()
_CHECKPOINT = object()
_INDEX = object()


class _Later(NamedTuple):
    """Raw events the writer thread prepares itself, just before committing them
    (`Writer.submit_later`)."""

    events: list
    event_ids: list
    fallback: Callable[[dict, Exception], dict] | None  # (event, error) -> event


class _Exclusive(NamedTuple):
    """A function the writer thread runs between two stored batches (`run_exclusive`)."""

    fn: Callable[[], object]


BUSY_BATCH = 500  # a round that took this many events means sustained load...
BUSY_WAIT = 0.05  # ...and the next one waits up to this long to fill a bigger batch


class QueuedStore(TrailStore):
    """The write side of a trail store (see the module docstring): a backend subclasses it,
    opens its database and starts `_run` on `self._thread`."""

    def __init__(
        self,
        masker,
        signing_key: SigningKey,
        *,
        checkpoint_every: int = 10_000,
        checkpoint_interval: float = 60.0,
        checkpoint_path: str | os.PathLike,
        checkpoint_mirror: str | os.PathLike | None = None,
        max_field_bytes: int = 1 << 20,
        max_batch: int = 5000,
        batch_wait: float = 0.002,
        verify_on_open: bool = True,
        pubkey_path: str | os.PathLike | None = None,
        prepare_workers: int | None = None,
    ):
        self.masker = masker
        self.key = signing_key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_path = Path(checkpoint_path)
        self.checkpoint_mirror = Path(checkpoint_mirror) if checkpoint_mirror else None
        self.max_field_bytes = max_field_bytes
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.verify_on_open = verify_on_open
        self.pubkey_path = pubkey_path
        self.pool = PreparePool(masker, max_field_bytes, prepare_workers)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # held while a batch is stored, and while a live verify opens its read snapshot
        self._store_lock = threading.Lock()
        self._known_identities: set[str] = set()
        self._known_pairs: set[tuple[str, str]] = set()  # (trace, user) rows already stored
        self._known_traces: set[str] = set()  # trace ids with a row in `traces`
        self._known_notebooks: set[tuple[str, str]] = set()  # (trace, name) rows stored
        self._system_identity = system_identity()
        self.integrity = None  # VerifyResult of the check run at open
        self.trail_id = ""
        self.seq = 0
        self.last_hash = GENESIS_HASH
        self.frontier = MerkleFrontier()
        self._last_time_us = 0
        self._since_checkpoint = 0
        self._last_checkpoint_at = time.monotonic()
        self._closed = False
        self._last_count = 0  # events taken in the last round (load indicator)
        self._stored_ids: dict[str, int] = {}

    # ------------------------------------------------------------------ the thread
    def _start(self, where: str) -> None:
        """Start the writer thread, then record the check run at open (`integrity`, when
        there was one) as a `trail.integrity` event; `where` names the trail in the log."""
        self._thread = threading.Thread(target=self._run, name="jupyter-audit-writer", daemon=True)
        self._thread.start()
        if self.integrity is None:
            return
        r = self.integrity
        self.append(
            {
                "kind": "trail.integrity",
                "identity": self._system_identity,
                "payload": {
                    "ok": r.ok,
                    "first_bad_seq": r.first_bad_seq,
                    "problem": r.problem,
                    "detail": r.detail,
                    "events_checked": r.events,
                },
            }
        )
        if not r.ok:
            log.error(
                "audit trail %s is damaged: record #%s: %s", where, r.first_bad_seq, r.problem
            )

    def _stop(self, checkpoint: bool) -> None:
        """Sign a last checkpoint (unless told not to), store what is queued, end the
        thread."""
        if checkpoint:
            try:
                self.checkpoint().result(timeout=60)
            except Exception as e:  # noqa: BLE001 - closing must go on
                log.warning("final checkpoint failed: %s", e)
        self.pool.close()
        self._queue.put((_STOP, None))
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._closed = True

    # ------------------------------------------------------------------ the backend's hooks
    def _insert(self, batch: SealedBatch, optimistic: bool) -> bool:
        """Store `batch` and the new high-water mark in one transaction (raise, with nothing
        stored, if that fails). False, with nothing stored, when `optimistic` and the trail
        already holds one of its client ids. Called on the writer thread, under
        `_store_lock`."""
        raise NotImplementedError

    def _held_client_ids(self, ids: list[str]) -> dict[str, int]:
        """Which of the client-chosen event ids `ids` the trail holds, with their seq."""
        raise NotImplementedError

    def _flush_storage(self) -> None:
        """After a signed checkpoint at a quiet moment: fold the database's log into its
        files, where the backend has such a step (DuckDB's CHECKPOINT)."""

    def _index(self, fut: Future | None) -> None:
        """Derived work done between batches when the queue is idle (DuckDB: the search
        index); `fut`: a caller waiting for it to be done."""
        _settle(fut, True)

    def _catch_up(self) -> None:
        """Ask for `_index` once the queue is idle."""
        self._queue.put((_INDEX, None))

    # ------------------------------------------------------------------ submitting
    def prepare(
        self, event: dict, *, event_id: str | None = None, origin: dict | None = None
    ) -> Prepared:
        """Validate and mask an event now (raises EventValidationError); `event_id`: an id
        the server chose for it ahead of time; `origin`: a forwarded record's (both as
        `records.prepare`)."""
        return prepare(event, self.masker, self.max_field_bytes, event_id=event_id, origin=origin)

    def prepare_many(
        self, events: list, event_ids: list | None = None, origins: list | None = None
    ) -> list[Prepared | EventValidationError]:
        """Validate and mask a batch; big batches in worker processes (`PreparePool`). A
        Prepared or the EventValidationError for each event, in order; `event_ids` and
        `origins` as for `prepare`, one per event."""
        return self.pool.prepare_many(events, event_ids, origins)

    def submit(self, event: dict | Prepared) -> Future:
        """Queue one event; the future resolves to an AppendResult after commit."""
        if self._closed or self._thread is None:
            raise TrailWriteError("the trail writer is not running")
        p = event if isinstance(event, Prepared) else self.prepare(event)
        fut: Future = Future()
        self._queue.put((p, fut))
        return fut

    def submit_batch(self, events) -> Future:
        """Queue several events (validated and masked now, all or none); the future resolves
        to their AppendResults, in order, after the commit that holds the last of them."""
        if self._closed or self._thread is None:
            raise TrailWriteError("the trail writer is not running")
        prepared = list(events)
        raw = [i for i, e in enumerate(prepared) if type(e) is not Prepared]
        if raw:
            done = self.prepare_many([prepared[i] for i in raw])
            for i, p in zip(raw, done, strict=True):
                if not isinstance(p, Prepared):
                    raise p
                prepared[i] = p
        fut = BatchFuture(prepared)
        if not prepared:
            fut.set_result([])
            return fut
        self._queue.put((prepared, fut))
        return fut

    def submit_later(self, events: list, event_ids: list, fallback=None) -> Future:
        """Queue raw events that the writer thread validates and masks itself, in one batch
        just before it commits them: for a caller that must not spend the time (the gateway,
        between a cell and the next). `event_ids`: the ids chosen for them (`prepare`). An
        event that fails validation is replaced by `fallback(event, error)` when given;
        one that still fails is logged, by its kind and the error, and not stored. The
        future resolves to the AppendResults of the events stored, in order."""
        if self._closed or self._thread is None:
            raise TrailWriteError("the trail writer is not running")
        if len(event_ids) != len(events):
            raise ValueError("one event_id per event")
        fut = BatchFuture()  # its events: once the writer thread has prepared them
        if not events:
            fut.set_result([])
            return fut
        self._queue.put((_Later(list(events), list(event_ids), fallback), fut))
        return fut

    def _prepare_later(self, later: _Later, fut: BatchFuture) -> list[Prepared]:
        """On the writer thread: a `submit_later` batch, prepared (see there)."""
        prepared = []
        results: Sequence[Prepared | Exception]
        try:
            results = self.prepare_many(later.events, later.event_ids)
        except Exception as e:  # noqa: BLE001 - not a validation error: a bug somewhere
            log.error(
                "jupyter-audit: batch not prepared (%s); preparing its events one by one",
                loggable_error(e),
            )
            one_by_one: list[Prepared | Exception] = []
            for event, event_id in zip(later.events, later.event_ids, strict=True):
                try:
                    one_by_one.append(self.prepare(event, event_id=event_id))
                except Exception as err:  # noqa: BLE001 - the fallback takes it from here
                    one_by_one.append(err)
            results = one_by_one
        for event, event_id, p in zip(later.events, later.event_ids, results, strict=True):
            if not isinstance(p, Prepared) and later.fallback is not None:
                try:
                    p = self.prepare(later.fallback(event, p), event_id=event_id)
                except Exception as e:  # noqa: BLE001 - reported below, as the event's error
                    p = e
            if isinstance(p, Prepared):
                prepared.append(p)
            else:
                why = loggable_error(p)
                log.error("jupyter-audit: %s event not stored: %s", event.get("kind"), why)
        fut.prepared = prepared
        if not prepared:
            fut.set_result([])
        return prepared

    def checkpoint(self) -> Future:
        """Ask for a signed checkpoint now; resolves to the checkpoint body (or None)."""
        fut: Future = Future()
        self._queue.put((_CHECKPOINT, fut))
        return fut

    def run_exclusive(self, fn: Callable[[], object]) -> Future:
        """Run `fn()` on the writer thread after everything submitted before is stored, with
        nothing appended meanwhile; the future resolves to what it returns (or raises)."""
        if self._closed or self._thread is None:
            raise TrailWriteError("the trail writer is not running")
        fut: Future = Future()
        self._queue.put((_Exclusive(fn), fut))
        return fut

    def flush(self, timeout: float = 60) -> None:
        """Wait until everything submitted before this call is committed."""
        fut: Future = Future()
        self._queue.put((None, fut))
        fut.result(timeout=timeout)

    def rotate_key(self, new_key: SigningKey) -> AppendResult:
        """The old key signs a `key.rotated` event naming the new public key."""
        new_pub = public_b64(new_key.public)
        sig = self.key.sign(rotation_message(self.trail_id, new_pub, new_key.key_id))
        payload = {
            "old_key_id": self.key.key_id,
            "new_key_id": new_key.key_id,
            "new_public_key": new_pub,
            "trail_id": self.trail_id,
            "signature": sig,
        }
        res = self.submit(self._signed("key.rotated", payload)).result(timeout=60)
        self.key = new_key
        return res

    def record_archived(self, payload: dict, identity: dict) -> AppendResult:
        """The current key signs a `trail.archived` payload (`archived_message`)."""
        payload = {**payload, "trail_id": self.trail_id, "key_id": self.key.key_id}
        payload["signature"] = self.key.sign(archived_message(payload))
        return self.submit(self._signed("trail.archived", payload, identity)).result(timeout=60)

    def _signed(self, kind: str, payload: dict, identity: dict | None = None) -> Prepared:
        """A system event whose payload is signed data: validated, then stored verbatim
        (keys and signatures must not be masked into pseudonyms)."""
        p = prepare(
            {"kind": kind, "identity": identity or self._system_identity, "payload": payload},
            self.masker,
            self.max_field_bytes,
        )
        p.set_payload(dict(payload))
        return p

    # ------------------------------------------------------------------ reading
    def checkpoint_files(self) -> list[Path]:
        """The checkpoint files this writer appends to."""
        return [self.checkpoint_path] + ([self.checkpoint_mirror] if self.checkpoint_mirror else [])

    def _run(self) -> None:
        q = self._queue
        while True:
            timeout = None
            if self.checkpoint_interval:
                elapsed = time.monotonic() - self._last_checkpoint_at
                timeout = max(0.05, self.checkpoint_interval - elapsed)
            try:
                first = q.get(timeout=timeout)
            except queue.Empty:
                self._maybe_checkpoint(force_time=True)
                self._index(None)  # idle: index what came in since
                continue
            items = [first]
            count = _count(first)
            # under sustained load, gather bigger transactions: each one costs a WAL sync
            # and a traces upsert (several ms) whatever its size
            wait = self.batch_wait if self._last_count < BUSY_BATCH else BUSY_WAIT
            deadline = time.monotonic() + wait
            while count < self.max_batch:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.0005)
                    continue
                items.append(item)
                count += _count(item)
            events: list[tuple[Prepared, Future]] = []
            stop = False
            for obj, fut in items:
                if type(obj) is list:  # submit_batch: one queue item for the whole batch
                    events.extend(zip(obj, repeat(fut)))
                elif type(obj) is _Later:
                    try:
                        events.extend(zip(self._prepare_later(obj, fut), repeat(fut)))
                    except Exception as e:  # noqa: BLE001 - a bug: logged, the caller told
                        why = loggable_error(e)
                        n = len(obj.events)
                        log.error("jupyter-audit: %d event(s) not prepared: %s", n, why)
                        fut.set_exception(TrailWriteError(f"events not prepared: {why}"))
                elif obj is _STOP:
                    stop = True
                elif obj is _INDEX:
                    if events:
                        self._commit(events)
                        events = []
                    self._index(fut)
                elif type(obj) is _Exclusive:
                    if events:
                        self._commit(events)
                        events = []
                    try:
                        fut.set_result(obj.fn())
                    except Exception as e:  # noqa: BLE001 - the caller gets it
                        fut.set_exception(e)
                elif obj is _CHECKPOINT or obj is None:
                    if events:
                        self._commit(events)
                        events = []
                    if obj is _CHECKPOINT:
                        try:
                            body = self._checkpoint()
                        except Exception as e:  # noqa: BLE001
                            _settle(fut, error=e)
                        else:
                            _settle(fut, body)
                    else:
                        _settle(fut, None)
                else:
                    events.append((obj, fut))
            if events:
                self._commit(events)
            self._last_count = count
            if stop:
                return
            self._maybe_checkpoint()

    def _maybe_checkpoint(self, force_time: bool = False) -> None:
        if not self._since_checkpoint:
            return
        due_count = self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every
        due_time = (
            self.checkpoint_interval
            and time.monotonic() - self._last_checkpoint_at >= self.checkpoint_interval
        )
        if due_count or due_time:
            try:
                # under load the WAL is left to DuckDB's own threshold (CONNECTION_CONFIG):
                # a CHECKPOINT every few thousand events rewrites the table's open row group
                # each time and costs more than the inserts themselves
                self._checkpoint(flush_wal=bool(due_time))
            except Exception as e:  # noqa: BLE001 - retried at the next occasion
                log.error("signed checkpoint failed: %s", e)

    def _checkpoint(self, flush_wal: bool = True) -> dict | None:
        """Sign and record a checkpoint; `flush_wal` also folds the WAL into the file."""
        if self.seq == 0:
            return None
        body = sign_checkpoint(
            self.key,
            trail_id=self.trail_id,
            seq=self.seq,
            last_hash=self.last_hash,
            merkle_root=self.frontier.root(),
            tree_size=self.frontier.size,
            time_us=time.time_ns() // 1000,
        )
        for path in (self.checkpoint_path, self.checkpoint_mirror):
            if path is not None:
                try:
                    append_checkpoint_line(path, body)
                except OSError as e:
                    log.error("cannot append checkpoint to %s: %s", path, e)
        fut: Future = Future()
        self._commit([(self._signed("checkpoint", body), fut)])
        fut.result()
        self._since_checkpoint = 0
        self._last_checkpoint_at = time.monotonic()
        if flush_wal:
            try:
                self._flush_storage()
            except Exception as e:  # noqa: BLE001
                log.warning("database checkpoint failed: %s", e)
        return body

    def _drop_duplicates(self, items: list[tuple[Prepared, Future]], *, held: bool):
        """(items to store, [(p, fut, seq of the first record or None)] for the rest): a
        client id repeated within `items`, and with `held` one the trail already holds (a
        query), is not stored again."""
        ids = [p.event_id for p, _ in items if p.client_event]
        if not ids:
            return items, []
        stored = self._held_client_ids(ids) if held else {}
        keep, dupes, seen = [], [], set()
        for p, fut in items:
            if p.client_event:
                if p.event_id in stored or p.event_id in seen:
                    dupes.append((p, fut, stored.get(p.event_id)))
                    continue
                seen.add(p.event_id)
            keep.append((p, fut))
        return keep, dupes

    def _commit(self, items: list[tuple[Prepared, Future]]) -> None:
        """Exactly once for client-supplied event ids (kernels retry and re-send spools): an
        id the trail already holds is acknowledged with its first record, not stored. Held
        ids are rare, so a batch is first committed without looking them up (a query costs
        about a millisecond): the `client_events` primary key refuses a held one, and the
        batch is then committed without the held ids."""
        items, repeats = self._drop_duplicates(items, held=False)
        self._stored_ids = {}
        held: list = []
        if items and not self._commit_new(items, optimistic=True):
            try:
                items, held = self._drop_duplicates(items, held=True)
            except Exception as e:  # noqa: BLE001 - nothing acknowledged
                fail((fut for _p, fut in items), TrailWriteError(f"trail write failed: {e}"))
                items = []
            if items:
                self._commit_new(items)
        # an id repeated within this round shares the outcome of its first copy
        first = {p.event_id: seq for p, _fut, seq in held}
        first.update(self._stored_ids)
        for p, fut, seq in held + repeats:
            seq = first.get(p.event_id) if seq is None else seq
            if seq is None:  # its first copy was not stored
                fail((fut,), TrailWriteError("trail write failed: event not stored"))
                continue
            resolve(fut, [p], [AppendResult(seq, "", p.event_id, duplicate=True)])

    def _commit_new(self, items: list[tuple[Prepared, Future]], optimistic=False) -> bool:
        """Sequence, chain and store `items` in one transaction, then resolve their futures
        (with the error if it fails). False, with nothing stored or resolved, when
        `optimistic` and the trail already holds one of their client ids (see `_commit`)."""
        ps = [p for p, _fut in items]
        futs = [fut for _p, fut in items]
        batch = seal(
            ps,
            seq=self.seq,
            last_hash=self.last_hash,
            frontier=self.frontier,
            time_us=max(self._last_time_us, time.time_ns() // 1000),
            known_identities=self._known_identities,
            known_pairs=self._known_pairs,
            known_notebooks=self._known_notebooks,
        )
        n = len(ps)
        try:
            with self._store_lock:
                stored = self._insert(batch, optimistic)
            if not stored:
                return False
        except Exception as e:  # noqa: BLE001 - every failure must un-acknowledge the batch
            err = TrailWriteError(f"trail write failed, {n} event(s) not stored: {e}")
            log.error("%s", err)
            fail(futs, err)
            return True
        self.seq = batch.last_seq
        self.last_hash = batch.last_hash
        self._stored_ids = batch.client_ids  # client ids stored by this commit (`_commit`)
        self.frontier = batch.frontier
        self._last_time_us = batch.time_us
        self._since_checkpoint += n
        self._known_identities.update(batch.identities)
        if len(self._known_traces) > 100_000:
            self._known_traces.clear()  # only an optimisation, like the pairs below
        self._known_traces.update(batch.traces)
        self._known_pairs.update(batch.users)
        if len(self._known_notebooks) > 100_000:
            self._known_notebooks.clear()  # only an optimisation: the insert ignores duplicates
        self._known_notebooks.update((t, name) for t, name, _first in batch.notebooks)
        if len(self._known_pairs) > 100_000:
            self._known_pairs.clear()  # only an optimisation: the insert ignores duplicates
        # consecutive events of one future (a submit_batch) are resolved together
        first, hashes = batch.first_seq, batch.hashes
        i = 0
        while i < n:
            fut = futs[i]
            j = i + 1
            while j < n and futs[j] is fut:
                j += 1
            resolve(fut, ps[i:j], stored_results(first + i, hashes[i:j], ps[i:j]))
            i = j
        return True


def _settle(fut: Future | None, result=None, error: BaseException | None = None) -> None:
    """Resolve `fut` unless its caller gave up on it (cancelled): the writer thread must
    never stop over a future nobody waits for."""
    if fut is None or not fut.set_running_or_notify_cancel():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _count(item: tuple) -> int:
    """Events in one queue item (what was queued, its future)."""
    obj, _fut = item
    t = type(obj)
    return len(obj) if t is list else len(obj.events) if t is _Later else 1

"""The Writer: the only code that appends to a DuckDB trail (one per server).

The DuckDB implementation of `base.TrailStore`, on the shared write engine
(`engine.QueuedStore`: validation and masking, one thread taking submissions off a queue in
rounds, acks, signed checkpoints). Here: the file, its migrations and verification at open,
each round inserted column-wise in one transaction (`batch.insert`), the search index caught
up between rounds, compaction, and the DuckDB read verbs. A submission is acknowledged (its
future resolved) only after that transaction commits; a failed commit acknowledges nothing
and leaves the chain where it was. No code path here UPDATEs or DELETEs a log row, and no
other thread appends to the log. Reads go through `queries`, `verify` and `trail` on a
cursor of their own.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from datetime import UTC
from pathlib import Path

import duckdb
import pyarrow as pa

from . import compact, queries, search, trail
from .batch import SealedBatch, held_client_ids, insert
from .canonical import GENESIS_HASH
from .chain import leaves
from .checkpoints import default_checkpoint_path, read_checkpoint_files
from .engine import _INDEX, QueuedStore, _settle
from .errors import TrailError, loggable_error
from .merkle import MerkleFrontier
from .migrate import open_writable
from .reads import CursorReads
from .schema import DERIVED_VERSION, connect, read_meta
from .signing import SigningKey
from .verify import SNAPSHOT_CURSORS, Snapshot, VerifyResult, verify_connection

log = logging.getLogger("jupyter_audit.writer")


class Writer(CursorReads, QueuedStore):
    """The DuckDB trail store: one file, one writer thread (see the module docstring and
    `base.TrailStore` for the verbs and what they guarantee)."""

    def __init__(
        self,
        db_path: str | os.PathLike,
        masker,
        signing_key: SigningKey,
        *,
        checkpoint_every: int = 10_000,
        checkpoint_interval: float = 60.0,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_mirror: str | os.PathLike | None = None,
        max_field_bytes: int = 1 << 20,
        max_batch: int = 5000,
        batch_wait: float = 0.002,
        verify_on_open: bool = True,
        pubkey_path: str | os.PathLike | None = None,
        prepare_workers: int | None = None,
    ):
        self.db_path = Path(db_path)
        super().__init__(
            masker,
            signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            checkpoint_path=checkpoint_path or default_checkpoint_path(self.db_path),
            checkpoint_mirror=checkpoint_mirror,
            max_field_bytes=max_field_bytes,
            max_batch=max_batch,
            batch_wait=batch_wait,
            verify_on_open=verify_on_open,
            pubkey_path=pubkey_path,
            prepare_workers=prepare_workers,
        )
        self._con: duckdb.DuckDBPyConnection = None  # type: ignore[assignment]  # open() sets it

    # ------------------------------------------------------------------ lifecycle
    def open(self):
        """Open (creating if needed) the trail, verify it, and start the writer thread."""
        compact.discard_fresh(self.db_path)  # a compaction killed half-way: the trail is whole
        migrated: list = []  # what a migration found that the new format no longer holds
        self._con, meta = open_writable(self.db_path, migrated)
        # derived tables of another shape or counting rules are recounted from the log (the
        # log and its format untouched), after the verification below has compared what
        # they hold with the log: an edit made before is reported, not washed away
        stale = meta.get("derived_version") != str(DERIVED_VERSION)
        self.trail_id = meta["trail_id"]
        self._restore_state(meta)
        for (iid,) in self._con.execute("SELECT identity_id FROM identities").fetchall():
            self._known_identities.add(iid)
        if self.verify_on_open:
            self.integrity = verify_connection(
                self._con,
                meta,
                checkpoint_files=self.checkpoint_files(),
                trusted_keys=None,
                independent_copy=bool(self.checkpoint_mirror),
            )
            for code, seq, detail in migrated:
                self.integrity.add(code, seq, detail)
            if any(p["problem"] == "derived_changed" for p in self.integrity.problems):
                # who may open which trace is decided on them: recount them from the log
                log.error(
                    "audit trail %s: derived tables edited; rebuilt from the log", self.db_path
                )
                stale = True
        if stale:
            log.info("audit trail %s: rebuilding its derived tables", self.db_path)
            covering = self.integrity.covering if self.integrity is not None else None
            queries.rebuild_derived(self._con, (covering or {}).get("traces"))
        # pyarrow imports pandas on its first array (~0.3 s here): pay it now, not in the
        # commit of the first event
        pa.array([0], pa.int64())
        self._start(str(self.db_path))
        self._catch_up()  # the search index catches up when nothing waits
        return self

    def close(self, checkpoint: bool = True) -> None:
        if self._closed or self._thread is None:
            return
        self._stop(checkpoint)
        try:
            self._con.execute("CHECKPOINT")
        except Exception:  # noqa: BLE001
            pass
        self._con.close()

    def __enter__(self):
        return self.open() if self._thread is None else self

    def _restore_state(self, meta: dict) -> None:
        meta_seq = int(meta.get("last_seq", "0"))
        row = self._con.execute(
            "SELECT seq, hash, time FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        table_seq = row[0] if row else 0
        if row:
            self._last_time_us = int(row[2].replace(tzinfo=UTC).timestamp() * 1_000_000)
        if meta_seq >= table_seq and meta.get("frontier") is not None:
            # the high-water mark survives a truncated tail: continue after it, so the gap
            # stays visible instead of being papered over by new records
            self.seq = meta_seq
            self.last_hash = bytes.fromhex(meta["last_hash"])
            try:
                self.frontier = MerkleFrontier.from_hex(meta_seq, meta["frontier"])
                return
            except ValueError:
                log.warning("trail meta frontier unreadable; rebuilding from the log")
        # meta older than the table (edited?): rebuild from the rows themselves
        self.seq = table_seq
        self.last_hash = bytes(row[1]) if row else GENESIS_HASH
        self.frontier = MerkleFrontier()
        for leaf in leaves(self._con, table_seq):
            self.frontier.append(leaf)
        self.seq = max(self.seq, self.frontier.size)

    def index_search(self) -> Future:
        """Bring the search index (`search`) up to the last committed record; resolves to
        True once it is. Done on the writer thread, a chunk at a time between batches."""
        fut: Future = Future()
        self._queue.put((_INDEX, fut))
        return fut

    def _index(self, fut: Future | None) -> None:
        """One chunk of search indexing; queued again until the index is up to date. A
        caller that stopped waiting (its future cancelled) stops nothing here."""
        try:
            done = search.catch_up(self._con)
        except Exception as e:  # noqa: BLE001 - derived: the next search tries again
            log.warning("search index not brought up to date: %s", loggable_error(e))
            _settle(fut, error=TrailError(f"search index not up to date: {e}"))
            return
        if not done:
            self._queue.put((_INDEX, fut))  # appends queued meanwhile go first
        else:
            _settle(fut, True)

    def compact(self, keep_after: int, timeout: float | None = None) -> None:
        """Swap in the trail without its records up to `keep_after`, which an archive holds
        (`compact`): written to a fresh file, verified, and put in place while the writer
        waits. Raises TrailError, the trail untouched, when the fresh file does not verify."""

        def swap() -> None:
            fresh = compact.write_fresh(self._con, self.db_path, keep_after)
            try:
                compact.check_fresh(fresh, self.checkpoint_files(), self.seq, self.last_hash.hex())
            except BaseException:
                compact.discard_fresh(self.db_path)
                raise
            with self._store_lock:  # a live verify opens its snapshot under it
                self._con.execute("CHECKPOINT")
                self._con.close()
                try:
                    compact.replace(fresh, self.db_path)
                finally:
                    self._con = connect(self.db_path)

        self.run_exclusive(swap).result(timeout=timeout)

    def cursor(self):
        """A read connection to the trail for the calling thread."""
        if self._con is None:
            raise TrailError("trail is not open")
        return self._con.cursor()

    def verify(self, *, trusted_keys=None, deep: bool = False) -> VerifyResult:
        """Verify the trail while it is written: every check reads one snapshot, taken
        between two stored batches (checks reading at different moments would see a
        high-water mark, counts or derived rows of different batches: false tampering)."""
        files = self.checkpoint_files()
        lines = read_checkpoint_files(files)  # before the snapshot: none names a later record
        cursors = [self.cursor() for _ in range(SNAPSHOT_CURSORS)]
        with self._store_lock:
            for cur in cursors:
                cur.execute("BEGIN TRANSACTION READ ONLY")
                cur.execute("SELECT count(*) FROM meta").fetchall()  # pins the snapshot
            meta = read_meta(cursors[0])
        try:
            return trail.verify(
                Snapshot(cursors),
                meta,
                files,
                trusted_keys=trusted_keys,
                deep=deep,
                independent_copy=bool(self.checkpoint_mirror),
                file_lines=lines,
            )
        finally:
            for cur in cursors:
                try:
                    cur.execute("ROLLBACK")
                    cur.close()
                except duckdb.Error:
                    pass

    def build_bundle(self, **filters) -> dict:
        return trail.build_bundle(self.cursor(), **filters)

    # ------------------------------------------------------------------ the thread

    # ------------------------------------------------------------------ storage hooks
    def _insert(self, batch: SealedBatch, optimistic: bool) -> bool:
        return insert(self._con, batch, self._known_traces, optimistic=optimistic)

    def _held_client_ids(self, ids: list[str]) -> dict[str, int]:
        return held_client_ids(self._con, ids)

    def _flush_storage(self) -> None:
        self._con.execute("CHECKPOINT")

"""`PgStore`: the PostgreSQL implementation of `base.TrailStore` (the collector's trail).

The write side is the engine every store shares (`engine.QueuedStore`: prepare and mask,
one writer thread taking rounds off a queue, seal, acknowledge after commit, signed
checkpoints appended to the trail and to `checkpoint_path` and its mirror); here only the
storage differs: each round is one PostgreSQL transaction (`write.insert`), on one
connection that holds a session-level advisory lock for as long as the store is open, so a
second writer of the same trail is refused at open (a killed process's lock goes with its
connection). A connection lost mid-round fails that round's futures (`TrailWriteError`,
nothing of it acknowledged; PostgreSQL rolled it back or, if the commit itself got through,
the store finds it in the log); the next round reconnects, takes the lock again and takes
up the chain after the log's last committed record (`head` is only a cache of it). Reads
run on connections of their own, through the same read modules as the DuckDB trail
(`connection.PortableCursor`), and `verify` reads one REPEATABLE READ snapshot while
appends go on. The search index is kept up to date by a thread of its own (`search.Indexer`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future

import psycopg

from .. import forwarded, trail
from ..batch import SealedBatch
from ..canonical import GENESIS_HASH
from ..chain import leaves
from ..checkpoints import read_checkpoint_files
from ..engine import QueuedStore
from ..errors import TrailError, TrailLockedError, TrailWriteError
from ..merkle import MerkleFrontier
from ..reads import CursorReads
from ..signing import SigningKey
from ..verify import VerifyResult
from . import partitions, schema
from .connection import PortableCursor, connect, redacted
from .derived import Derivation
from .search import NO_INDEX, Indexer
from .snapshot import snapshot
from .verify import verify_snapshot
from .write import held_client_ids, insert, micros

log = logging.getLogger("jupyter_audit.pg")

# the session-level advisory lock of the one writer of a trail (per database and schema)
_LOCK = "SELECT pg_try_advisory_lock(hashtext('jupyter-audit writer'), hashtext(current_schema()))"


class PgStore(CursorReads, QueuedStore):
    """A trail in PostgreSQL (module docstring; `base.TrailStore` for the verbs and what they
    guarantee). `dsn`: a libpq connection string or URI whose role may write the trail
    (`roles`); the schema is created at open when missing and the role may create it.
    `checkpoint_path` is required: there is no trail file to put the plain copy beside."""

    def __init__(
        self,
        dsn: str,
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
        partition_size: int = schema.PARTITION_SIZE,
        maintenance_dsn: str = "",
    ):
        if not checkpoint_path:
            raise TrailError("a PostgreSQL trail needs checkpoint_path (a file for the copy)")
        super().__init__(
            masker,
            signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            checkpoint_path=checkpoint_path,
            checkpoint_mirror=checkpoint_mirror,
            max_field_bytes=max_field_bytes,
            max_batch=max_batch,
            batch_wait=batch_wait,
            verify_on_open=verify_on_open,
            pubkey_path=pubkey_path,
            prepare_workers=prepare_workers,
        )
        self.dsn = dsn
        self.where = redacted(dsn)
        self.partition_size = partition_size  # for a schema made at open; else its own
        self.maintenance_dsn = maintenance_dsn  # removes archived partitions (`compact`)
        self._con: psycopg.Connection | None = None  # the writer thread's
        self._covered = 0  # partitions exist up to this seq
        self._local = threading.local()  # each reading thread's connection
        self._readers: list[psycopg.Connection] = []
        self._readers_lock = threading.Lock()
        self._indexer: Indexer | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> PgStore:
        """Connect (creating the schema if missing), take the writer's lock, restore the
        chain after the log's last record, verify, and start the writer thread."""
        con = connect(self.dsn, autocommit=True)
        try:
            self._prepare_open(con)
        except psycopg.Error as e:
            con.close()  # and with it the lock, if it was taken
            raise TrailError(f"cannot open the trail at {self.where}: {e}") from None
        except BaseException:
            con.close()
            raise
        self._con = con
        self._start(self.where)
        self._indexer = Indexer(self.dsn, self.where).start()
        return self

    def _prepare_open(self, con: psycopg.Connection) -> None:
        """Everything `open` does on the writer's connection before the thread starts."""
        if not schema.exists(con):
            schema.create(con, self.partition_size)
        self._take_lock(con)
        if not schema.add_search(con):
            log.warning("audit trail %s: %s", self.where, NO_INDEX)
        meta = schema.read_meta(con)
        schema.check_version(meta)
        self.trail_id = meta["trail_id"]
        self.partition_size = schema.partition_size(meta)
        self._restore_state(con, meta)
        self._known_identities.update(
            iid for (iid,) in con.execute("SELECT identity_id FROM identities").fetchall()
        )
        if self.verify_on_open:
            self.integrity, derivation = self._verify(None, False, want_derivation=True)
            if any(p["problem"] == "derived_changed" for p in self.integrity.problems):
                log.error("audit trail %s: derived tables edited; rebuilt from the log", self.where)
                assert derivation is not None
                covering = self.integrity.covering
                derivation.rebuild(con, None if covering is None else covering.get("traces") or {})

    def close(self, checkpoint: bool = True) -> None:
        if self._closed or self._thread is None:
            return
        if self._indexer is not None:
            self._indexer.close()
        self._stop(checkpoint)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for con in [*readers, self._con]:
            if con is not None:
                con.close()  # the writer's: releases its advisory lock

    def __enter__(self) -> PgStore:
        return self.open() if self._thread is None else self

    def _take_lock(self, con: psycopg.Connection) -> None:
        row = con.execute(_LOCK).fetchone()
        if row is None or not row[0]:
            raise TrailLockedError(
                f"the trail at {self.where} is open for writing by another process "
                "(one writer at a time; its lock goes when its connection does)"
            )

    def _restore_state(self, con: psycopg.Connection, meta: dict) -> None:
        """Continue after the log's last record. The committed head (written with every
        append) gives its Merkle frontier when it names that record; a head the writer role
        edited (ahead of the log, another hash) must not make the chain go on from a seq or
        hash of its own (a gap or a break nobody made), so then it is rebuilt from the rows.
        The last record time comes from the record itself, never the head."""
        row = con.execute(
            "SELECT seq, hash, time FROM events WHERE seq = (SELECT max(seq) FROM events)"
        ).fetchone()
        table_seq, table_hash = (row[0], bytes(row[1])) if row else (0, GENESIS_HASH)
        self._last_time_us = micros(row[2]) if row else 0
        self._covered = 0
        self.seq, self.last_hash = table_seq, table_hash
        head_seq = int(meta.get("last_seq", "0"))
        if head_seq == table_seq and meta.get("last_hash") == table_hash.hex():
            try:
                self.frontier = MerkleFrontier.from_hex(head_seq, meta.get("frontier") or "")
                return
            except ValueError:
                log.warning("trail head frontier unreadable; rebuilding from the log")
        else:
            log.error(
                "audit trail %s: the head (#%d) does not name the log's last record (#%d); "
                "going on after the log",
                self.where,
                head_seq,
                table_seq,
            )
        self.frontier = MerkleFrontier()
        for leaf in leaves(PortableCursor(con), table_seq):
            self.frontier.append(leaf)

    # ------------------------------------------------------------------ storage hooks
    def _writer(self) -> psycopg.Connection:
        """The writer thread's connection; after one was lost, a new one that holds the lock
        again, with the chain taken up after the log's last record."""
        con = self._con
        if con is not None and not con.closed and not con.broken:
            return con
        if con is not None:
            con.close()
        self._con = None
        con = connect(self.dsn, autocommit=True)
        try:
            self._take_lock(con)
            meta = schema.read_meta(con)
        except BaseException:
            con.close()
            raise
        self._con = con
        # if the lost round's commit got through, the head moved: take up from there
        self._restore_state(con, meta)
        log.warning(
            "audit trail %s: reconnected; the chain goes on after #%d", self.where, self.seq
        )
        return con

    def _insert(self, batch: SealedBatch, optimistic: bool) -> bool:
        try:
            con = self._writer()
        except psycopg.Error as e:
            raise TrailWriteError(f"PostgreSQL at {self.where} unreachable: {e}") from None
        if batch.first_seq != self.seq + 1:  # sealed before a reconnect moved the head
            raise TrailWriteError("batch sealed on a head that is no longer the trail's")
        if batch.last_seq > self._covered:
            self._covered = schema.ensure_partitions(con, batch.last_seq)
        return insert(con, batch, optimistic=optimistic)

    def _held_client_ids(self, ids: list[str]) -> dict[str, int]:
        return held_client_ids(self._writer(), ids)

    # ------------------------------------------------------------------ reading
    def _reader(self) -> PortableCursor:
        con = getattr(self._local, "con", None)
        if con is None or con.closed or con.broken:
            con = connect(self.dsn, autocommit=True, application="jupyter-audit reader")
            self._local.con = con
            with self._readers_lock:
                self._readers.append(con)
        return PortableCursor(con)

    def cursor(self) -> PortableCursor:
        """A read connection for the calling thread (`?` placeholders; `connection`)."""
        if self._thread is None:
            raise TrailError("trail is not open")
        return self._reader()

    def index_search(self) -> Future:
        """Bring the search index up to the last committed record (`search.Indexer`);
        resolves to True once it is, SearchUnavailable for a trail without one."""
        if self._indexer is None:
            raise TrailError("trail is not open")
        return self._indexer.request()

    def forward_heads(self) -> dict[str, dict]:
        """Each origin server's newest forwarded record, from the indexed origin columns
        (`forwarded.forward_heads` reads the same from the records on DuckDB)."""
        rows = self.cursor().execute(
            "SELECT DISTINCT ON (origin_server) record FROM events "
            "WHERE origin_server IS NOT NULL ORDER BY origin_server, seq DESC"
        )
        return forwarded.heads_of(bytes(r) for (r,) in rows.fetchall())

    def verify(self, *, trusted_keys=None, deep: bool = False) -> VerifyResult:
        """Verify as of one snapshot (REPEATABLE READ) while appends go on."""
        return self._verify(trusted_keys, deep)[0]

    def _verify(
        self, trusted_keys, deep: bool, *, want_derivation: bool = False
    ) -> tuple[VerifyResult, Derivation | None]:
        """The verification and, with `want_derivation`, the derived tables the log makes
        (for a rebuild)."""
        files = self.checkpoint_files()
        lines = read_checkpoint_files(files)  # before the snapshot: none names a later record
        with snapshot(self.dsn) as con:
            meta = schema.read_meta(con)
            derivation = Derivation({}) if want_derivation else None
            result = verify_snapshot(
                con,
                meta,
                checkpoint_files=files,
                trusted_keys=trusted_keys,
                deep=deep,
                independent_copy=bool(self.checkpoint_mirror),
                derivation=derivation,
                file_lines=lines,
            )
        return result, derivation

    # ------------------------------------------------------------------ archiving
    def plan_archive(
        self, cur, after_seq: int, older_than, segment_rows: int, frontier=None
    ) -> list:
        """Whole partitions after `after_seq` older than `older_than` (`partitions.plan`);
        `segment_rows` does not apply: a segment is a partition."""
        return partitions.plan(
            cur,
            self.key,
            self.trail_id,
            self.partition_size,
            after_seq,
            older_than,
            time.time_ns() // 1000,
            frontier,
        )

    def record_archived(self, payload: dict, identity: dict):
        """As the engine's, after a signed checkpoint: the partition's checkpoint this key
        signed lives only in the archive, so the live trail must hold one that vouches for
        the key (else `verify --pg` and the next run find the record unsigned, and the
        records before the live trail missing, until the next checkpoint)."""
        self.checkpoint().result(timeout=60)
        return super().record_archived(payload, identity)

    def compact(self, keep_after: int, timeout: float | None = None) -> None:
        """Remove the archived partitions up to `keep_after` from the live trail, as the
        maintenance role (`partitions.drop`; TrailError without `maintenance_dsn`)."""
        if not self.maintenance_dsn:
            raise TrailError(
                "archived records stay in the PostgreSQL trail: no maintenance DSN to remove "
                "them with (c.CollectorApp.pg_maintenance_dsn)"
            )
        partitions.drop(self.maintenance_dsn, self.cursor(), self.key, self.trail_id, keep_after)

    def build_bundle(self, **filters) -> dict:
        with snapshot(self.dsn) as con:
            return trail.build_bundle(PortableCursor(con), **filters)

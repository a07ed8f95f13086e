"""The PostgreSQL trail's search index, kept up to date beside the writer.

`store/search.py` says what is searched and how a query matches; this module fills
`search_records` (`schema.SEARCH_DDL`): one row per record of a trace that holds a searched
word (more for a record whose words outgrow one tsvector: `tsvector_parts`), its words
(`search.record_words`, split in Python by the rule a query's are, so PostgreSQL's parser
and locale never decide what a word is) as a `tsvector` with no positions, under a GIN
index. It runs after the fact, never in an append's transaction.
`Indexer` is a thread of the store's with a connection of its own (PostgreSQL's snapshots
let it read the log while the writer appends). When a search asks (`PgStore.index_search`)
it catches up at full speed, and the search waits until every record committed before it
asked is indexed. Otherwise it keeps up in the background while the trail is quiet (records
arriving slower than QUIET_RATE a second: a Hub of hundreds of people makes a few), a small
chunk at a time, using at most BACKGROUND_SHARE of the time. Splitting words is Python,
which shares the collector's interpreter with the writer and the handlers: measured, an
indexer that kept up at full speed doubled the forwarding delay's p99 at 3,000 events/s,
and one paced to a tenth of the time still cost 10-30% of the ingest (docs/benchmarks.md).
Under sustained heavy load the index therefore waits, and the next search pays for what
came meanwhile (about 12,000 records a second on 2 cores). `search_state` (one row, locked
while a chunk is written) says how far the log is indexed, so two indexers never index a
record twice. It reads the log and writes only the search tables; never the log.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

import orjson

from .. import search
from ..engine import _settle
from ..errors import TrailError, loggable_error
from . import schema
from .connection import connect

log = logging.getLogger("jupyter_audit.pg")

CHUNK = 5_000  # records per transaction of the index when a search waits
# bytes of records read for one transaction (at least one record): a chunk of records of a
# megabyte each must not take gigabytes of the collector's memory
CHUNK_BYTES = 64 << 20
BACKGROUND_CHUNK = 1_000  # records per transaction when none does
BACKGROUND_SHARE = 0.1  # of the time the background indexing may take
QUIET_RATE = 200.0  # records a second below which the trail is quiet enough to index
INTERVAL = 10.0  # seconds between looks for new records when the index is up to date
# a tsvector must stay under 1 MB: a record's words past this many bytes go in another row
MAX_WORDS_BYTES = 900_000

NO_INDEX = (
    "search (q) is not available: this PostgreSQL trail has no search index yet; its "
    "administrator adds it by running `jupyter audit pg-setup` once more"
)


def tsvector_parts(words: list[str]) -> list[str]:
    """`words` (from `search.record_words`: letters, digits and `_` only) as tsvector
    texts, each word quoted, in as many parts of at most MAX_WORDS_BYTES as they need (a
    tsvector must stay under 1 MB: a record's words past one part are in the next, never
    dropped, so no statement hides behind a megabyte of other words)."""
    parts: list[str] = []
    out: list[str] = []
    size = 0
    for w in words:
        cost = len(w.encode()) + 8  # the lexeme and its entry
        if out and size + cost > MAX_WORDS_BYTES:
            parts.append(" ".join(out))
            out, size = [], 0
        out.append(f"'{w}'")
        size += cost
    if out:
        parts.append(" ".join(out))
    return parts


def catch_up(con, max_records: int = CHUNK) -> bool:
    """Index up to `max_records` of the records not indexed yet (and up to CHUNK_BYTES of
    them), in one transaction on the psycopg connection `con` (autocommit); True when none
    is left."""
    (done,) = con.execute("SELECT indexed_seq FROM search_state").fetchone()
    # the live trail's first record (partitions archived away start it later)
    first, last = con.execute(
        "SELECT coalesce(min(seq), 1), coalesce(max(seq), 0) FROM events"
    ).fetchone()
    if done >= last:
        return True
    upto = min(last, max(done, first - 1) + max_records)
    # at most CHUNK_BYTES of records (and at least one): each row's bytes before it summed
    rows = con.execute(
        "SELECT seq, trace_id, record, total FROM (SELECT seq, trace_id, record,"
        " count(*) OVER () AS total, sum(octet_length(record)) OVER (ORDER BY seq)"
        " - octet_length(record) AS before FROM events"
        " WHERE seq > %s AND seq <= %s AND trace_id IS NOT NULL) r"
        " WHERE before < %s ORDER BY seq",
        [done, upto, CHUNK_BYTES],
    ).fetchall()
    if rows and len(rows) < rows[0][3]:
        upto = rows[-1][0]  # stopped at the bytes: the next chunk starts after its last
    docs = []
    for seq, trace_id, raw, _total in rows:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # not a record: verify reports it, the index has nothing to take
        words = search.record_words(record) if isinstance(record, dict) else []
        parts = tsvector_parts(words)
        for part, text in enumerate(parts):
            docs.append((seq, trace_id, text, part, len(parts)))
    with con.transaction():
        # locked to the commit: an indexer of another process waits, then finds it moved
        (now,) = con.execute("SELECT indexed_seq FROM search_state FOR UPDATE").fetchone()
        if now != done:
            return False
        with con.cursor() as cur:
            copy_sql = "COPY search_records (seq, trace_id, words, part, parts) FROM STDIN"
            with cur.copy(copy_sql) as copy:
                for doc in docs:
                    copy.write_row(doc)
            cur.execute("UPDATE search_state SET indexed_seq = %s", [upto])
    return upto >= last


class Indexer:
    """The thread that keeps a PostgreSQL trail's search index up to date (module
    docstring). `dsn`: the writer's; `where`: the trail as messages name it."""

    def __init__(self, dsn: str, where: str, interval: float | None = None):
        self.dsn = dsn
        self.where = where
        self.interval = INTERVAL if interval is None else interval
        self._lock = threading.Lock()
        self._waiting: list[Future] = []
        self._wake = threading.Event()
        self._stopping = False
        self._con = None
        self._seen = (time.monotonic(), -1)  # when the log was last looked at, its last seq
        self._thread = threading.Thread(target=self._run, name="jupyter-audit-search", daemon=True)

    def start(self) -> Indexer:
        self._thread.start()
        return self

    def request(self) -> Future:
        """A future resolved (True) once every record committed before now is indexed;
        SearchUnavailable if the trail has no index, TrailError if indexing failed."""
        fut: Future = Future()
        with self._lock:
            if self._stopping:
                _settle(fut, error=TrailError("the trail is closed"))
                return fut
            self._waiting.append(fut)
        self._wake.set()
        return fut

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._fail(TrailError("the trail is closed"))

    def _take(self) -> list[Future]:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        return waiting

    def _fail(self, error: BaseException) -> None:
        for fut in self._take():
            _settle(fut, error=error)

    def _connection(self):
        con = self._con
        if con is None or con.closed or con.broken:
            if con is not None:
                con.close()
            self._con = con = connect(self.dsn, autocommit=True, application="jupyter-audit search")
        return con

    def _run(self) -> None:
        pause = self.interval
        try:
            while True:
                self._wake.wait(pause)
                self._wake.clear()
                if self._stopping:
                    return
                pause = self._round()
        finally:
            if self._con is not None:
                self._con.close()

    def _quiet(self, con) -> bool:
        """Whether records came in slower than QUIET_RATE a second since the last look."""
        (last,) = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        now = time.monotonic()
        (then, before), self._seen = self._seen, (now, last)
        return before >= 0 and (last - before) <= QUIET_RATE * (now - then)

    def _round(self) -> float:
        """With a search waiting: catch up until the index holds every committed record,
        then answer the requests that came before or during it. Without: one background
        chunk. Returns the seconds to wait before the next background chunk."""
        waiting = self._take()
        t0 = time.monotonic()
        done = False
        try:
            con = self._connection()
            if not schema.has_search(con):
                raise search.SearchUnavailable(NO_INDEX)
            if not waiting:
                done = not self._quiet(con) or catch_up(con, BACKGROUND_CHUNK)
            else:
                while not self._stopping and not catch_up(con):
                    waiting += self._take()  # what this run indexes covers them too
                done = True
        except search.SearchUnavailable as e:
            done = True
            for fut in waiting:
                _settle(fut, error=e)
        except Exception as e:  # noqa: BLE001 - derived: the next round tries again
            done = True
            why = loggable_error(e)
            log.warning("search index of %s not brought up to date: %s", self.where, why)
            if self._con is not None:
                self._con.close()
                self._con = None
            for fut in waiting:
                _settle(fut, error=TrailError(f"search index not up to date: {why}"))
        else:
            if self._stopping:
                for fut in waiting:
                    _settle(fut, error=TrailError("the trail is closed"))
            else:
                for fut in waiting:
                    _settle(fut, True)
        if done or self._stopping:  # up to date, failed (tried again later) or closing
            return self.interval
        spent = time.monotonic() - t0
        return spent * (1 - BACKGROUND_SHARE) / BACKGROUND_SHARE

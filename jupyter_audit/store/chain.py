"""The hash chain's rows as every reader sees them, whatever the `events` table stores.

`chain_rows` is the one way to read (seq, record, hash, prev_hash, leaf) out of a trail:
export, proofs, the archive and tools use it, so the physical layout (which of these are
stored and which derived, docs/design-notes.md "Storage") can change without them. A
row's `prev_hash` is the `hash` of the row before (the first row of a range that has no
row before it in the table takes the one its signed record names): no format since 4
stores it. Its `leaf`, sha256(0x00 + record), is stored (inclusion proofs need every leaf up
to a checkpoint; `verify` checks each against its record). It only reads; it must never
write to a trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from .canonical import GENESIS_HASH

BATCH_ROWS = 65_536


class ChainRow(NamedTuple):
    seq: int
    record: bytes  # the canonical bytes, exactly as hashed and signed
    hash: bytes
    prev_hash: bytes
    leaf: bytes


def record_prev_hash(record: bytes) -> bytes:
    """The `prev_hash` a record's signed bytes name (what links it to the record before)."""
    return bytes.fromhex(json.loads(record)["prev_hash"])


def stores_prev_hash(cur) -> bool:
    """Whether this trail's `events` table has a prev_hash column (formats up to 3)."""
    return bool(
        cur.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = 'events' AND column_name = 'prev_hash'"
        ).fetchone()[0]
    )


def prev_column_mismatch(cur) -> int | None:
    """The first record whose stored prev_hash column (formats up to 3) is not the hash of
    the record before it; None if all are, or the trail stores no such column."""
    if not stores_prev_hash(cur):
        return None
    return cur.execute(_PREV_CHECK, [GENESIS_HASH]).fetchone()[0]


_PREV_CHECK = """
SELECT min(seq) FROM (SELECT seq, prev_hash, lag(hash) OVER (ORDER BY seq) AS before FROM events)
WHERE prev_hash IS DISTINCT FROM coalesce(before, ?)
"""


def _stored_hash(cur, seq: int) -> bytes | None:
    """The hash of record `seq` as the table holds it (the genesis hash before #1)."""
    if seq < 1:
        return GENESIS_HASH
    row = cur.execute("SELECT hash FROM events WHERE seq = ?", [seq]).fetchone()
    return None if row is None else bytes(row[0])


def prev_hash_of(cur, seq: int) -> bytes | None:
    """Record `seq`'s prev_hash: the stored hash of the record before, or, where the table
    does not hold that one (archived), the one record `seq` names; None if neither is held."""
    prev = _stored_hash(cur, seq - 1)
    if prev is not None:
        return prev
    row = cur.execute("SELECT record FROM events WHERE seq = ?", [seq]).fetchone()
    return None if row is None else record_prev_hash(bytes(row[0]))


def chain_rows(cur, first_seq: int = 1, last_seq: int | None = None) -> Iterator[ChainRow]:
    """The rows first_seq..last_seq (None: to the end) in sequence order, each with its
    prev_hash and Merkle leaf. `cur` is a DuckDB connection or cursor the caller owns (the
    rows are read in batches through a cursor of its own) or a PostgreSQL trail's
    `PortableCursor` (read through a server-side cursor)."""
    hi = last_seq if last_seq is not None else (1 << 62)
    if hasattr(cur, "stream"):  # a PostgreSQL trail (`pg.connection.PortableCursor`)
        yield from _streamed_rows(cur, first_seq, hi)
        return
    scan = cur.cursor()
    try:
        reader = scan.sql(
            "SELECT seq, hash, record, leaf FROM events WHERE seq BETWEEN $lo AND $hi ORDER BY seq",
            params={"lo": first_seq, "hi": hi},
        ).to_arrow_reader(BATCH_ROWS)
        prev: bytes | None = None
        for batch in reader:
            seqs = batch.column(0).to_pylist()
            hashes = batch.column(1).to_pylist()
            records = batch.column(2).to_pylist()
            stored_leaves = batch.column(3).to_pylist()
            for seq, h, rec, leaf in zip(seqs, hashes, records, stored_leaves, strict=True):
                if prev is None:
                    prev = _stored_hash(cur, seq - 1)
                    if prev is None:  # the row before is not in this table (archived)
                        prev = record_prev_hash(rec)
                yield ChainRow(seq, rec, h, prev, leaf)
                prev = h
    finally:
        scan.close()


def _streamed_rows(cur, first_seq: int, hi: int) -> Iterator[ChainRow]:
    prev = prev_hash_of(cur, first_seq)
    for rows in cur.stream(
        "SELECT seq, record, hash, leaf FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
        [first_seq, hi],
        BATCH_ROWS,
    ):
        for seq, rec, h, leaf in rows:
            yield ChainRow(seq, rec, h, prev if prev is not None else record_prev_hash(rec), leaf)
            prev = h


def leaves(cur, upto: int) -> list[bytes]:
    """The Merkle leaves of records 1..upto, in order (what inclusion proofs are built on)."""
    return [row.leaf for row in chain_rows(cur, 1, upto)]

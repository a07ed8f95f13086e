"""Partitions of the PostgreSQL log as archive segments, and their removal by the maintenance
role (docs/archive.md, "The collector's PostgreSQL trail").

On PostgreSQL a segment is a whole partition of `events` (`schema`: blocks of
`partition_size` sequence numbers): `plan` lists the partitions after the archive's end whose
every record is there and older than `archive_after`, each with a checkpoint the trail's key
signs for its last record (its hash and the Merkle root of records 1..its end), so that the
archiver (`store.archiver.run_archive`) writes them in the one archive format, read back and
checked like the DuckDB trail's. `drop` removes archived partitions through
`jupyter_audit_drop_archived`, connected as the maintenance role, oldest first, and only
those whose `trail.archived` record the trail's key signed; the database function refuses
on its own anything the log does not record as archived. It never writes a row.
"""

from __future__ import annotations

import json
from datetime import datetime
from hashlib import sha256

from ..archive import Segment, live_checkpoints
from ..archive_target import ArchiveError
from ..chain import chain_rows
from ..checkpoints import archived_message, sign_checkpoint
from ..errors import TrailError
from ..merkle import MerkleFrontier
from ..signing import SigningKey, verify_signature
from ..verify import archived_prefix
from . import schema
from .connection import connect, redacted

LOCK_TIMEOUT_MS = 5000  # how long a drop waits for the log's lock before giving up this run


def plan(
    cur,
    key: SigningKey,
    trail_id: str,
    size: int,
    after_seq: int,
    older_than: datetime,
    now_us: int,
    frontier: MerkleFrontier | None = None,
) -> list[Segment]:
    """The partitions after `after_seq` (the archive's end, a partition boundary) whose last
    record exists and is older than `older_than`, oldest first, as segments each ending at
    a checkpoint signed now by `key` (`now_us`). `frontier`: the Merkle frontier of records
    1..`after_seq` (the archive's, checked); without it, it is rebuilt from the live
    trail's first record (and the signed `trail.archived` before it)."""
    if after_seq % size:
        raise ArchiveError(
            f"the archive ends at #{after_seq}, inside a partition of {size} records: it was "
            "not written from this PostgreSQL trail"
        )
    first, last = cur.execute("SELECT min(seq), max(seq) FROM events").fetchone()
    if first is None:
        return []
    ends: list[tuple[int, datetime]] = []
    hi = after_seq + size
    while hi <= last:
        (time,) = cur.execute("SELECT time FROM events WHERE seq = ?", [hi]).fetchone()
        if time > older_than:
            break
        ends.append((hi, time))
        hi += size
    if not ends:
        return []
    if frontier is not None and frontier.size == after_seq and after_seq >= first - 1:
        start = after_seq + 1  # only the new partitions' leaves are read
    else:
        frontier, start = _frontier_before(cur, trail_id, first), first
    segments: list[Segment] = []
    want = iter(ends)
    end, end_time = next(want)
    # the collector's own signed checkpoints over these records: the ones signed now must
    # agree with them (the database's superuser could have edited rows since `verify`)
    signed = {c["seq"]: c for c in live_checkpoints(cur, after_seq) if c["seq"] <= ends[-1][0]}
    prev: bytes | None = None
    for row in chain_rows(cur, start, ends[-1][0]):
        record = bytes(row.record)
        h = sha256(bytes(row.prev_hash) + record).digest()
        if (
            h != bytes(row.hash)
            or (prev is not None and bytes(row.prev_hash) != prev)
            or sha256(b"\x00" + record).digest() != bytes(row.leaf)
        ):
            raise ArchiveError(f"record #{row.seq} changed since the trail was verified")
        prev = h
        frontier.append(bytes(row.leaf))
        cp = signed.get(row.seq)
        if cp is not None and (
            cp.get("hash") != h.hex() or cp.get("merkle_root") != frontier.root().hex()
        ):
            raise ArchiveError(
                f"record #{row.seq}: the chain differs from the trail's signed checkpoint there"
            )
        if row.seq == end:
            checkpoint = sign_checkpoint(
                key,
                trail_id=trail_id,
                seq=end,
                last_hash=h,
                merkle_root=frontier.root(),
                tree_size=end,
                time_us=now_us,
            )
            segments.append(Segment(end - size + 1, end, checkpoint, end_time))
            end, end_time = next(want, (0, end_time))
    if len(segments) != len(ends):
        raise ArchiveError("the live trail's records changed while partitions were planned")
    return segments


def _frontier_before(cur, trail_id: str, first: int) -> MerkleFrontier:
    """The Merkle frontier of records 1..first-1: empty, or what the signed `trail.archived`
    ending there recorded."""
    if first <= 1:
        return MerkleFrontier()
    covering = archived_prefix(cur, trail_id)
    if covering is None or covering.get("last_seq") != first - 1:
        raise ArchiveError(f"no signed trail.archived record ends at #{first - 1}")
    return MerkleFrontier.from_hex(first - 1, covering["frontier"])


def drop(maintenance_dsn: str, cur, key: SigningKey, trail_id: str, keep_after: int) -> list[int]:
    """Detach and drop, as the maintenance role of `maintenance_dsn`, every partition whose
    records all lie at or below `keep_after`, oldest first (each one's `trail.archived`
    record must be signed by `key`, the trail's key: the database cannot check a
    signature). Returns the first seq of each partition dropped."""
    meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
    size = schema.partition_size(meta)
    (first,) = cur.execute("SELECT min(seq) FROM events").fetchone()
    if first is None or (first - 1) % size:
        return []
    signed = _signed_ranges(cur, key, trail_id)
    todo = []
    lo = first
    while lo + size - 1 <= keep_after:
        if (lo, lo + size - 1) not in signed:
            raise TrailError(
                f"records #{lo}..#{lo + size - 1}: no trail.archived record signed by the "
                "trail's key covers them; nothing removed"
            )
        todo.append(lo)
        lo += size
    if not todo:
        return []
    con = connect(maintenance_dsn, autocommit=True, application="jupyter-audit maintenance")
    dropped = []
    try:
        # the drop waits for a lock on `events` that every append and read queues behind:
        # never for long (an auditor's long verify holds it off; the next run tries again)
        con.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        for lo in todo:
            try:
                con.execute(f"SELECT {schema.DROP_FUNCTION}(%s)", [lo])
            except Exception as e:  # noqa: BLE001 - the database refused: one line, no DSN
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise TrailError(
                    f"the maintenance role at {redacted(maintenance_dsn)} could not remove "
                    f"records #{lo}..#{lo + size - 1}: {why}"
                ) from None
            dropped.append(lo)
    finally:
        con.close()
    return dropped


def _signed_ranges(cur, key: SigningKey, trail_id: str) -> set[tuple[int, int]]:
    """(first_seq, last_seq) of each `trail.archived` record signed by `key` for this trail."""
    out = set()
    for (rec,) in cur.execute(
        "SELECT record FROM events WHERE kind = 'trail.archived' ORDER BY seq"
    ).fetchall():
        try:
            p = json.loads(bytes(rec))["payload"]
            if (
                p.get("trail_id") == trail_id
                and p.get("key_id") == key.key_id
                and verify_signature(key.public, p["signature"], archived_message(p))
            ):
                out.add((int(p["first_seq"]), int(p["last_seq"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out

"""Verification of a PostgreSQL trail, as of one snapshot while appends go on.

The same findings as the DuckDB trail's (`verify.VerifyResult`, the first damaged record
first), from the same checks: the signed checkpoints and trusted keys
(`verify.collect_checkpoints`), the chain and Merkle leaves (`chain_check.ChainScan`), the
high-water mark and checkpoints against the chain (`verify.conclude`). What differs is how
the records are read: one pass over `events` in seq order through a server-side cursor (never
the whole trail in memory), which also checks every stored column against the signed record
and counts the derived tables (`derived.Derivation`), and the identity snapshots checked in
Python. The caller opens the snapshot (REPEATABLE READ, read only). It only reads.
"""

from __future__ import annotations

from hashlib import sha256

import orjson

from ..canonical import iso_time
from ..chain import prev_hash_of
from ..chain_check import ChainScan
from ..checkpoints import read_checkpoint_files
from ..verify import (
    VerifyResult,
    archived_start,
    collect_checkpoints,
    conclude,
    signed_archived,
)
from . import schema
from .connection import PortableCursor
from .derived import Derivation
from .schema import LOG_TABLES
from .snapshot import snapshot
from .write import micros

BATCH = 10_000
# the stored columns a record's signed bytes must agree with (besides seq and time)
_SAME = ("kind", "trace_id", "kernel_id", "session_id", "notebook", "msg_id", "identity_id")
_SCAN = (
    "SELECT seq, hash, record, leaf, time, event_id, origin_server, origin_seq, "
    + ", ".join(_SAME)
    + " FROM events ORDER BY seq"
)


def verify_snapshot(
    con,
    meta: dict,
    *,
    checkpoint_files=(),
    trusted_keys=None,
    deep=False,
    independent_copy=False,
    derivation: Derivation | None = None,
    file_lines=None,
) -> VerifyResult:
    """Verify the trail behind `con` (a psycopg connection inside a REPEATABLE READ
    transaction, so every read sees one moment); `meta`: `schema.read_meta` read in it.
    `derivation`: an empty one to be filled with what the log makes of the derived
    tables (for a rebuild). `file_lines`: the checkpoint files as read before the snapshot
    began (`verify.collect_checkpoints`); None: read now (a trail nobody writes)."""
    cur = PortableCursor(con)
    result = VerifyResult(independent_copy=independent_copy)
    _check_guards(cur, result)
    cps, trusted, want_at = collect_checkpoints(
        cur, meta, checkpoint_files, trusted_keys, result, file_lines
    )
    archived = signed_archived(cur, trusted, meta.get("trail_id", ""), result)
    start, start_prev, covering = archived_start(cur, result, archived)
    result.covering = covering
    max_seq = cur.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    result.last_seq = max_seq

    snapshots = check_identities(cur, result)
    _check_event_ids(cur, result)
    _check_partitions(cur, meta, start, result)
    if start_prev is None:
        start_prev = prev_hash_of(cur, start) or b""
    chain = ChainScan(start, sorted(want_at), deep, start_prev)
    if derivation is None:
        derivation = Derivation(snapshots)
    derivation.snapshots = snapshots
    column_bad: int | None = None
    missing_identity: int | None = None
    times: dict = {}  # a round's records share one time: each formatted once
    for rows in cur.stream(_SCAN, (), BATCH):
        chain.feed(
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
        )
        for seq, _h, record, _leaf, time, event_id, server, origin_seq, *same in rows:
            try:
                rec = orjson.loads(record)
                iso = times.get(time)
                if iso is None:
                    if len(times) > 4096:
                        times.clear()
                    iso = times[time] = iso_time(micros(time))
                if column_bad is None and not _columns_match(
                    rec, seq, iso, event_id, server, origin_seq, same
                ):
                    column_bad = seq
                if (
                    missing_identity is None
                    and rec.get("identity_id") is not None
                    and rec["identity_id"] not in snapshots
                ):
                    missing_identity = seq
                derivation.add(seq, time, rec)
            except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
                # not a record this code wrote (the chain check names it): no column of it
                # can be trusted either
                column_bad = seq if column_bad is None else column_bad
    if missing_identity is not None:
        result.add(
            "identity_missing",
            missing_identity,
            f"record #{missing_identity} names a deleted identity snapshot",
        )
    derived: object
    try:
        if start == 1:
            derived = derivation.differences(cur)
        elif covering is not None:
            derived = derivation.differences_after_archive(cur, covering.get("traces") or {})
        else:
            derived = None  # records missing at the head: reported, nothing to count against
    except Exception as e:  # noqa: BLE001 - a check that raises is a finding, never a pass
        derived = ("error", type(e).__name__)
    conclude(
        cur,
        result,
        [chain.segment(max_seq, None)],
        meta,
        max_seq=max_seq,
        start=start,
        start_prev=start_prev,
        covering=covering,
        deep=deep,
        col_thread=None,
        col_out=[column_bad, derived],
        cps=cps,
        trusted=trusted,
        tokens=False,
    )
    return result


def _columns_match(rec: dict, seq, iso: str, event_id, server, origin_seq, same) -> bool:
    """Whether a row's stored columns say what its signed record says (`iso`: the `time`
    column as a record writes it)."""
    if rec.get("seq") != seq or rec.get("event_id") != event_id:
        return False
    if any(rec.get(name) != value for name, value in zip(_SAME, same, strict=True)):
        return False
    origin = rec.get("origin")
    if origin is None:
        if server is not None or origin_seq is not None:
            return False
    elif not isinstance(origin, dict) or (origin.get("server"), origin.get("seq")) != (
        server,
        origin_seq,
    ):
        return False
    return rec.get("time") == iso


def check_identities(cur: PortableCursor, result: VerifyResult) -> dict[str, str]:
    """Each snapshot must hash to its id and its username column say what it says; returns
    identity id -> snapshot (JSON text)."""
    snapshots: dict[str, str] = {}
    for iid, text, username in cur.execute(
        "SELECT identity_id, snapshot, username FROM identities ORDER BY identity_id"
    ).fetchall():
        snapshots[iid] = text
        problem = None
        if sha256(text.encode("utf-8")).hexdigest() != iid:
            problem = "was edited"
        else:
            try:
                named = orjson.loads(text).get("username")
            except (orjson.JSONDecodeError, AttributeError):
                named = None
            if named != username:
                problem = "has a username column that differs from its snapshot"
        if problem is not None:
            first = cur.execute("SELECT min(seq) FROM events WHERE identity_id = ?", [iid])
            seq = first.fetchone()[0]
            result.add("identity_changed", seq, f"identity snapshot {iid[:12]}… {problem}")
    return snapshots


def _check_event_ids(cur: PortableCursor, result: VerifyResult) -> None:
    """Each client event id must name the record that carries it: the writer role may
    INSERT into `event_ids`, and an id held there is acknowledged as a duplicate, never
    stored (`write.held_client_ids` ignores such a row; this names it)."""
    # ids of records archived away (their partitions dropped) name no live record: they are
    # not counted (nor honoured as duplicates, `write.held_client_ids`)
    row = cur.execute(
        "SELECT count(*), min(i.event_id) FROM event_ids i "
        "LEFT JOIN events e ON e.seq = i.seq AND e.event_id = i.event_id WHERE e.seq IS NULL "
        "AND i.seq >= coalesce((SELECT min(seq) FROM events), 1)"
    ).fetchone()
    if row[0]:
        result.add(
            "event_ids_changed",
            None,
            f"{row[0]} client event id(s) in event_ids name no record of the log "
            f"(the first: {row[1][:40]!r})",
        )


def _check_partitions(cur: PortableCursor, meta: dict, start: int, result: VerifyResult) -> None:
    """Records leave a PostgreSQL trail only as whole partitions (`partitions.drop`): a live
    trail that begins inside one lost records some other way (whatever anchors its start)."""
    size = schema.partition_size(meta)
    if start > 1 and (start - 1) % size:
        result.add(
            "record_missing",
            start - 1,
            f"the live trail begins at #{start}, inside a partition of {size} records: records "
            "before it were removed otherwise than by archiving a whole partition",
        )


def _check_guards(cur: PortableCursor, result: VerifyResult) -> None:
    """The append-only triggers should be there and enabled (a superuser can switch them
    off: that alone is no damage, which the checks find, but worth a warning)."""
    rows = cur.execute(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relname = ANY(?) AND c.relnamespace = current_schema()::regnamespace "
        "AND NOT t.tgisinternal",
        [list(LOG_TABLES)],
    ).fetchall()
    enabled = {(table, name) for table, name, state in rows if state in ("O", "A")}
    for table in LOG_TABLES:
        for name in (f"{table}_append_only", f"{table}_no_truncate"):
            if (table, name) not in enabled:
                result.warnings.append(
                    f"the append-only trigger {name} on {table} is missing or disabled"
                )


def verify_dsn(dsn: str, *, checkpoint_files=(), trusted_keys=None, deep=False) -> VerifyResult:
    """Verify the trail at `dsn` from outside its writer (`jupyter audit verify --pg`):
    any role that may SELECT it will do. `checkpoint_files`: the collector's checkpoint
    file and copies of it (an independent copy when given at all)."""
    lines = read_checkpoint_files(checkpoint_files)  # before the snapshot (a collector writes)
    with snapshot(dsn) as con:
        return verify_snapshot(
            con,
            schema.read_meta(con),
            checkpoint_files=checkpoint_files,
            trusted_keys=trusted_keys,
            deep=deep,
            independent_copy=bool(checkpoint_files),
            file_lines=lines,
        )


def verify_with_archive(
    target,
    dsn: str,
    *,
    checkpoint_files=(),
    trusted_keys=None,
    deep=False,
    expect_last_seq: int | None = None,
) -> VerifyResult:
    """`jupyter audit verify --archive DIR --pg DSN`: the archive's segments and the live
    PostgreSQL trail as one chain: every segment verified (`archive_verify.verify_segments`),
    every `trail.archived` of the live trail naming a segment there with its sha256, the
    archive reaching the live trail's first record and its last hash there being the one the
    live trail continues, live rows the archive holds too hashing as their archived copies,
    and the live trail verified (`verify_dsn`, anchored by its signed `trail.archived`)."""
    from ..archive_verify import recorded_segments

    lines = read_checkpoint_files(checkpoint_files)
    with snapshot(dsn) as con:
        meta = schema.read_meta(con)
        cur = PortableCursor(con)
        recorded = recorded_segments(cur)
        live = verify_snapshot(
            con,
            meta,
            checkpoint_files=checkpoint_files,
            trusted_keys=trusted_keys,
            deep=deep,
            independent_copy=bool(checkpoint_files),
            file_lines=lines,
        )
        result = VerifyResult(independent_copy=bool(checkpoint_files))
        chain, first = check_archive(
            cur,
            meta,
            target,
            result,
            trusted_keys=trusted_keys,
            expect_last_seq=expect_last_seq,
            recorded=recorded,
        )
    for p in live.problems:
        result.add(p["problem"], p["seq"], f"in the live trail: {p['detail']}")
    archived_events = sum(
        s.table.num_rows for s in chain.segments if s.table is not None and s.last_seq < first
    )
    result.events = archived_events + live.events
    result.last_seq, result.last_hash = live.last_seq, live.last_hash
    result.checkpoint, result.signed = live.checkpoint, live.signed
    result.checkpoints_checked += live.checkpoints_checked
    result.checkpoint_sources = live.checkpoint_sources
    result.key_source = result.key_source or live.key_source
    result.warnings += [w for w in live.warnings if "checked with --archive" not in w]
    result.intact_upto = live.intact_upto if result.ok else 0
    return result


def check_archive(
    cur: PortableCursor,
    meta: dict,
    target,
    result: VerifyResult,
    *,
    trusted_keys=None,
    expect_last_seq: int | None = None,
    recorded: list[dict] | None = None,
):
    """(the archive's chain, the live trail's first seq): the archive at `target` checked
    against the live trail behind `cur` (one snapshot), its problems added to `result`:
    every segment verified (`archive_verify.verify_segments`), every `trail.archived` of
    the live trail (`recorded`, read now if None) naming a segment there with its sha256,
    the archive reaching the live trail's first record (and `expect_last_seq`) and ending
    at the hash the live trail continues, live rows it also holds hashing alike. The live
    trail's own records are not verified here (`verify_snapshot`)."""
    from ..archive_verify import check_recorded, recorded_segments, verify_segments

    if recorded is None:
        recorded = recorded_segments(cur)
    first = cur.execute("SELECT min(seq) FROM events").fetchone()[0] or 1
    chain = verify_segments(
        target, result, trusted_keys=trusted_keys, trail_id=meta.get("trail_id")
    )
    check_recorded(target, recorded, result)
    _check_meeting(cur, chain, first, result)
    want = max(first - 1, expect_last_seq or 0)
    if chain.last_seq < want:
        result.add(
            "segment_missing",
            chain.last_seq + 1,
            f"records #{chain.last_seq + 1}..#{want} are missing from the archive (it ends at "
            f"#{chain.last_seq}; the live trail begins at #{first})",
        )
    return chain, first


def _check_meeting(cur: PortableCursor, chain, first: int, result: VerifyResult) -> None:
    """Where archive and live trail meet: the segment ending just before the live trail's
    first record ends at the hash that record names, and live rows the archive also holds
    (archived, kept by retention) hash as their archived copies."""
    if first > 1:
        before = [s for s in chain.segments if s.last_seq == first - 1]
        prev = prev_hash_of(cur, first)
        if not before:
            return  # the archive ends short of the live trail: segment_missing, by the caller
        if prev is None or before[0].meta.get("last_hash") != prev.hex():
            result.add(
                "segment_changed",
                first - 1,
                f"{before[0].label} does not end where the live trail (#{first}) continues",
            )
    for seg in chain.segments:
        if seg.table is None or seg.last_seq < first:
            continue
        h = bytes.fromhex(seg.meta.get("prev_hash", ""))
        hashes = {}
        for seq, rec in zip(
            seg.table.column("seq").to_pylist(), seg.table.column("record").to_pylist(), strict=True
        ):
            h = sha256(h + rec).digest()
            if seq >= first:
                hashes[seq] = h
        if not hashes:
            continue
        rows = cur.execute(
            "SELECT seq, hash FROM events WHERE seq BETWEEN ? AND ?", [min(hashes), max(hashes)]
        ).fetchall()
        bad = sorted(seq for seq, h in rows if hashes.get(seq) != bytes(h))
        if bad:
            result.add(
                "record_changed",
                bad[0],
                f"record #{bad[0]} ({len(bad)} in all): the live trail's copy differs from the "
                f"archived one in {seg.label}",
            )

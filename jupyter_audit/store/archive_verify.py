"""Reading an archive back: verify its segments as one chain, alone or with the live trail,
and lay archive + live trail out as one trail file for `verify`, `export` and `show`.

Every problem names the segment file and its seq range: a file edited (sha256 or content),
missing (a gap in the chain, or a file the live trail's `trail.archived` records that is not
there), renamed or reordered (a file whose name, metadata and neighbours disagree). It only
reads archives and trails: it never writes to a trail nor imports the writer.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

import pyarrow as pa

from .archive import (
    SegmentError,
    check_segment,
    decode_segment,
    manifest_name,
    parse_segment_name,
    segment_name,
)
from .archive_target import ArchiveTarget
from .canonical import GENESIS_HASH
from .checkpoints import default_checkpoint_path
from .errors import TrailError
from .merkle import MerkleFrontier
from .schema import FORMAT_VERSION, connect, initialise, open_readable
from .signing import load_public
from .verify import VerifyResult, verify_connection, verify_path

_LEAF_PREFIX = sha256(b"\x00")


@dataclass
class ArchiveSegment:
    """One segment file as read back: where, its range, its rows (None if unreadable)."""

    file: str
    first_seq: int
    last_seq: int
    table: pa.Table | None
    meta: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.file} (#{self.first_seq}..#{self.last_seq})"


def read_segments(target: ArchiveTarget, result: VerifyResult) -> list[ArchiveSegment]:
    """Every segment of `target`, by seq, checked against its manifest and its name; each
    problem is added to `result` (codes `segment_changed`, `segment_reordered`)."""
    names = target.names()
    files = [n for n in names if n.endswith(".parquet")]
    segments = []
    for name in files:
        data = target.get(name)
        try:
            wanted = json.loads(target.get(manifest_name(name)))
        except Exception:  # noqa: BLE001 - missing or unreadable: said below
            wanted = None
        try:
            table, meta = decode_segment(data)
        except SegmentError as e:
            named = parse_segment_name(name)
            where = f"{name} (#{named[0]}..#{named[1]})" if named else name
            result.add("segment_changed", named[0] if named else None, f"{where}: {e}")
            continue
        seg = ArchiveSegment(name, int(meta["first_seq"]), int(meta["last_seq"]), table, meta)
        if wanted is None:
            result.add("segment_changed", seg.first_seq, f"{seg.label}: its manifest is missing")
        elif wanted.get("sha256") != sha256(data).hexdigest():
            result.add(
                "segment_changed",
                seg.first_seq,
                f"{seg.label}: the file was edited (its sha256 differs from its manifest)",
            )
        if name != segment_name(seg.first_seq, seg.last_seq):
            result.add(
                "segment_reordered",
                seg.first_seq,
                f"{name} holds records #{seg.first_seq}..#{seg.last_seq}: renamed or reordered",
            )
        segments.append(seg)
    segments.sort(key=lambda s: (s.first_seq, s.last_seq))
    return segments


@dataclass
class ArchiveChain:
    """Where the archive's chain ends, for the live trail to continue it."""

    last_seq: int = 0
    last_hash: bytes = GENESIS_HASH
    frontier: MerkleFrontier = field(default_factory=MerkleFrontier)
    trail_id: str | None = None
    segments: list[ArchiveSegment] = field(default_factory=list)


def verify_segments(
    target: ArchiveTarget,
    result: VerifyResult,
    *,
    trusted_keys=None,
    trail_id: str | None = None,
) -> ArchiveChain:
    """Verify `target`'s segments as one chain from record #1; problems go to `result`."""
    chain = ArchiveChain(trail_id=trail_id)
    segments = read_segments(target, result)
    chain.segments = segments
    if not segments:  # an archive emptied, or the wrong place: never a pass
        result.add("segment_missing", 1, f"{target.url} holds no segment")
    trusted: set[bytes] = set(trusted_keys or [])
    if not trusted and segments:
        try:
            trusted.add(load_public(segments[0].meta["checkpoint"]["public_key"]))
        except Exception:  # noqa: BLE001 - the checkpoint check says it
            pass
        result.key_source = "archive (trust on first use; pass --pubkey to pin)"
    elif trusted:
        result.key_source = "pinned"
    prev: ArchiveSegment | None = None
    for seg in segments:
        meta = seg.meta
        if chain.trail_id is None:
            chain.trail_id = meta.get("trail_id")
        elif meta.get("trail_id") != chain.trail_id:
            result.add("segment_changed", seg.first_seq, f"{seg.label}: a segment of another trail")
            continue
        want = chain.last_seq + 1
        if seg.first_seq > want:
            after = f"after {prev.label}" if prev else "before it"
            result.add(
                "segment_missing",
                want,
                f"records #{want}..#{seg.first_seq - 1} are missing from the archive "
                f"(no segment {after}; next is {seg.label})",
            )
        elif seg.first_seq < want:
            result.add(
                "segment_reordered",
                seg.first_seq,
                f"{seg.label} overlaps {prev.label if prev else 'the segment before'}",
            )
            continue
        elif prev is not None and meta.get("prev_hash") != chain.last_hash.hex():
            result.add(
                "segment_reordered",
                seg.first_seq,
                f"{seg.label} does not link to {prev.label} (prev hash differs)",
            )
        elif prev is not None and meta.get("frontier_before", {}).get("hashes") != (
            chain.frontier.to_hex()
        ):
            result.add(
                "segment_changed",
                seg.first_seq,
                f"{seg.label}: its Merkle frontier differs from where {prev.label} ends",
            )
        check = check_segment(seg.table, meta, trusted)
        result.warnings.extend(f"{seg.label}: {w}" for w in check.warnings)
        for seq, what in check.problems:
            result.add("segment_changed", seq, f"{seg.label}: {what}")
        result.events += seg.table.num_rows if seg.table is not None else 0
        result.checkpoints_checked += 1
        if check.last_hash is not None and check.frontier is not None:
            chain.last_hash, chain.frontier = check.last_hash, check.frontier
            cp = meta["checkpoint"]
            if not check.problems:
                result.checkpoint = {
                    k: cp.get(k) for k in ("seq", "hash", "merkle_root", "time", "key_id")
                }
        chain.last_seq = max(chain.last_seq, seg.last_seq)
        prev = seg
    result.last_seq = chain.last_seq
    result.last_hash = chain.last_hash.hex()
    if result.ok:
        result.intact_upto = chain.last_seq
    return chain


def recorded_segments(con) -> list[dict]:
    """The `trail.archived` payloads of a live trail, by seq."""
    return [
        json.loads(bytes(rec))["payload"]
        for (rec,) in con.execute(
            "SELECT record FROM events WHERE kind = 'trail.archived' ORDER BY seq"
        ).fetchall()
    ]


def check_recorded(target: ArchiveTarget, recorded: list[dict], result: VerifyResult) -> None:
    """Each segment the live trail records as archived is in the archive, unedited."""
    have = set(target.names())
    for p in recorded:
        label = f"{p['file']} (#{p['first_seq']}..#{p['last_seq']})"
        if p["file"] not in have:
            result.add(
                "segment_missing",
                p["first_seq"],
                f"{label}, recorded in the live trail as archived, is missing from the archive",
            )
        elif sha256(target.get(p["file"])).hexdigest() != p["sha256"]:
            result.add(
                "segment_changed",
                p["first_seq"],
                f"{label}: the file differs from the one the live trail recorded (sha256)",
            )


def combined_trail(
    target: ArchiveTarget,
    scratch: Path,
    live_path=None,
    chain: ArchiveChain | None = None,
    *,
    trusted_keys=None,
    result: VerifyResult | None = None,
    live: Callable | None = None,
) -> Path:
    """A trail file in `scratch` holding the archive's records followed by the live trail's
    (tables and meta from the live trail), or the archive alone (derived tables rebuilt):
    what `verify`, `export` and `show` read to see archive + live trail as one. The live
    trail is the DuckDB file `live_path`, or comes through `live(con, last_archived)`, which
    copies another trail's live part (`pg.combined`: a PostgreSQL trail) into `con`: its
    meta, derived tables, identities and the records after `last_archived`. Live rows the
    archive holds too (archived, not yet removed) are not copied: with `result`, each from
    `live_path` must hash as its archived copy does (else `record_changed`; `live` checks
    its own before it is called)."""
    from .queries import rebuild_derived

    if chain is None:
        chain = verify_segments(target, VerifyResult(), trusted_keys=trusted_keys)
    path = scratch / "combined.duckdb"
    con = connect(path)
    try:
        initialise(con)
        columns = [r[0] for r in con.execute("DESCRIBE events").fetchall()]
        if live_path is not None:
            live_con, _meta = open_readable(live_path)  # refuses a trail of unknown format
            live_con.close()
            con.execute(f"ATTACH '{_quoted(live_path)}' AS live (READ_ONLY)")
        last_archived = 0
        identities: dict[str, str] = {}
        for seg in chain.segments:
            if seg.table is None or seg.first_seq <= last_archived:
                continue
            _insert_segment(con, seg, columns)
            identities.update(seg.meta.get("identities") or {})
            last_archived = seg.last_seq
        if live_path is not None:
            con.execute("DELETE FROM meta")
            con.execute("INSERT INTO meta SELECT * FROM live.meta")
            for table in ("identities", "client_events", "traces", "trace_users", "service_tokens"):
                cols = _common_columns(con, table)
                con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM live.{table}")
            if result is not None:
                _compare_overlap(con, last_archived, result)
            cols = _common_columns(con, "events")  # the live trail may be of an older format
            con.execute(
                f"INSERT INTO events ({cols}) SELECT {cols} FROM live.events WHERE seq > ?",
                [last_archived],
            )
            con.execute("DETACH live")
        elif live is not None:
            live(con, last_archived)
        else:
            con.execute("UPDATE meta SET value = ? WHERE key = 'trail_id'", [chain.trail_id or ""])
            con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", [str(last_archived)])
            con.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_hash'", [chain.last_hash.hex()]
            )
            con.execute(
                "UPDATE meta SET value = ? WHERE key = 'frontier'", [chain.frontier.to_hex()]
            )
        if identities:  # an empty archive has none
            con.executemany(
                "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, 0)",
                [[i, s, json.loads(s).get("username")] for i, s in sorted(identities.items())],
            )
        if live_path is None and live is None:
            rebuild_derived(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path


def _compare_overlap(con, last_archived: int, result: VerifyResult) -> None:
    """Live rows up to `last_archived` against the archived ones in the combined trail:
    the same chain hash at each seq (the live copy's record and columns are checked by the
    live trail's own verification, `verify_archive`)."""
    row = con.execute(
        "SELECT min(l.seq), count(*) FROM live.events l JOIN events c USING (seq) "
        "WHERE l.seq <= ? AND l.hash IS DISTINCT FROM c.hash",
        [last_archived],
    ).fetchone()
    if row[0] is not None:
        result.add(
            "record_changed",
            row[0],
            f"record #{row[0]} ({row[1]} in all): the live trail's copy differs from the "
            "archived one",
        )


def _common_columns(con, table: str) -> str:
    """The columns `table` has both in the combined trail and in the attached live one."""
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "AND database_name IN (current_database(), 'live') "
        "GROUP BY column_name HAVING count(DISTINCT database_name) = 2 ORDER BY min(column_index)",
        [table],
    ).fetchall()
    return ", ".join(f'"{name}"' for (name,) in rows)


def _quoted(path) -> str:
    return str(path).replace("'", "''")


_FROM_RECORD = {
    "kind": "json_extract_string(r, '$.kind')",
    "time": "strptime(json_extract_string(r, '$.time'), '%Y-%m-%dT%H:%M:%S.%fZ')::TIMESTAMP",
    "trace_id": "json_extract_string(r, '$.trace_id')",
    "kernel_id": "json_extract_string(r, '$.kernel_id')",
    "notebook": "json_extract_string(r, '$.notebook')",
    "msg_id": "json_extract_string(r, '$.msg_id')",
    "identity_id": "json_extract_string(r, '$.identity_id')",
    "event_id": "json_extract_string(r, '$.event_id')",
}


def _insert_segment(con, seg: ArchiveSegment, columns: list[str]) -> None:
    """A segment's rows into the `events` table of a combined trail: the live table's
    columns, read from the records (prev_hash and leaf recomputed)."""
    assert seg.table is not None
    records = seg.table.column("record").to_pylist()
    prev, hashes, leaves = [], [], []
    h = bytes.fromhex(seg.meta["prev_hash"])
    for rec in records:
        prev.append(h)
        h = sha256(h + rec).digest()
        hashes.append(h)
        d = _LEAF_PREFIX.copy()
        d.update(rec)
        leaves.append(d.digest())
    rows = seg.table.select(["seq", "record"])
    for name, values in (("hash", hashes), ("prev_hash", prev), ("leaf", leaves)):
        rows = rows.append_column(name, pa.array(values, pa.binary()))
    con.register("_segment", rows)
    try:
        select = []
        for col in columns:
            if col in rows.column_names:
                select.append(col)
            elif col in _FROM_RECORD:
                select.append(f"{_FROM_RECORD[col]} AS {col}")
        con.execute(
            f"INSERT INTO events BY NAME SELECT {', '.join(select)} "
            "FROM (SELECT *, decode(record) AS r FROM _segment)"
        )
    finally:
        con.unregister("_segment")


def verify_archive(
    target: ArchiveTarget,
    live_path=None,
    *,
    trusted_keys=None,
    checkpoint_files=(),
    deep=False,
    expect_last_seq: int | None = None,
) -> VerifyResult:
    """`jupyter audit verify --archive`: the archive's segments alone, or archive + live trail
    as one chain (every check of `verify` on the whole, plus what the live trail recorded).
    `expect_last_seq`: the archive must reach this record (segments deleted at its tail
    leave a chain that verifies, only shorter)."""
    result = VerifyResult(independent_copy=bool(checkpoint_files))
    trail_id = None
    recorded: list[dict] = []
    if live_path is not None:
        con, meta = open_readable(live_path)
        try:
            trail_id = meta.get("trail_id")
            recorded = recorded_segments(con)
        finally:
            con.close()
    chain = verify_segments(target, result, trusted_keys=trusted_keys, trail_id=trail_id)
    check_recorded(target, recorded, result)
    if expect_last_seq is not None and chain.last_seq < expect_last_seq:
        result.add(
            "segment_missing",
            chain.last_seq + 1,
            f"records #{chain.last_seq + 1}..#{expect_last_seq} are missing from the archive "
            f"(it ends at #{chain.last_seq}; segments deleted at its tail?)",
        )
    if live_path is None:
        return result
    with tempfile.TemporaryDirectory(prefix="jupyter-audit-verify-") as scratch:
        path = combined_trail(target, Path(scratch), live_path, chain, result=result)
        con, meta = open_readable(path)
        try:
            whole = verify_connection(
                con,
                meta,
                checkpoint_files=[default_checkpoint_path(Path(live_path)), *checkpoint_files],
                trusted_keys=trusted_keys,
                deep=deep,
                independent_copy=bool(checkpoint_files),
            )
        finally:
            con.close()
    # the live trail on its own too: its rows the archive also holds are not in the
    # combined chain, and an edit there (a stored column, a derived row) must still show
    alone = verify_path(
        live_path,
        checkpoint_files=[default_checkpoint_path(Path(live_path)), *checkpoint_files],
        trusted_keys=trusted_keys,
    )
    for p in result.problems:
        whole.add(p["problem"], p["seq"], p["detail"])
    seen = {(p["problem"], p["seq"]) for p in whole.problems}
    for p in alone.problems:
        if (p["problem"], p["seq"]) not in seen:
            whole.add(p["problem"], p["seq"], f"in the live trail: {p['detail']}")
    whole.warnings = result.warnings + whole.warnings
    return whole


def open_combined(target: ArchiveTarget, scratch: Path, live_path=None, *, trusted_keys=None):
    """(read-only connection, meta) of archive + live trail as one (for export and show);
    raises TrailError when the archive does not verify (nothing unverified is shown)."""
    result = VerifyResult()
    chain = verify_segments(target, result, trusted_keys=trusted_keys)
    if not result.ok:
        raise TrailError(f"the archive does not verify: {result.detail}")
    return open_readable(combined_trail(target, scratch, live_path, chain))


__all__ = ["FORMAT_VERSION", "verify_archive", "open_combined", "combined_trail"]

"""Verification of a trail: chain, sequence, identity snapshots, signed checkpoints.

Reports the first damaged record and what is wrong with it. Used by `jupyter audit verify`,
the REST `verify` endpoint and the Writer when it opens a trail. It only reads: it must never
write to a trail, and never import the writer (the writer imports it).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Literal

import pyarrow as pa

from .canonical import GENESIS_HASH
from .chain import prev_column_mismatch, prev_hash_of, record_prev_hash
from .chain_check import ChainScan
from .checkpoints import (
    archived_message,
    checkpoint_message,
    default_checkpoint_path,
    read_checkpoint_files,
    rotation_message,
)
from .errors import TrailError
from .merkle import MerkleLevels
from .schema import FORMAT_VERSION, check_version, connect, open_readable
from .signing import key_id, load_public, verify_signature
from .token_log import token_rows_against_log
from .traces import derived_differences, derived_differences_after_archive

PROBLEMS = {
    "record_changed": "record changed",
    "record_missing": "record missing",
    "records_reordered": "records reordered",
    "tail_truncated": "tail truncated below a signed checkpoint",
    "checkpoint_signature_invalid": "checkpoint signature invalid",
    "checkpoint_mismatch": "chain rewritten before a signed checkpoint",
    "identity_changed": "identity snapshot changed",
    "identity_missing": "identity snapshot missing",
    "column_mismatch": "record changed (a stored column differs from the signed record)",
    "derived_changed": "derived table changed (differs from what the log says)",
    "meta_changed": "the writer's high-water mark was edited",
    "event_ids_changed": "a client event id names no record of the log (its events would be "
    "acknowledged as duplicates and dropped)",
    "foreign_objects": "the trail file holds functions or views of its own",
    "check_failed": "a check could not run on this trail (it may have been altered)",
    "tokens_changed": "a service token differs from what the log says",
    "segment_missing": "an archived segment is missing",
    "segment_changed": "an archived segment was edited",
    "segment_reordered": "archived segments renamed or reordered",
    "archived_unsigned": "a trail.archived event is not signed by a trusted key",
}


@dataclass
class VerifyResult:
    ok: bool = True
    events: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH.hex()
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str | None = None
    problems: list = field(default_factory=list)
    checkpoint: dict | None = None  # the newest signed checkpoint the records match
    signed: dict | None = None  # the newest checkpoint whose signature verified
    checkpoints_checked: int = 0
    intact_upto: int = 0  # every record up to this one hashes and links
    checkpoint_sources: list = field(default_factory=list)  # files that held checkpoints
    independent_copy: bool = False  # a checkpoint copy away from the trail was read
    key_source: str = ""
    warnings: list = field(default_factory=list)

    def __post_init__(self) -> None:
        # the signed `trail.archived` payload the live trail continues (not reported)
        self.covering: dict | None = None

    def add(self, code: str, seq: int | None, detail: str) -> None:
        self.problems.append({"problem": code, "seq": seq, "detail": detail})
        self.ok = False
        first = min(self.problems, key=lambda p: (p["seq"] is None, p["seq"] if p["seq"] else 0))
        self.first_bad_seq = first["seq"]
        self.problem = PROBLEMS[first["problem"]]
        self.detail = first["detail"]

    def to_dict(self) -> dict:
        return asdict(self)


def _trusted_keys(con, trail_id: str, pinned, result: VerifyResult, cps: list[dict]):
    """Keys allowed to sign: the pinned ones (or the first checkpoint's, trust on first use),
    extended by `key.rotated` events signed by an already trusted key."""
    trusted: set[bytes] = set(pinned or [])
    if trusted:
        result.key_source = "pinned"
    else:
        first = min((c for c in cps if c.get("public_key")), key=lambda c: c["seq"], default=None)
        if first is not None:
            try:
                trusted.add(load_public(first["public_key"]))
            except Exception:  # noqa: BLE001
                pass
        result.key_source = "trail (trust on first use; pass --pubkey to pin)"
    rows = con.execute(
        "SELECT seq, record FROM events WHERE kind = 'key.rotated' ORDER BY seq"
    ).fetchall()
    for seq, rec in rows:
        try:
            p = json.loads(bytes(rec))["payload"]
            new_pub = load_public(p["new_public_key"])
            msg = rotation_message(trail_id, p["new_public_key"], p["new_key_id"])
            if any(verify_signature(k, p["signature"], msg) for k in trusted):
                trusted.add(new_pub)
            else:
                result.warnings.append(f"key.rotated at #{seq} not signed by a trusted key")
        except Exception:  # noqa: BLE001
            result.warnings.append(f"key.rotated at #{seq} unreadable")
    return trusted


# Every stored column of `events` against the signed record it sits beside, in DuckDB (in a
# thread of its own, beside the hashing). A canonical record's top-level keys come in a fixed
# order: those before the payload (event_id .. op_index) hold no object, so the first
# occurrence of each key is the record's own; those after it (seq .. withheld) are matched as
# one suffix anchored at the record's end (`_SUFFIX`), as a payload may hold keys of the same
# names. A format-3 trail's prev_hash column is compared with the hash of the record before
# (`chain.prev_column_mismatch`; format 4 stores none); the Merkle leaf is checked by the
# chain scan, which hashes every record anyway.
_STRING = r'"(?:[^"\\]|\\.)*"'
_STRINGS = r"\[(?:" + _STRING + r"(?:," + _STRING + r")*)?\]"
_SUFFIX = (
    r',"seq":[0-9]+,"session_id":(?:null|"[^"\\]*"),"time":"[^"\\]*",'
    r'"trace_id":(?:null|"[^"\\]*"),"v":[0-9]+,"withheld":' + _STRINGS + r"\}$"
)
_COLUMNS = """
SELECT seq, notebook, r,
    ',"event_id":"' || event_id || '","flags":' AS e1,
    ',"identity_id":' || coalesce('"' || identity_id || '"', 'null') || ',"kernel_id":'
        || coalesce('"' || kernel_id || '"', 'null') || ',"kernel_time":' AS e2,
    ',"kind":"' || kind || '","msg_id":' || coalesce('"' || msg_id || '"', 'null')
        || ',"notebook":' AS e3,
    e3 || coalesce(to_json(notebook)::VARCHAR, 'null') || ',"op_index":' AS e3n,
    ',"time":"' || strftime(time, '%Y-%m-%dT%H:%M:%S.%fZ') || '","trace_id":'
        || coalesce('"' || trace_id || '"', 'null') || ',"v":' AS e4
FROM (SELECT *, decode(record) AS r FROM events)
"""
# every part non-null, so that DuckDB can skip the slower alternatives row by row
_COLUMNS_MATCH = """
    starts_with(r, '{"capped":[')
    AND substr(r, position(',"event_id":"' IN r), length(e1)) = e1
    AND substr(r, position(',"identity_id":' IN r), length(e2)) = e2
    -- the notebook as DuckDB writes a JSON string (JCS's way too), else read from the record
    AND (substr(r, position(',"kind":"' IN r), length(e3n)) = e3n
        OR substr(r, position(',"kind":"' IN r), length(e3)) = e3
            AND notebook IS NOT DISTINCT FROM json_extract_string(substr(r,
                position(',"notebook":' IN r) + 12,
                position(',"op_index":' IN r) - position(',"notebook":' IN r) - 12), '$'))
    -- a record ends with its time and trace, as most do, or the anchored suffix holds them
    AND (ends_with(r, e4 || '1,"withheld":[]}') OR contains(regexp_extract(r, ?, 0), e4))
"""
_COLUMNS_OK = f"SELECT count(*) FROM ({_COLUMNS}) WHERE {_COLUMNS_MATCH}"
_COLUMNS_FIRST_BAD = (
    f"SELECT min(seq) FROM ({_COLUMNS}) WHERE NOT coalesce({_COLUMNS_MATCH}, false)"
)
_COLUMN_NAMES = "seq, kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, event_id"


def _column_check(
    cursor, out: list, format_version: int, derived: bool = True, archived: dict | None = None
) -> None:
    """In DuckDB, beside the hashing: every column of `events` must agree with the signed
    record (`_COLUMNS_MATCH`; the rows that differ are looked for only when some do), and
    the derived tables with the log (by the rules of the trail's `format_version`). A check
    that raises is a finding, never a pass."""
    try:
        bad = None
        total = cursor.execute("SELECT count(*) FROM events").fetchone()[0]
        if cursor.execute(_COLUMNS_OK, [_SUFFIX]).fetchone()[0] != total:
            bad = cursor.execute(_COLUMNS_FIRST_BAD, [_SUFFIX]).fetchone()[0]
        prev = prev_column_mismatch(cursor)
        out.append(min((x for x in (bad, prev) if x is not None), default=None))
    except Exception as e:  # noqa: BLE001 - e.g. an undecodable record; or a planted macro
        out.append(("error", type(e).__name__))
    if not derived:  # counted over records no signed trail.archived accounts for
        out.append(None)
        return
    try:
        if archived is not None:  # the head archived: with who took part there (signed)
            out.append(derived_differences_after_archive(cursor, format_version, archived))
            return
        out.append(derived_differences(cursor, format_version))
    except Exception as e:  # noqa: BLE001 - as above
        out.append(("error", type(e).__name__))


SNAPSHOT_CURSORS = 3  # the checks' own, the column check's (a thread), the chain scan's


class Snapshot:
    """A live trail seen at one moment: cursors whose read transactions began between the
    same two stored batches. Used as the connection of `verify_connection`: queries go to
    the first; `cursor()` hands out the others (the column check's, then the chain scan's,
    which its re-read reuses once the first read is done)."""

    def __init__(self, cursors):
        self._first, self._spare, self._handed = cursors[0], list(cursors[1:]), 0

    def cursor(self):
        cur = self._spare[min(self._handed, len(self._spare) - 1)]
        self._handed += 1
        return _Lent(cur)

    def __getattr__(self, name):
        return getattr(self._first, name)


class _Lent:
    """A snapshot's cursor lent to a check: its `close()` leaves it open for the next."""

    def __init__(self, cur):
        self._cur = cur

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._cur, name)


def collect_checkpoints(
    con, meta: dict, checkpoint_files, trusted_keys, result: VerifyResult, file_lines=None
) -> tuple[list[dict], set[bytes], dict[int, list[dict]]]:
    """(every signed checkpoint, in the trail and in `checkpoint_files`; the keys trusted to
    sign; the checkpoints by the seq they cover). Any backend: `con` runs portable SQL.
    `file_lines`: the files as `read_checkpoint_files` read them before a live trail's
    snapshot began (a line is written once its records are committed: read after the
    snapshot, a newer one would name records the snapshot does not hold)."""
    trail_id = meta.get("trail_id", "")
    # signed checkpoints: inside the trail and in the plain files beside / away from it
    cps: list[dict] = []
    for seq, rec in con.execute(
        "SELECT seq, record FROM events WHERE kind = 'checkpoint' ORDER BY seq"
    ).fetchall():
        try:
            body = json.loads(bytes(rec))["payload"]
            body["_source"] = f"trail #{seq}"
            cps.append(body)
        except (ValueError, KeyError, TypeError):
            pass  # the chain check reports the damaged record
    in_trail = bool(cps)
    file_cps, unreadable = file_lines or read_checkpoint_files(checkpoint_files)
    for where in unreadable:
        result.add("checkpoint_signature_invalid", None, f"{where}: unreadable checkpoint line")
    cps.extend(file_cps)
    result.checkpoint_sources = sorted({c["_source"].rsplit(":", 1)[0] for c in file_cps})
    if not file_cps and checkpoint_files and (in_trail or int(meta.get("last_seq") or 0)):
        names = ", ".join(str(p) for p in checkpoint_files)
        result.warnings.append(
            f"checkpoint file missing or empty ({names}): the tail is bounded only by "
            "the checkpoints inside the trail and its writer's high-water mark"
        )
    trusted = _trusted_keys(con, trail_id, trusted_keys, result, cps)
    want_at: dict[int, list[dict]] = {}
    for cp in cps:
        if isinstance(cp.get("seq"), int):
            want_at.setdefault(cp["seq"], []).append(cp)
    return cps, trusted, want_at


def verify_connection(
    con,
    meta: dict,
    *,
    checkpoint_files=(),
    trusted_keys=None,
    deep: bool = False,
    parallel_path=None,
    pool=None,
    independent_copy: bool = False,
    file_lines=None,
) -> VerifyResult:
    """Verify the trail behind `con`. With `parallel_path` (a file no process holds open for
    writing), the chain check runs in worker processes that open it read-only.
    `independent_copy`: `checkpoint_files` include a copy kept away from the trail (a
    mirror, an auditor's copy), without which a cut tail whose checkpoint lines were cut
    too cannot show. `file_lines`: those files read before a live trail's snapshot began
    (`collect_checkpoints`)."""
    result = VerifyResult(independent_copy=independent_copy)
    # a macro or view stored in the file could change what the checks below compute
    # (e.g. shadow a built-in function): the trail never holds any
    foreign = con.execute(
        "SELECT function_name FROM duckdb_functions() WHERE NOT internal UNION ALL "
        "SELECT view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall()
    if foreign:
        names = ", ".join(sorted({str(n) for (n,) in foreign}))[:200]
        result.add("foreign_objects", None, f"functions or views not made by the writer: {names}")
    trail_id = meta.get("trail_id", "")
    cps, trusted, want_at = collect_checkpoints(
        con, meta, checkpoint_files, trusted_keys, result, file_lines
    )

    # every column must match the records (in DuckDB, beside the hashing)
    col_out: list = []
    try:
        version = check_version(meta)
    except TrailError:  # a reader refused it already; compare by today's rules
        version = FORMAT_VERSION
    # records archived away (`trail.archived`): the live chain continues the archive's
    archived = signed_archived(con, trusted, trail_id, result)
    start, start_prev, covering = archived_start(con, result, archived)
    result.covering = covering
    col_thread = threading.Thread(
        target=_column_check,
        args=(
            con.cursor(),
            col_out,
            version,
            start == 1 or covering is not None,
            None if covering is None else covering.get("traces") or {},
        ),
    )
    col_thread.start()

    # the chain: every record hashes to its stored hash and links to the one before
    max_seq = con.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
    result.last_seq = max_seq
    want = sorted(want_at)
    if parallel_path is not None and max_seq >= PARALLEL_MIN and (os.cpu_count() or 1) > 1:
        own_pool = pool is None
        pool = pool or chain_pool()
        try:
            ranges = _ranges(parallel_path, start, max_seq, want, deep, start_prev)
            pending = pool.map_async(_chain_worker, ranges)
            _check_identities(con, result)  # meanwhile, in this process
            segments = pending.get()
        finally:
            if own_pool:
                pool.terminate()
    else:
        _check_identities(con, result)
        segments = [_chain_range(con, start, max_seq, want, deep, start_prev)]
    conclude(
        con,
        result,
        segments,
        meta,
        max_seq=max_seq,
        start=start,
        start_prev=start_prev,
        covering=covering,
        deep=deep,
        col_thread=col_thread,
        col_out=col_out,
        cps=cps,
        trusted=trusted,
        tokens=True,
    )
    return result


def conclude(
    con,
    result: VerifyResult,
    segments: list[dict],
    meta: dict,
    *,
    max_seq: int,
    start: int,
    start_prev: bytes | None,
    covering: dict | None,
    deep: bool,
    col_thread: threading.Thread | None,
    col_out: list,
    cps: list[dict],
    trusted: set[bytes],
    tokens: bool,
) -> None:
    """The findings of a verification from its parts, whatever the backend: the chain
    `segments` (`ChainScan.segment`, in order), the column and derived-table check's
    `col_out` (`_column_check`'s shape; filled by `col_thread` when given), the writer's
    high-water mark in `meta`, the signed checkpoints; `tokens`: check service-token rows
    (a trail that keeps them). `con` runs portable SQL only."""
    leaves: list[bytes] = []
    hash_at: dict[int, bytes] = {}
    prev = start_prev or GENESIS_HASH
    good = 0
    n = 0
    broken = False
    for seg in segments:
        n += seg["rows"]
        if broken:
            continue
        if seg["first_prev"] is not None and seg["first_prev"] != prev:
            seg["bad"] = seg["bad"] or (seg["lo"], seg["lo"], None, None, None)
            seg["good_upto"] = seg["lo"] - 1
            seg["leaves"] = []
        leaves.extend(seg["leaves"])
        hash_at.update(seg["hash_at"])
        if seg["bad"]:
            seq, expected, h, rec, leaf_bad = seg["bad"]
            if leaf_bad:
                result.add("record_changed", seq, f"record #{seq}: Merkle leaf does not match")
            else:
                _diagnose(con, result, seq, expected, prev if seq == seg["lo"] else None, h, rec)
            good = seg["good_upto"]
            broken = True
            continue
        prev = seg["last_hash"] or prev
        good = seg["good_upto"]
    result.events = n
    result.last_hash = prev.hex()
    result.intact_upto = good
    # The signed chain hash at a checkpoint vouches for every record before it. The Merkle
    # roots (what export bundles prove against) are recomputed from the leaves with --deep.
    seen_at: dict[int, tuple[bytes, bytes | None]]  # seq -> (chain hash, Merkle root)
    if deep and start > 1:
        result.warnings.append(
            f"records #1..#{start - 1} are archived: Merkle roots are recomputed only with "
            "--archive"
        )
        deep = False
    if deep:
        tree = MerkleLevels(leaves)
        seen_at = {
            s: (h, tree.root(s)) for s, h in hash_at.items() if s <= good and s <= len(leaves)
        }
    else:
        seen_at = {s: (h, None) for s, h in hash_at.items() if s <= good}

    if col_thread is not None:
        col_thread.join()
    for found in col_out:
        if isinstance(found, tuple) and found[0] == "error":
            result.add("check_failed", None, f"a column or derived-table check failed: {found[1]}")
    if col_out and isinstance(col_out[0], int):
        result.add(
            "column_mismatch",
            col_out[0],
            f"record #{col_out[0]}: a stored column differs from the signed record "
            f"({_COLUMN_NAMES}; in format 3 also prev_hash)",
        )
    if len(col_out) > 1 and isinstance(col_out[1], tuple) and col_out[1][0] != "error":
        # not a record of the log: reported after any damage to the log itself, of which it
        # may only be a consequence
        trace_id, what = col_out[1]
        result.add("derived_changed", None, f"trace {trace_id}: {what}")

    # the writer's high-water mark (updated in the same transaction as every append)
    meta_seq = int(meta.get("last_seq") or 0)
    if max_seq and ("last_seq" not in meta or "last_hash" not in meta):
        result.add("meta_changed", None, "the writer's high-water mark is missing")
    if "last_seq" in meta and (
        meta_seq < max_seq
        or (
            meta_seq == max_seq and max_seq and meta.get("last_hash") not in (None, _last_hash(con))
        )
    ):
        result.add(
            "meta_changed",
            None,  # not a record: whatever it hides is reported at its own record
            f"the writer's high-water mark (#{meta_seq}) does not match the trail's last "
            f"record (#{max_seq})",
        )

    if meta_seq > max_seq:
        result.add(
            "tail_truncated",
            max_seq + 1,
            f"the trail ends at #{max_seq} but its writer had committed up to #{meta_seq}",
        )

    if tokens:
        _check_tokens(con, result, (covering or {}).get("tokens") if start > 1 else None)
    uncovered_from = 1 if covering is not None else start
    _check_checkpoints(
        cps,
        trusted,
        meta.get("trail_id", ""),
        seen_at,
        max_seq,
        broken,
        result,
        start,
        uncovered_from,
    )


def _diagnose(con, result: VerifyResult, seq, expected, prev, h, rec) -> None:
    """Name what is wrong at the first record that does not verify."""
    if rec is None:
        row = con.execute("SELECT hash, record FROM events WHERE seq = ?", [seq]).fetchone()
        if row is None:
            result.add("record_missing", seq, f"record #{seq} is missing")
            return
        h, rec = bytes(row[0]), bytes(row[1])
    if seq > expected:
        result.add(
            "record_missing",
            expected,
            f"records #{expected}..#{seq - 1} are missing"
            if seq - 1 > expected
            else f"record #{expected} is missing",
        )
        return
    if seq < expected:
        result.add("records_reordered", seq, f"record #{seq} appears twice")
        return
    try:
        inner = json.loads(rec)
        inner_seq = inner.get("seq")
    except (ValueError, AttributeError):
        result.add("record_changed", seq, f"record #{seq} is not valid JSON any more")
        return
    try:
        named_prev = record_prev_hash(rec)  # what the record says it follows
    except (ValueError, KeyError, TypeError):
        result.add("record_changed", seq, f"record #{seq}: content does not match its hash")
        return
    self_consistent = sha256(named_prev + rec).digest() == h
    if isinstance(inner_seq, int) and inner_seq != seq:
        result.add("records_reordered", seq, f"position #{seq} holds the record of #{inner_seq}")
    elif not self_consistent:
        result.add("record_changed", seq, f"record #{seq}: content does not match its hash")
    else:
        result.add("record_changed", seq, f"record #{seq} does not link to record #{seq - 1}")


PARALLEL_MIN = 200_000  # below this, one process is faster than starting workers
PARALLEL_MIN_BYTES = 256 * 1024 * 1024  # a file this large warms the workers up front
# Rows come back in insertion order, which is sequence order unless the file was edited; a
# segment that does not check out is read again in ORDER BY seq to name the damage exactly.
_CHAIN_SQL = "SELECT seq, hash, record, leaf FROM events WHERE seq BETWEEN ? AND ?"


def _chain_range(con, lo: int, hi: int, want, deep: bool, start_prev: bytes | None) -> dict:
    seg = _chain_scan(con, lo, hi, want, deep, start_prev, _CHAIN_SQL)
    if seg["bad"]:
        seg = _chain_scan(con, lo, hi, want, deep, start_prev, _CHAIN_SQL + " ORDER BY seq")
    return seg


def _chain_scan(con, lo, hi, want, deep, start_prev, query) -> dict:
    """Check records lo..hi: contiguous, each hashing to its stored hash and its stored
    Merkle leaf, each linking to the one before. `start_prev` None: take the stored hash of
    record lo - 1 (`chain.prev_hash_of`; a later segment, whose link to the segment before
    is checked by the caller).
    Returns the good prefix's leaves (with `deep`, for the Merkle roots), hashes at the
    wanted sequence numbers and the first bad record, if any."""
    first_prev = None
    if start_prev is None:
        start_prev = first_prev = prev_hash_of(con, lo) or b""
    check = ChainScan(lo, want, deep, start_prev)
    scan = con.cursor()
    reader = scan.sql(query, params=[lo, hi]).to_arrow_reader(65_536)
    for batch in reader:
        if check.bad:
            check.rows += batch.num_rows
            continue
        check.feed(
            batch.column(0).to_pylist(),
            batch.column(1).to_pylist(),
            _binary_views(batch.column(2)),
            batch.column(3).to_pylist(),
        )
    del reader
    scan.close()
    return check.segment(hi, first_prev)


def _binary_views(column) -> list:
    """The values of an Arrow binary column as memoryviews into its data buffer: hashing
    them skips copying a gigabyte of records into bytes objects (~17 % of the chain check)."""
    typecodes: dict[object, Literal["i", "q"]] = {pa.binary(): "i", pa.large_binary(): "q"}
    typecode = typecodes.get(column.type)
    if typecode is None or column.null_count:
        return column.to_pylist()
    _, offsets_buf, data_buf = column.buffers()
    first = column.offset
    offsets = memoryview(offsets_buf).cast(typecode)[first : first + len(column) + 1]
    data = memoryview(data_buf)
    return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _chain_worker(args) -> dict:
    path, lo, hi, want, deep, start_prev = args
    con = connect(path, read_only=True)
    try:
        return _chain_range(con, lo, hi, want, deep, start_prev)
    finally:
        con.close()


WORKERS = min(os.cpu_count() or 1, 4)


def _warm() -> None:
    """Worker initializer: a worker imports this module (and with it DuckDB and `schema`, what
    the chain check needs) to find this function, while the parent gets ready."""


def chain_pool():
    """Worker processes for the chain check (spawned: the parent holds DuckDB threads)."""
    import multiprocessing

    return multiprocessing.get_context("spawn").Pool(WORKERS, initializer=_warm)


def _ranges(path, start: int, max_seq: int, want, deep: bool, start_prev) -> list[tuple]:
    step = -(-(max_seq - start + 1) // WORKERS)
    return [
        (
            str(path),
            lo,
            min(lo + step - 1, max_seq),
            want,
            deep,
            start_prev if lo == start else None,
        )
        for lo in range(start, max_seq + 1, step)
    ]


def signed_archived(con, trusted, trail_id: str, result: VerifyResult) -> list[dict]:
    """The `trail.archived` payloads, by seq, signed (`archived_message`) by a trusted key
    for this trail; each other one is a problem (`archived_unsigned`): an event anyone with
    write access to the file could append must never let records leave the live trail."""
    honoured = []
    for seq, rec in con.execute(
        "SELECT seq, record FROM events WHERE kind = 'trail.archived' ORDER BY seq"
    ).fetchall():
        try:
            p = json.loads(bytes(rec))["payload"]
            msg = archived_message(p)
            ok = p.get("trail_id") == trail_id and any(
                key_id(k) == p.get("key_id") and verify_signature(k, p["signature"], msg)
                for k in trusted
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if ok:
            honoured.append(p)
        else:
            result.add(
                "archived_unsigned",
                seq,
                f"the trail.archived event at #{seq} is not signed by a trusted key of this "
                "trail: the records it claims archived are not vouched for",
            )
    return honoured


def archived_start(
    con, result: VerifyResult, archived: list[dict]
) -> tuple[int, bytes | None, dict | None]:
    """(first live record, the hash it links to, the signed `trail.archived` payload that
    ends just before it): (1, genesis, None) unless records were archived away, which only
    a signed `trail.archived` event (`archived`) ending just before the first record allows."""
    first = con.execute("SELECT min(seq) FROM events").fetchone()[0]
    if first is None or first <= 1:
        return 1, GENESIS_HASH, None
    for p in reversed(archived):
        try:
            if p["last_seq"] == first - 1:
                result.warnings.append(
                    f"records #1..#{first - 1} are archived ({p['archive']}); the counts of "
                    "traces with archived records, and checkpoints over them, are checked "
                    "with --archive"
                )
                return first, bytes.fromhex(p["last_hash"]), p
        except (ValueError, KeyError, TypeError):
            continue  # the chain check reports the damaged record
    missing = f"records #1..#{first - 1} are" if first > 2 else "record #1 is"
    result.add(
        "record_missing", 1, f"{missing} missing (no signed trail.archived event covers them)"
    )
    return first, None, None


def _last_hash(con) -> str | None:
    row = con.execute("SELECT hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return bytes(row[0]).hex() if row else None


def _check_tokens(con, result: VerifyResult, archived: dict | None = None) -> None:
    """Service token rows against the log and, for tokens whose `token.created` was
    archived away, what the signed `trail.archived` recorded of them (`archived`)."""
    wrong = token_rows_against_log(con, archived)
    for token_id, what in sorted(wrong.items())[:5]:
        result.add("tokens_changed", None, f"service token {token_id}: {what}")


def archived_prefix(con, trail_id: str) -> dict | None:
    """The signed `trail.archived` payload the live trail behind `con` continues (None:
    nothing archived, or no signed event covers its head), its keys trusted as `verify`
    trusts them without a pinned key."""
    cps = []
    for (rec,) in con.execute(
        "SELECT record FROM events WHERE kind = 'checkpoint' ORDER BY seq"
    ).fetchall():
        try:
            cps.append(json.loads(bytes(rec))["payload"])
        except (ValueError, KeyError, TypeError):
            pass
    scratch = VerifyResult()
    trusted = _trusted_keys(con, trail_id, None, scratch, cps)
    return archived_start(con, scratch, signed_archived(con, trusted, trail_id, scratch))[2]


def _check_identities(con, result: VerifyResult) -> None:
    edited = con.execute(
        "SELECT min(identity_id) FROM identities "
        "WHERE username IS DISTINCT FROM json_extract_string(snapshot, '$.username')"
    ).fetchone()[0]
    if edited is not None:
        first = con.execute(
            "SELECT min(seq) FROM events WHERE identity_id = ?", [edited]
        ).fetchone()[0]
        result.add(
            "identity_changed",
            first,
            f"identity {edited[:12]}…: its username column differs from its snapshot",
        )
    for iid, snapshot in con.execute("SELECT identity_id, snapshot FROM identities").fetchall():
        if sha256(snapshot.encode("utf-8")).hexdigest() != iid:
            first = con.execute(
                "SELECT min(seq) FROM events WHERE identity_id = ?", [iid]
            ).fetchone()[0]
            result.add(
                "identity_changed",
                first,
                f"identity snapshot {iid[:12]}… (used from #{first}) was edited",
            )
    missing = con.execute(
        "SELECT min(e.seq) FROM events e LEFT JOIN identities i USING (identity_id) "
        "WHERE e.identity_id IS NOT NULL AND i.identity_id IS NULL"
    ).fetchone()[0]
    if missing is not None:
        result.add(
            "identity_missing", missing, f"record #{missing} names a deleted identity snapshot"
        )


def _check_checkpoints(
    cps, trusted, trail_id, seen_at, max_seq, broken, result, start=1, covered_from=1
) -> None:
    """Every checkpoint signed by a trusted key must match the chain where it is; one below
    `covered_from` (the first live record no signed `trail.archived` accounts for) names
    records cut from the trail's head."""
    best = None
    for cp in sorted(cps, key=lambda c: c.get("seq") if isinstance(c.get("seq"), int) else -1):
        src = cp.get("_source", "?")
        body = {k: v for k, v in cp.items() if not k.startswith("_")}
        try:
            msg = checkpoint_message(body)
            pub = load_public(body["public_key"])
            seq = int(body["seq"])
        except Exception:  # noqa: BLE001
            result.add("checkpoint_signature_invalid", None, f"{src}: malformed checkpoint")
            continue
        result.checkpoints_checked += 1
        if body.get("trail_id") != trail_id:
            result.add("checkpoint_signature_invalid", seq, f"{src}: checkpoint of another trail")
            continue
        if pub not in trusted or key_id(pub) != body.get("key_id"):
            result.add(
                "checkpoint_signature_invalid",
                seq,
                f"{src}: checkpoint at #{seq} signed by an untrusted key {body.get('key_id')}",
            )
            continue
        if not verify_signature(pub, body.get("signature", ""), msg):
            result.add(
                "checkpoint_signature_invalid",
                seq,
                f"{src}: signature of the checkpoint at #{seq} does not verify",
            )
            continue
        if result.signed is None or seq >= result.signed["seq"]:
            result.signed = {k: body.get(k) for k in ("seq", "hash", "time", "key_id")}
        if seq > max_seq:
            result.add(
                "tail_truncated",
                max_seq + 1,
                f"{src}: a signed checkpoint covers #{seq}, but the trail ends at #{max_seq}",
            )
            continue
        got = seen_at.get(seq)
        if got is None and seq < covered_from:
            result.add(
                "record_missing",
                seq,
                f"{src}: a signed checkpoint covers #{seq}, but the trail begins at "
                f"#{covered_from} and no signed trail.archived event accounts for the records "
                "before it",
            )
            continue
        if got is None:
            if not broken and seq >= start:
                result.warnings.append(f"{src}: checkpoint #{seq} not reached")
            continue
        h, root = got
        if h.hex() != body["hash"]:
            result.add(
                "checkpoint_mismatch",
                seq,
                f"{src}: the chain at #{seq} differs from the signed checkpoint",
            )
            continue
        if body.get("tree_size") != seq or (root is not None and root.hex() != body["merkle_root"]):
            result.add(
                "checkpoint_mismatch",
                seq,
                f"{src}: the Merkle root at #{seq} differs from the signed checkpoint",
            )
            continue
        if best is None or seq >= best["seq"]:
            best = {k: body[k] for k in ("seq", "hash", "merkle_root", "time", "key_id")}
    result.checkpoint = best


def verify_path(path, *, checkpoint_files=None, trusted_keys=None, deep=False) -> VerifyResult:
    """Verify a trail file (server stopped). Raises TrailError for unusable files.
    `checkpoint_files`: copies of the checkpoints besides the file next to the trail (an
    independent copy, when kept where the trail's users cannot write)."""
    path = Path(path)
    pool = None
    if WORKERS > 1 and path.exists() and path.stat().st_size > PARALLEL_MIN_BYTES:
        pool = chain_pool()  # workers start importing while this process opens the file
    try:
        con, meta = open_readable(path)
        try:
            files = [default_checkpoint_path(path)] + list(checkpoint_files or [])
            return verify_connection(
                con,
                meta,
                checkpoint_files=files,
                trusted_keys=trusted_keys,
                deep=deep,
                parallel_path=path,
                pool=pool,
                independent_copy=bool(checkpoint_files),
            )
        finally:
            con.close()
    finally:
        if pool is not None:
            pool.terminate()

"""Archiving a live trail: sealed segments older than `archive_after` are written to the
archive, read back and verified; those older than `retention` then leave the live trail.

The order is what makes a kill at any moment harmless: (1) the trail is verified; (2) each
segment's Parquet file and manifest are written (a file already there, from a run that was
killed, is read back instead of replaced); (3) each copy is read back and checked against
its signed checkpoint and the live rows; (4) a `trail.archived` event records each segment
that may leave; (5) the trail is compacted without them (`TrailStore.compact`: on DuckDB a
fresh file, verified, swapped in atomically; on PostgreSQL the archived partitions dropped by
the maintenance role). Killed before (5), the live trail still holds every record and the
next run finishes the job; killed inside (5), the old file is whole. It works through a
`TrailStore` (the server's Writer, the collector's store, or one opened by `jupyter audit
archive`), which also plans the segments (`TrailStore.plan_archive`: on PostgreSQL a segment
is a whole partition), and never touches the trail file itself.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from .archive import (
    SEGMENT_ROWS,
    Segment,
    SegmentError,
    check_segment,
    decode_segment,
    encode_segment,
    identities_of,
    live_checkpoints,
    manifest,
    manifest_name,
    parse_segment_name,
    segment_rows,
)
from .archive_target import ArchiveError, ArchiveTarget
from .archive_verify import recorded_segments
from .canonical import GENESIS_HASH
from .errors import TrailError
from .merkle import MerkleFrontier
from .schema import FORMAT_VERSION
from .signing import load_public, public_b64
from .token_log import tokens_logged
from .traces import traces_in_range

log = logging.getLogger("jupyter_audit.archive")


def run_archive(
    store,
    target: ArchiveTarget,
    *,
    archive_after: timedelta,
    retention: timedelta | None,
    lock_for: timedelta | None = None,
    now: datetime | None = None,
    identity: dict,
    segment_rows: int = SEGMENT_ROWS,
) -> dict:
    """Archive what is due and remove from the live trail what retention allows (see the
    module docstring). `identity`: who the `trail.archived` events are recorded for.
    `retention` None: archive only, nothing leaves the live trail.
    Returns {"archived": [file, ...], "removed": [file, ...], "kept_from": seq}."""
    now = now or datetime.now(UTC)
    before = store.verify()
    if not before.ok:
        raise TrailError(
            f"the trail does not verify ({before.problem}: {before.detail}); nothing archived"
        )
    cur = store.cursor()
    first = cur.execute("SELECT min(seq) FROM events").fetchone()[0] or 1
    recorded = {(p["first_seq"], p["last_seq"]): p for p in recorded_segments(cur)}
    done_upto = max((last for _first, last in recorded), default=0)
    prev_hash, frontier = _chain_before(target, first, recorded)
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    lock_until = now + lock_for if lock_for else None
    # segments already in the archive (a run with retention still to come, or one killed)
    # are kept as they are; new ones continue after them
    items: list[tuple[Segment, bytes]] = []
    signed_live = {c["seq"]: c for c in live_checkpoints(cur, first - 1)}
    upto = first - 1
    for (lo, hi), name in _existing(target, first):
        if lo != upto + 1:
            raise ArchiveError(f"{name} does not continue the archive at #{upto + 1}")
        data = target.get(name)
        try:
            _table, meta = decode_segment(data)
        except SegmentError as e:
            raise ArchiveError(f"{name}: {e}") from None
        row = cur.execute("SELECT hash, time FROM events WHERE seq = ?", [hi]).fetchone()
        if row is None or bytes(row[0]).hex() != meta["checkpoint"].get("hash"):
            raise ArchiveError(f"{name}: its last record is not the live trail's #{hi}")
        items.append((Segment(lo, hi, meta["checkpoint"], row[1]), data))
        if manifest_name(name) not in target.names():  # a run killed between the two
            _put_manifest(target, name, data, meta, lock_until)
        upto = hi
    archived: list[str] = []
    removable: list[tuple[Segment, bytes, MerkleFrontier]] = []
    read_back: list[tuple[Segment, bytes]] = []

    def read_and_check(seg: Segment, data: bytes) -> None:
        nonlocal prev_hash, frontier
        prev_hash, frontier = _read_back(target, seg, data, prev_hash, frontier)
        read_back.append((seg, data))
        archived.append(seg.name)
        if (
            retention is not None
            and seg.last_time <= naive_now - retention
            and len(removable) == len(archived) - 1
        ):
            removable.append((seg, data, frontier))

    for seg, data in items:
        read_and_check(seg, data)
        _check_signer(store, seg, signed_live)
    # new segments continue where the archive ends (its chain and Merkle frontier, checked)
    for seg in store.plan_archive(
        cur, upto, naive_now - archive_after, segment_rows, frontier.copy()
    ):
        data = _write(cur, target, seg, store.trail_id, prev_hash, frontier, lock_until)
        read_and_check(seg, data)
    _check_recorded_in_archive(target, recorded, first, read_back)
    # who took part in each trace over the archived records (cumulative, signed): the live
    # trail alone checks and rebuilds trace_users with it
    traces, tokens = _archived_before(recorded, first)
    for seg, data, after in removable:
        tokens = tokens_logged(cur, seg.first_seq, seg.last_seq, tokens)
        for tid, users in traces_in_range(cur, seg.first_seq, seg.last_seq, FORMAT_VERSION).items():
            traces[tid] = sorted(set(traces.get(tid, [])) | set(users))
        if (seg.first_seq, seg.last_seq) in recorded or seg.last_seq <= done_upto:
            continue  # recorded by a run killed before its compaction
        store.record_archived(
            {
                "first_seq": seg.first_seq,
                "last_seq": seg.last_seq,
                "last_hash": seg.checkpoint["hash"],
                "checkpoint_seq": seg.checkpoint["seq"],
                "file": seg.name,
                "sha256": _sha256(data),
                "bytes": len(data),
                "archive": target.url,
                # the Merkle subtrees of records 1..last_seq: proofs of later records
                "frontier": after.to_hex(),
                "traces": dict(sorted(traces.items())),
                # the state of every token created in records #1..last_seq (signed): the
                # live trail alone still accepts them, and refuses a row planted as one
                "tokens": dict(sorted(tokens.items())),
            },
            identity,
        )
    keep_after = max([done_upto] + [s.last_seq for s, _d, _f in removable])
    if keep_after >= first and retention is not None:
        store.compact(keep_after)
        log.info("audit trail: records #%d..#%d left the live trail (archived)", first, keep_after)
    return {
        "archived": archived,
        "removed": [s.name for s, _d, _f in removable],
        "kept_from": max(first, keep_after + 1),
    }


def _archived_before(recorded: dict, first: int) -> tuple[dict[str, list[str]], dict]:
    """The participants per trace and the service tokens over records #1..#first-1 that the
    `trail.archived` ending there recorded (empty when nothing was archived yet)."""
    for (_lo, hi), p in recorded.items():
        if hi == first - 1:
            traces = {t: list(u) for t, u in (p.get("traces") or {}).items()}
            return traces, dict(p.get("tokens") or {})
    return {}, {}


def _check_recorded_in_archive(
    target: ArchiveTarget, recorded: dict, first: int, items: list[tuple[Segment, bytes]]
) -> None:
    """Every `trail.archived` event the compaction relies on (one for records still live)
    names a segment of `target` that was read back and checked against the live trail above,
    with the sha256 it recorded: else an ArchiveError, and nothing leaves the live trail (a
    forged or stale `trail.archived` must not make the archiver drop unarchived records)."""
    checked = {(s.first_seq, s.last_seq): (s.name, _sha256(d)) for s, d in items}
    for (lo, hi), p in sorted(recorded.items()):
        if hi < first:
            continue  # its records already left the live trail
        label = f"{p.get('file')} (#{lo}..#{hi})"
        seen = checked.get((lo, hi))
        if seen is None or seen[0] != p.get("file"):
            raise ArchiveError(
                f"{label}, recorded in the live trail as archived, is not in {target.url} "
                "(or does not read back as the live records): nothing removed"
            )
        if seen[1] != p.get("sha256"):
            raise ArchiveError(
                f"{label} in {target.url} differs from the file the live trail recorded "
                "(sha256): nothing removed"
            )


def _sha256(data: bytes) -> str:
    from hashlib import sha256

    return sha256(data).hexdigest()


def _existing(target: ArchiveTarget, first: int) -> list[tuple[tuple[int, int], str]]:
    """Segment files of the archive that hold records from `first` on, by seq."""
    found = [(r, n) for n in target.names() if (r := parse_segment_name(n)) is not None]
    return sorted((r, n) for r, n in found if r[1] >= first)


def _check_signer(store, seg: Segment, live: dict[int, dict]) -> None:
    """A segment found in the archive (from a run killed before recording it) must end at a
    checkpoint the trail signed: the live trail's own there, or (a PostgreSQL partition's,
    signed when its segment was written) one by the trail's current key. Else someone who
    can write the archive planted it, signed with a key of their own (ArchiveError)."""
    cp = {k: v for k, v in seg.checkpoint.items() if not k.startswith("_")}
    if live.get(seg.last_seq) == cp or cp.get("public_key") == public_b64(store.key.public):
        return
    raise ArchiveError(
        f"{seg.name}: its checkpoint is signed by another key than the trail's (not written "
        "by this trail's archiver): nothing archived"
    )


def _chain_before(
    target: ArchiveTarget, first: int, recorded: dict
) -> tuple[bytes, MerkleFrontier]:
    """The hash and Merkle frontier just before live record `first`: the genesis, or where
    the archived segment that ends at `first - 1` ends (read back and checked, and the very
    file the live trail's `trail.archived` for it recorded: its frontier is what the next
    segments, and on PostgreSQL their newly signed checkpoints, build on)."""
    if first <= 1:
        return GENESIS_HASH, MerkleFrontier()
    for (lo, hi), name in _existing(target, first - 1):
        if hi != first - 1:
            continue
        data = target.get(name)
        p = recorded.get((lo, hi))
        if p is not None and (p.get("file") != name or p.get("sha256") != _sha256(data)):
            raise ArchiveError(
                f"{name} in {target.url} differs from the file the live trail recorded "
                "(sha256): nothing archived"
            )
        try:
            table, meta = decode_segment(data)
        except SegmentError as e:
            raise ArchiveError(f"{name}: {e}") from None
        check = check_segment(table, meta, {load_public(meta["checkpoint"]["public_key"])})
        if check.problems or check.frontier is None or check.last_hash is None:
            raise ArchiveError(f"{name}: {check.problems[0][1] if check.problems else '?'}")
        return check.last_hash, check.frontier
    raise ArchiveError(
        f"no segment in {target.url} ends at #{first - 1}, where the live trail begins"
    )


def _write(cur, target, seg: Segment, trail_id, prev_hash, frontier, lock_until) -> bytes:
    """Write the segment's Parquet file and manifest to the archive; returns the bytes."""
    table, last_hash = segment_rows(cur, seg.first_seq, seg.last_seq)
    data = encode_segment(
        table,
        trail_id=trail_id,
        prev_hash=prev_hash,
        last_hash=last_hash,
        frontier=frontier.copy(),
        checkpoint=seg.checkpoint,
        identities=identities_of(cur, table),
    )
    _, meta = decode_segment(data)
    target.put(seg.name, data, lock_until)
    _put_manifest(target, seg.name, data, meta, lock_until)
    return data


def _put_manifest(target, name: str, data: bytes, meta: dict, lock_until) -> None:
    body = json.dumps(manifest(name, data, meta), indent=1, sort_keys=True).encode()
    target.put(manifest_name(name), body, lock_until)


def _read_back(
    target, seg: Segment, written: bytes, prev_hash: bytes, frontier: MerkleFrontier
) -> tuple[bytes, MerkleFrontier]:
    """Read the segment back from the archive and check it: the bytes written, its link to
    the record before (its hash, and the Merkle frontier of the records before it, which a
    segment found in the archive could otherwise bring forged), its chain and Merkle root
    against the live trail's signed checkpoint (raises ArchiveError)."""
    data = target.get(seg.name)
    if data != written:
        raise ArchiveError(f"{seg.name}: the archive returned other bytes than were written")
    try:
        table, meta = decode_segment(data)
    except SegmentError as e:
        raise ArchiveError(f"{seg.name}: {e}") from None
    check = check_segment(table, meta, {load_public(seg.checkpoint["public_key"])})
    if check.problems:
        raise ArchiveError(f"{seg.name}: read back, it does not verify: {check.problems[0][1]}")
    fb = meta.get("frontier_before") or {}
    if meta["prev_hash"] != prev_hash.hex() or (
        fb.get("size"),
        fb.get("hashes"),
    ) != (frontier.size, frontier.to_hex()):
        raise ArchiveError(f"{seg.name}: it does not link to the record before #{seg.first_seq}")
    if meta["checkpoint"] != {k: v for k, v in seg.checkpoint.items() if not k.startswith("_")}:
        raise ArchiveError(f"{seg.name}: its checkpoint is not the live trail's")
    assert check.last_hash is not None and check.frontier is not None
    return check.last_hash, check.frontier

"""Archive segments: a sealed seq range of the trail as one Parquet file (zstd), and its check.

A segment is the records `first_seq..last_seq` of the log, ending at a signed checkpoint.
Its Parquet file holds `seq` and the canonical `record` of each row: a row's hash is derived
(sha256 of the hash before and the record, which names that hash itself, so an edited record
shows at the next one's link), and so is every other column of the live table, read from the
record when the archive is read back (measured: a stored hash would cost 12 % of the
archive, docs/design-notes.md). In the
file's key-value metadata, what a verifier needs without the live trail: the hash before the
segment (chain continuity with the previous segment), the Merkle frontier before it, the
covering signed checkpoint (its Merkle root, key id and public key) and the identity
snapshots its records reference. A small manifest (`*.json`) beside it names the file, its
sha256 and range.

`check_segment` verifies one segment against its checkpoint; `archive_verify` chains them.
This module only reads the trail: it never writes to it nor imports the writer.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from hashlib import sha256

import pyarrow as pa
import pyarrow.parquet as pq

from .canonical import GENESIS_HASH
from .chain import chain_rows
from .checkpoints import checkpoint_message, rotation_message
from .merkle import MerkleFrontier
from .signing import key_id, load_public, verify_signature

SEGMENT_FORMAT = "jupyter-audit-segment/1"
META_KEY = b"jupyter_audit"
# measured on the benchmark mix (1 MiB pages): level 1 is smaller than 3 to 9, and 9x faster
ZSTD_LEVEL = 1
ROW_GROUP = 65_536
SEGMENT_ROWS = 1_000_000  # a segment ends at the first checkpoint from this many records on
SCHEMA = pa.schema([("seq", pa.int64()), ("record", pa.binary())])
_PREV_KEY = b'"prev_hash":"'  # a record's own prev_hash: its last occurrence (JCS key order)
_LEAF_PREFIX = sha256(b"\x00")


def parse_age(raw: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m` (or a number of days) as a timedelta (raises ValueError)."""
    text = str(raw).strip().lower()
    units = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
    units["w"] = timedelta(weeks=1)
    unit = units.get(text[-1:])
    number = text[:-1] if unit else text
    try:
        n = float(number)
    except ValueError:
        raise ValueError(f"{raw!r} is not an age (e.g. 90d, 12h, 2w)") from None
    if n < 0:
        raise ValueError(f"{raw!r}: an age cannot be negative")
    return (unit or units["d"]) * n


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"segment-{first_seq:012d}-{last_seq:012d}.parquet"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(first_seq, last_seq) a segment file's name says it holds, or None."""
    parts = name.removesuffix(".parquet").split("-")
    if len(parts) != 3 or parts[0] != "segment" or not name.endswith(".parquet"):
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def manifest_name(parquet_name: str) -> str:
    return parquet_name.removesuffix(".parquet") + ".json"


@dataclass
class Segment:
    """A planned segment of the live trail: `first_seq..last_seq`, ending at `checkpoint`."""

    first_seq: int
    last_seq: int
    checkpoint: dict
    last_time: datetime

    @property
    def name(self) -> str:
        return segment_name(self.first_seq, self.last_seq)


def live_checkpoints(cur, after_seq: int) -> list[dict]:
    """The signed checkpoints recorded in the live trail that cover records after
    `after_seq`, by seq (each one's body; verification of the trail vouches for them)."""
    out: dict[int, dict] = {}
    for (rec,) in cur.execute(
        "SELECT record FROM events WHERE kind = 'checkpoint' ORDER BY seq"
    ).fetchall():
        body = json.loads(bytes(rec))["payload"]
        if body["seq"] > after_seq:
            out.setdefault(body["seq"], body)
    return [out[s] for s in sorted(out)]


def plan_segments(
    cur, after_seq: int, older_than: datetime, segment_rows: int = SEGMENT_ROWS
) -> list[Segment]:
    """Sealed segments after `after_seq` whose last record is older than `older_than`: each
    ends at a signed checkpoint and holds up to `segment_rows` records (more when checkpoints
    are further apart)."""
    segments: list[Segment] = []
    lo = after_seq + 1
    candidates = live_checkpoints(cur, after_seq)
    times = dict(
        cur.execute(
            "SELECT seq, time FROM events WHERE seq IN (SELECT unnest(?))",
            [[c["seq"] for c in candidates]],
        ).fetchall()
    )
    eligible = [c for c in candidates if c["seq"] in times and times[c["seq"]] <= older_than]
    for i, cp in enumerate(eligible):
        last = i == len(eligible) - 1
        if (
            cp["seq"] - lo + 1 >= segment_rows
            or last
            or eligible[i + 1]["seq"] - lo >= segment_rows
        ):
            segments.append(Segment(lo, cp["seq"], cp, times[cp["seq"]]))
            lo = cp["seq"] + 1
    return segments


def segment_rows(cur, first_seq: int, last_seq: int) -> tuple[pa.Table, bytes]:
    """The segment's rows, by seq, as they will be archived, and the hash of its last row
    (read through `chain_rows`, so the live table's layout can change under the archive)."""
    seqs, records = [], []
    last = GENESIS_HASH
    for row in chain_rows(cur, first_seq, last_seq):
        seqs.append(row.seq)
        records.append(row.record)
        last = row.hash
    return pa.table([seqs, records], schema=SCHEMA), last


_IDENTITY_KEY = b'"identity_id":"'  # its first occurrence is the record's own (JCS key order)


def identities_of(cur, table: pa.Table) -> dict[str, str]:
    """The identity snapshots the records of `table` reference (id -> snapshot JSON)."""
    ids = set()
    for rec in table.column("record").to_pylist():
        at = rec.find(_IDENTITY_KEY)
        if at >= 0:
            start = at + len(_IDENTITY_KEY)
            ids.add(rec[start : rec.index(b'"', start)].decode())
    if not ids:
        return {}
    return dict(
        cur.execute(
            "SELECT identity_id, snapshot FROM identities WHERE identity_id IN (SELECT unnest(?))",
            [sorted(ids)],
        ).fetchall()
    )


def encode_segment(
    table: pa.Table,
    *,
    trail_id: str,
    prev_hash: bytes,
    last_hash: bytes,
    frontier: MerkleFrontier,
    checkpoint: dict,
    identities: dict[str, str],
) -> bytes:
    """The Parquet bytes of a segment (metadata as described in the module docstring)."""
    seqs = table.column("seq")
    meta = {
        "format": SEGMENT_FORMAT,
        "trail_id": trail_id,
        "first_seq": seqs[0].as_py(),
        "last_seq": seqs[-1].as_py(),
        "rows": table.num_rows,
        "prev_hash": prev_hash.hex(),
        "last_hash": last_hash.hex(),
        "frontier_before": {"size": frontier.size, "hashes": frontier.to_hex()},
        "checkpoint": {k: v for k, v in checkpoint.items() if not k.startswith("_")},
        "identities": identities,
    }
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    out = io.BytesIO()
    pq.write_table(
        table,
        out,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=False,
        row_group_size=ROW_GROUP,
        write_statistics=["seq"],
    )
    return out.getvalue()


def manifest(name: str, data: bytes, meta: dict) -> dict:
    return {
        "format": SEGMENT_FORMAT,
        "file": name,
        "sha256": sha256(data).hexdigest(),
        "bytes": len(data),
        "trail_id": meta["trail_id"],
        "first_seq": meta["first_seq"],
        "last_seq": meta["last_seq"],
        "rows": meta["rows"],
        "checkpoint_seq": meta["checkpoint"]["seq"],
        "last_hash": meta["last_hash"],
    }


class SegmentError(ValueError):
    """A segment file that is not one (unreadable Parquet, no or bad metadata)."""


def decode_segment(data: bytes) -> tuple[pa.Table, dict]:
    """(rows, metadata) of a segment's Parquet bytes (raises SegmentError)."""
    try:
        table = pq.read_table(io.BytesIO(data))
        raw = (table.schema.metadata or {}).get(META_KEY)
        meta = json.loads(raw) if raw else None
    except (pa.ArrowException, ValueError, OSError) as e:
        raise SegmentError(f"not a readable Parquet segment: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != SEGMENT_FORMAT:
        raise SegmentError("no jupyter-audit segment metadata in the file")
    if not {"seq", "record"} <= set(table.column_names):
        raise SegmentError("the seq and record columns are not both there")
    return table, meta


@dataclass
class SegmentCheck:
    """What `check_segment` found: problems (seq or None, text) and where the chain ends."""

    problems: list[tuple[int | None, str]] = field(default_factory=list)
    last_hash: bytes | None = None
    frontier: MerkleFrontier | None = None
    warnings: list[str] = field(default_factory=list)


def check_segment(table: pa.Table, meta: dict, trusted: set[bytes]) -> SegmentCheck:
    """Check a segment on its own: contiguous rows first..last, each record naming the hash
    of the one before (from `prev_hash`), its last hash and the Merkle root
    from `frontier_before` plus its leaves equal to the covering checkpoint's, whose
    signature must verify by a key in `trusted` (key.rotated records inside extend it)."""
    out = SegmentCheck()
    try:
        first, last = int(meta["first_seq"]), int(meta["last_seq"])
        prev = bytes.fromhex(meta["prev_hash"])
        fb = meta["frontier_before"]
        frontier = MerkleFrontier.from_hex(int(fb["size"]), fb["hashes"])
        cp = meta["checkpoint"]
    except (KeyError, TypeError, ValueError) as e:
        out.problems.append((None, f"segment metadata unreadable: {e}"))
        return out
    if frontier.size != first - 1:
        out.problems.append((first, "its Merkle frontier does not end before its first record"))
    if first == 1 and prev != GENESIS_HASH:
        out.problems.append((1, "the first segment does not start at the genesis hash"))
    seqs = table.column("seq").to_pylist()
    records = table.column("record").to_pylist()
    expected = first
    bad = False
    for seq, rec in zip(seqs, records, strict=True):
        if seq != expected:
            what = "missing" if seq > expected else "out of order or repeated"
            out.problems.append((expected, f"record #{expected} {what} in the file"))
            bad = True
            break
        at = rec.rfind(_PREV_KEY) + len(_PREV_KEY)
        if at < len(_PREV_KEY) or rec[at : at + 64] != prev.hex().encode():
            # record seq names another hash before it: it, or the one before, was edited
            edited = seq - 1 if seq > first else seq
            which = f"#{seq - 1} or #{seq}" if seq > first else f"#{seq}"
            out.problems.append((edited, f"record {which}: the chain breaks here (edited)"))
            bad = True
            break
        digest = sha256(prev)
        digest.update(rec)
        h = digest.digest()
        leaf = _LEAF_PREFIX.copy()
        leaf.update(rec)
        frontier.append(leaf.digest())
        if b'"kind":"key.rotated"' in rec:
            _trust_rotation(json.loads(rec)["payload"], trusted, meta.get("trail_id", ""), out)
        prev = h
        expected += 1
    if not bad and expected != last + 1:
        out.problems.append((expected, f"records #{expected}..#{last} missing in the file"))
        bad = True
    if bad:
        return out
    out.last_hash, out.frontier = prev, frontier
    if prev.hex() != meta.get("last_hash"):
        out.problems.append((last, "its last hash differs from its metadata"))
    problem = checkpoint_problem(cp, trusted, meta.get("trail_id", ""))
    if problem:
        out.problems.append((last, problem))
    elif cp.get("seq") != last or cp.get("tree_size") != last or cp.get("hash") != prev.hex():
        out.problems.append((last, f"the chain at #{last} differs from its signed checkpoint"))
    elif frontier.root().hex() != cp.get("merkle_root"):
        out.problems.append((last, f"the Merkle root at #{last} differs from its checkpoint"))
    return out


def _trust_rotation(payload: dict, trusted: set[bytes], trail_id: str, out: SegmentCheck) -> None:
    """A `key.rotated` record signed by a trusted key makes its new key trusted."""
    try:
        msg = rotation_message(trail_id, payload["new_public_key"], payload["new_key_id"])
        if any(verify_signature(k, payload["signature"], msg) for k in trusted):
            trusted.add(load_public(payload["new_public_key"]))
            return
    except Exception:  # noqa: BLE001 - reported below
        pass
    out.warnings.append(f"key.rotated to {payload.get('new_key_id')} not signed by a trusted key")


def checkpoint_problem(cp: dict, trusted: set[bytes], trail_id: str) -> str | None:
    """What is wrong with a checkpoint's signature, or None."""
    try:
        pub = load_public(cp["public_key"])
        msg = checkpoint_message(cp)
    except Exception:  # noqa: BLE001 - any malformed checkpoint
        return "its checkpoint is malformed"
    if cp.get("trail_id") != trail_id:
        return "its checkpoint is of another trail"
    if pub not in trusted or key_id(pub) != cp.get("key_id"):
        return f"its checkpoint is signed by an untrusted key {cp.get('key_id')}"
    if not verify_signature(pub, cp.get("signature", ""), msg):
        return "its checkpoint signature does not verify"
    return None

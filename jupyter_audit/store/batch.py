"""A batch on its way into the DuckDB trail: sequenced, chained, sealed, inserted.

`seal` turns prepared events and the chain's state (last sequence number, last hash, Merkle
frontier) into the rows of one transaction: each record's canonical bytes, chain hash and
Merkle leaf, the `events` table's Arrow columns, new identity snapshots, the traces
projection's counts. `insert` stores them, with the writer's high-water mark, in one
transaction, or nothing.

It must never change the writer's state (the Writer adopts a sealed batch's chain state only
once `insert` has committed it), resolve a submitter's future, or UPDATE or DELETE a log row.
"""

from __future__ import annotations

from binascii import hexlify
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, NamedTuple

import duckdb
import orjson
import pyarrow as pa

from .canonical import iso_time
from .merkle import MerkleFrontier
from .traces import NEEDS_PAYLOAD, NOT_ACTIVITY, TraceRow, is_participant, store_traces

if TYPE_CHECKING:
    from .records import Prepared

RECORD_VERSION = 1


class NewIdentity(NamedTuple):
    """An identity snapshot the trail does not hold yet."""

    snapshot: str  # its canonical JSON
    username: str | None
    first_seq: int  # the first record that names it


@dataclass(slots=True)
class SealedBatch:
    """The rows of one transaction, and the chain's state after it."""

    events: list[Prepared]
    first_seq: int
    last_seq: int
    last_hash: bytes
    frontier: MerkleFrontier
    time_us: int
    hashes: list[bytes]  # chain hash of each event, in order
    table: pa.Table  # the `events` rows
    identities: dict[str, NewIdentity]
    traces: dict[str, TraceRow]
    users: set[tuple[str, str]]  # (trace id, username) pairs not known to be stored
    notebooks: set[tuple[str, str, int]]  # (trace id, name, first seq) not known to be stored
    client_ids: dict[str, int]  # client-chosen event id -> its sequence number


def seal(
    ps: list[Prepared],
    *,
    seq: int,
    last_hash: bytes,
    frontier: MerkleFrontier,
    time_us: int,
    known_identities: set[str],
    known_pairs: set[tuple[str, str]],
    known_notebooks: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> SealedBatch:
    """Sequence and chain `ps` after record `seq` (hash `last_hash`; `frontier` is copied),
    all stamped `time_us`. `known_*`: identities, (trace, user) and (trace, notebook name)
    pairs already stored."""
    seq0 = seq
    prev = last_hash
    frontier = frontier.copy()
    time_b = iso_time(time_us).encode()
    version_b = b"%d" % RECORD_VERSION
    new_ids: dict[str, NewIdentity] = {}
    c_hash, c_leaf, c_rec = [], [], []
    add_leaf, join = frontier.append, b"".join
    for p in ps:
        seq += 1
        iid = p.identity_id
        if iid is not None and iid not in known_identities and iid not in new_ids:
            # `prepare` sets identity, identity_id and identity_json together (all or none)
            new_ids[iid] = NewIdentity(p.identity_json, p.identity["username"], seq)  # type: ignore[arg-type, index]
        # encode_record(p, seq, prev.hex(), time, RECORD_VERSION), spliced here
        head, mid, at, tail, end = p.parts or p.seal()
        canon = join((head, hexlify(prev), mid, b"%d" % seq, at, time_b, tail, version_b, end))
        h = sha256(prev + canon).digest()
        leaf = sha256(b"\x00" + canon).digest()
        add_leaf(leaf)
        c_hash.append(h)
        c_leaf.append(leaf)
        c_rec.append(canon)
        prev = h
    traces: dict[str, TraceRow] = {}
    users: set[tuple[str, str]] = set()
    for s, p in enumerate(ps, seq0 + 1):
        trace_id = p.trace_id
        if trace_id is None or p.kind in NOT_ACTIVITY:
            continue
        t = traces.get(trace_id)
        if t is None:
            t = traces[trace_id] = TraceRow(p.kernel_id, p.notebook, s, s)
        kind = p.kind
        unattributed = kind == "cell.started" and "unattributed" in p.flags
        payload = None
        if kind in NEEDS_PAYLOAD:
            # a prepare worker's event arrives sealed, without its payload: read it back
            payload = p.payload if p.payload is not None else _payload(c_rec[s - seq0 - 1])
        t.add(s, kind, p.kernel_id, p.notebook, unattributed, payload)
        ident = p.identity
        if ident is not None:
            pair = (trace_id, ident["username"])
            # a stored pair was a participant's; only a new one is asked whose it is
            if pair not in known_pairs and is_participant(ident, kind, payload):
                users.add(pair)
    notebooks = {
        (trace_id, name, first)
        for trace_id, t in traces.items()
        for name, first in (t.names or {}).items()
        if (trace_id, name) not in known_notebooks
    }
    n = len(ps)
    table = pa.table(
        {
            "seq": pa.array(range(seq0 + 1, seq + 1), pa.int64()),
            "kind": pa.array([p.kind for p in ps], pa.string()),
            "time": pa.array([time_us] * n, pa.timestamp("us")),
            "trace_id": pa.array([p.trace_id for p in ps], pa.string()),
            "kernel_id": pa.array([p.kernel_id for p in ps], pa.string()),
            "notebook": pa.array([p.notebook for p in ps], pa.string()),
            "msg_id": pa.array([p.msg_id for p in ps], pa.string()),
            "identity_id": pa.array([p.identity_id for p in ps], pa.string()),
            "event_id": pa.array([p.event_id for p in ps], pa.string()),
            "hash": pa.array(c_hash, pa.binary()),
            "leaf": pa.array(c_leaf, pa.binary()),
            "record": pa.array(c_rec, pa.binary()),
        }
    )
    client = {p.event_id: s for s, p in enumerate(ps, seq0 + 1) if p.client_event}
    return SealedBatch(
        events=ps,
        first_seq=seq0 + 1,
        last_seq=seq,
        last_hash=prev,
        frontier=frontier,
        time_us=time_us,
        hashes=c_hash,
        table=table,
        identities=new_ids,
        traces=traces,
        users=users,
        notebooks=notebooks,
        client_ids=client,
    )


def _payload(canon: bytes) -> dict | None:
    """The payload of a record's canonical bytes."""
    payload = orjson.loads(canon).get("payload")
    return payload if isinstance(payload, dict) else None


def insert(con, batch: SealedBatch, known_traces: set[str], *, optimistic: bool) -> bool:
    """Store `batch` and the new high-water mark in one transaction (raises, with nothing
    stored, if that fails). False, with nothing stored, when `optimistic` and the trail
    already holds one of its client ids (the `client_events` primary key refuses it)."""
    try:
        con.execute("BEGIN")
        # the relational insert skips registering a view (half the cost of a small commit);
        # the Arrow table has exactly the events table's columns, in order
        con.from_arrow(batch.table).insert_into("events")
        if batch.identities:
            con.executemany(
                "INSERT INTO identities (identity_id, snapshot, username, first_seq) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [[iid, *new] for iid, new in batch.identities.items()],
            )
        if batch.traces:
            store_traces(
                con, batch.traces, batch.users, batch.time_us, known_traces, batch.notebooks
            )
        if batch.client_ids:
            ids = pa.table(
                {
                    "event_id": pa.array(list(batch.client_ids), pa.string()),
                    "seq": pa.array(list(batch.client_ids.values()), pa.int64()),
                }
            )
            try:
                con.from_arrow(ids).insert_into("client_events")
            except duckdb.ConstraintException:
                if not optimistic:
                    raise
                con.execute("ROLLBACK")
                return False
        con.execute(
            "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN ? WHEN 'last_hash' THEN ? "
            "ELSE ? END WHERE key IN ('last_seq', 'last_hash', 'frontier')",
            [str(batch.last_seq), batch.last_hash.hex(), batch.frontier.to_hex()],
        )
        con.execute("COMMIT")
    except Exception:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    return True


def held_client_ids(con, ids: list[str]) -> dict[str, int]:
    """Which of the client-chosen event ids `ids` the trail holds, with their seq."""
    return dict(
        con.execute(
            "SELECT event_id, seq FROM client_events WHERE event_id IN (SELECT unnest(?))",
            [ids],
        ).fetchall()
    )

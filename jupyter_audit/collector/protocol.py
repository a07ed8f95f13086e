"""The forwarding wire format (docs/collector.md "Protocol") and the checks of one record.

`parse_batch` turns a POST body into a `Batch` or raises `BadBatch` naming the problem; each
record must prove itself: its hash is sha256(its prev_hash + its bytes), its `seq` field is
the seq claimed, its identity snapshot is the one its `identity_id` names. `to_event` rebuilds
the event a forwarded record was, for the collector's store to record again with its
`origin`. Pure: no web, no store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from ..events import EventValidationError
from ..store.canonical import GENESIS_HASH
from ..store.forwarded import forward_event_id
from ..store.records import identity_id_of, safe_id

MAX_RECORDS = 1000  # records in one batch
# hex digits of sha256(server) that namespace a forwarded trace id: 128 bits, so that no one
# can search offline for a server name of theirs whose namespace is another user's (48 bits,
# as first built, is a few GPU-hours: then reading and adding to that user's traces)
TAG_HEX = 32
GENESIS_HEX = GENESIS_HASH.hex()
# kinds that describe the forwarding server's own trail (its checkpoints, keys, archives,
# pseudonym key), and the collector's own notes (which a server's record could forge, e.g. a
# `forward.silent` about another server): recorded as `forward.wrapped`, so they never stand
# for the collector's own
WRAPPED_KINDS = frozenset(
    {"checkpoint", "key.rotated", "trail.archived", "masking.key_rotated"}
    | {"forward.gap", "forward.rewrite", "forward.silent", "forward.resumed", "forward.wrapped"}
)
# the envelope fields of a local record that make up the event it was
_CARRIED: tuple[str, ...] = ("kind", "payload", "kernel_id", "session_id", "notebook", "msg_id")
_CARRIED += ("op_index", "kernel_time", "flags")


class BadBatch(ValueError):
    """A batch the collector refuses (400): the message names the problem, never a value."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One forwarded record, checked: its local seq, bytes, hash, the previous hash its bytes
    name, the decoded record and the identity snapshot it names (or None)."""

    seq: int
    record: bytes
    hash: str
    prev_hash: str
    fields: dict
    identity: dict | None


@dataclass(frozen=True, slots=True)
class Batch:
    server: str | None  # as claimed; once the Hub named it (`hubauth.server_id`): a str
    trail: str
    records: list[Forwarded]
    backlog: int
    stopping: bool


def _int(value, name: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise BadBatch(f"{name} must be an integer ≥ {minimum}")
    return value


def parse_batch(body: bytes) -> Batch:
    """A POST /api/forward body, checked (raises BadBatch)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadBatch("the body is not JSON (or nested too deep)") from None
    if type(data) is not dict:
        raise BadBatch("the body must be a JSON object")
    unknown = set(data) - {"server", "trail", "records", "backlog", "stopping"}
    if unknown:
        raise BadBatch(f"unknown fields {sorted(unknown)}")
    server = data.get("server")
    if server is not None and (type(server) is not str or not server):
        raise BadBatch("server must be a server id")
    trail = safe_id(data.get("trail"))
    if trail is None:
        raise BadBatch("trail must be a trail id")
    records = data.get("records")
    if type(records) is not list:
        raise BadBatch("records must be a list")
    if len(records) > MAX_RECORDS:
        raise BadBatch(f"more than {MAX_RECORDS} records in one batch")
    stopping = data.get("stopping", False)
    if type(stopping) is not bool:
        raise BadBatch("stopping must be true or false")
    parsed = [parse_record(i, item) for i, item in enumerate(records)]
    for before, after in zip(parsed, parsed[1:], strict=False):
        if after.seq <= before.seq:
            raise BadBatch(f"records[{parsed.index(after)}]: seq not after the record before")
    return Batch(server, trail, parsed, _int(data.get("backlog", 0), "backlog"), stopping)


def parse_record(i: int, item) -> Forwarded:
    """One record of a batch, proving itself (raises BadBatch naming records[i])."""
    where = f"records[{i}]"
    if type(item) is not dict or set(item) - {"seq", "record", "hash", "identity"}:
        raise BadBatch(f"{where} must be an object with seq, record, hash, identity")
    seq = _int(item.get("seq"), f"{where}.seq", 1)
    text, claimed = item.get("record"), item.get("hash")
    if type(text) is not str or type(claimed) is not str:
        raise BadBatch(f"{where}: record and hash must be strings")
    try:
        raw = text.encode("utf-8")
        fields = json.loads(raw)
        prev = bytes.fromhex(fields["prev_hash"])
    except (ValueError, UnicodeEncodeError, KeyError, TypeError, RecursionError):
        raise BadBatch(f"{where}: record is not a trail record") from None
    if type(fields) is not dict or len(prev) != 32:
        raise BadBatch(f"{where}: record is not a trail record")
    if hashlib.sha256(prev + raw).hexdigest() != claimed:
        raise BadBatch(f"{where}: hash is not sha256(prev_hash + record)")
    if fields.get("seq") != seq:
        raise BadBatch(f"{where}: the record's seq is not {seq}")
    if "origin" in fields:
        raise BadBatch(f"{where}: a record that was itself forwarded")
    ident_text, identity_id = item.get("identity"), fields.get("identity_id")
    identity = None
    if identity_id is not None:
        try:
            identity = json.loads(ident_text) if type(ident_text) is str else None
            ok = identity is not None and identity_id_of(identity) == identity_id
        except (ValueError, EventValidationError, RecursionError):
            ok = False
        if not ok:
            raise BadBatch(f"{where}: identity is not the snapshot its identity_id names")
    elif ident_text is not None:
        raise BadBatch(f"{where}: identity given for a record without identity_id")
    return Forwarded(seq, raw, claimed, prev.hex(), fields, identity)


def trace_in_collector(server: str, trace_id: str | None) -> str | None:
    """A forwarded trace id in the collector's trail: namespaced by its server, so that no
    server can add records to a trace of another (trace ids are chosen by clients)."""
    if trace_id is None:
        return None
    tag = hashlib.sha256(server.encode("utf-8")).hexdigest()[:TAG_HEX]
    out = f"fw.{tag}.{trace_id}"
    if len(out) > 256:
        out = f"fw.{tag}.h.{hashlib.sha256(trace_id.encode('utf-8')).hexdigest()}"
    return out


def to_event(server: str, owner: str, trail: str, rec: Forwarded) -> tuple[dict, dict]:
    """(event, origin) for the collector's store to record a forwarded record again: the
    local record's fields, its trace namespaced (`trace_in_collector`), the collector's event
    id for it (`forward_event_id`), and where it came from."""
    f = rec.fields
    event = {k: f[k] for k in _CARRIED if f.get(k) is not None}
    if type(f.get("kind")) is str and f["kind"] in WRAPPED_KINDS:
        event["kind"] = "forward.wrapped"
        event["payload"] = {"kind": f["kind"], "payload": f.get("payload") or {}}
    event["identity"] = rec.identity
    event["trace_id"] = trace_in_collector(server, f.get("trace_id"))
    event["event_id"] = forward_event_id(server, trail, rec.seq, rec.hash)
    origin: dict = {"server": server, "owner": owner, "trail": trail, "seq": rec.seq}
    origin["hash"] = rec.hash
    if type(f.get("event_id")) is str:
        origin["event_id"] = f["event_id"]
    if _is_time(f.get("time")):  # anything else is free text of the server's: not carried
        origin["time"] = f["time"]
    for name in ("capped", "withheld"):
        if type(f.get(name)) is list and f[name]:
            origin[name] = f[name]
    return event, origin


def _is_time(value) -> bool:
    if type(value) is not str:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True

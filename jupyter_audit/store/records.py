"""From a submitted event to a normalised, masked record body (before sequencing).

Everything a caller hands the Writer passes through `prepare`: unknown kinds and malformed
fields are refused with a message naming the field; strings are checked for valid UTF-8;
oversized strings are capped with their original size and sha256 recorded; every free-text
field is masked. Nothing unmasked leaves this module.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re

import orjson

from ..events import EventValidationError, validate_payload
from ..identity.snapshot import normalise_snapshot
from ..policy.describe import describe_sql
from .canonical import SAFE_INT, canonical_bytes, jcs

try:
    from _json import make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has it
    _c_make_encoder = None  # type: ignore[assignment, misc]  # None: no C encoder here

ENVELOPE_FIELDS = {
    "kind",
    "payload",
    "identity",
    "trace_id",
    "kernel_id",
    "session_id",
    "notebook",
    "msg_id",
    "event_id",
    "op_index",
    "kernel_time",
    "flags",
}
_ID_FIELDS = ("trace_id", "kernel_id", "session_id", "msg_id", "event_id", "kernel_time")
MAX_ID_LEN = 256
MAX_DEPTH = 32
CAP_MARK = "…[capped]"


class _Walk:
    __slots__ = ("astral", "oversize")

    def __init__(self):
        self.oversize = False
        self.astral = False


def _normalise(value, path: str, depth: int, cap: int, walk: _Walk):
    t = type(value)
    if t is str:
        if not value.isascii():
            try:
                n = len(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise EventValidationError(f"{path}: not valid UTF-8 text") from None
            if n > cap:
                walk.oversize = True
        elif len(value) > cap:
            walk.oversize = True
        return value
    if t is int:
        if -SAFE_INT <= value <= SAFE_INT:
            return value
        return str(value)
    if value is None or t is bool:
        return value
    if t is dict:
        if depth >= MAX_DEPTH:
            raise EventValidationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise EventValidationError(f"{path}: object keys must be strings")
            if not k.isascii():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    raise EventValidationError(f"{path}: key is not valid UTF-8 text") from None
                if any(ord(c) > 0xFFFF for c in k):
                    walk.astral = True
            out[k] = _normalise(v, f"{path}.{k}", depth + 1, cap, walk)
        return out
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise EventValidationError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        return [_normalise(v, f"{path}[{i}]", depth + 1, cap, walk) for i, v in enumerate(value)]
    if t is bytes or t is bytearray:
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise EventValidationError(f"{path}: not valid UTF-8 ({e.reason})") from None
        return _normalise(text, path, depth, cap, walk)
    if t is float:
        # the trail holds no floats (canonical bytes stay integer-only): keep the text
        return repr(value)
    if isinstance(value, str):
        return _normalise(str(value), path, depth, cap, walk)
    if isinstance(value, int) and not isinstance(value, bool):
        return _normalise(int(value), path, depth, cap, walk)
    raise EventValidationError(f"{path}: unsupported value of type {t.__name__}")


def _is_normal(value, depth: int, cap: int, walk: _Walk) -> bool:
    """True when a dict or list is already in the form `_normalise` returns (only str, int
    within the safe range, bool, None, dict with str keys and list), setting the same `walk`
    flags; nothing is copied. False when anything needs converting or is refused: the caller
    then runs `_normalise` itself (from a fresh `_Walk`), which converts or reports the field."""
    if depth >= MAX_DEPTH:
        return False
    if type(value) is dict:
        for k in value:
            if type(k) is not str:
                return False
            if not k.isascii():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    return False
                if any(ord(c) > 0xFFFF for c in k):
                    walk.astral = True
        items = value.values()
    else:
        items = value
    for v in items:
        t = type(v)
        if t is str:
            if v.isascii():
                if len(v) > cap:
                    walk.oversize = True
            else:
                try:
                    n = len(v.encode("utf-8"))
                except UnicodeEncodeError:
                    return False
                if n > cap:
                    walk.oversize = True
        elif t is int:
            if not -SAFE_INT <= v <= SAFE_INT:
                return False
        elif v is None or t is bool:
            continue
        elif t is dict or t is list:
            if not _is_normal(v, depth + 1, cap, walk):
                return False
        else:
            return False
    return True


def _cap(value, path: str, cap: int, capped: list):
    t = type(value)
    if t is str:
        raw = value.encode("utf-8")
        if len(raw) <= cap:
            return value
        head = raw[:cap].decode("utf-8", "ignore")
        cut = head.rfind("‹")
        if cut != -1 and "›" not in head[cut:]:
            head = head[:cut]  # never leave half a pseudonym
        capped.append(
            {
                "field": path,
                "original_bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
                "kept_bytes": len(head.encode("utf-8")),
            }
        )
        return head + CAP_MARK
    if t is dict:
        return {k: _cap(v, f"{path}.{k}", cap, capped) for k, v in value.items()}
    if t is list:
        return [_cap(v, f"{path}[{i}]", cap, capped) for i, v in enumerate(value)]
    return value


class Prepared:
    """A validated, masked event waiting for its sequence number. `parts` holds the record's
    canonical (JCS) bytes around the fields only sequencing knows (`prev_hash`, `seq`, `time`,
    `v`), so sequencing only has to splice them together (`encode_record`). They are sealed by
    `prepare`: change the payload only through `set_payload`, and nothing else afterwards."""

    __slots__ = (
        "event_id",
        "extras_json",
        "client_event",
        "flags",
        "identity",
        "identity_id",
        "identity_json",
        "kernel_id",
        "kernel_time",
        "kind",
        "msg_id",
        "notebook",
        "notebook_json",
        "op_index",
        "origin_json",
        "parts",
        "payload",
        "payload_json",
        "schema",
        "session_id",
        "trace_id",
    )
    # the slots' types (annotations without values: no class attributes, the slots stay).
    # `from_wire` leaves payload, payload_json, schema and extras_json None: a record from a
    # prepare worker arrives sealed (`parts`), so nothing reads them, and `seal` is not run
    event_id: str
    extras_json: tuple[str, str, str]  # capped, flags, withheld (JCS text)
    client_event: bool
    flags: list[str]
    identity: dict | None
    identity_id: str | None
    identity_json: str | None
    kernel_id: str | None
    kernel_time: str | None
    kind: str
    msg_id: str | None
    notebook: str | None
    notebook_json: str
    op_index: int | None
    origin_json: str  # "" or the JCS text of a forwarded record's `origin` (see `prepare`)
    parts: tuple[bytes, bytes, bytes, bytes, bytes] | None
    payload: dict
    payload_json: bytes
    schema: int
    session_id: str | None
    trace_id: str | None

    # what a prepare worker sends back (`store.pool`): the sealed record and the fields the
    # Writer indexes; not the payload, which lives on in the sealed bytes
    _WIRE = (
        "kind",
        "trace_id",
        "kernel_id",
        "session_id",
        "notebook",
        "msg_id",
        "identity_id",
        "identity_json",
        "event_id",
        "client_event",
        "flags",
        "op_index",
        "kernel_time",
        "origin_json",
        "parts",
    )

    def to_wire(self) -> tuple:
        if self.parts is None:
            self.seal()
        return (  # the order of _WIRE
            self.kind,
            self.trace_id,
            self.kernel_id,
            self.session_id,
            self.notebook,
            self.msg_id,
            self.identity_id,
            self.identity_json,
            self.event_id,
            self.client_event,
            self.flags,
            self.op_index,
            self.kernel_time,
            self.origin_json,
            self.parts,
        )

    @classmethod
    def from_wire(cls, wire: tuple) -> Prepared:
        p = cls()
        (
            p.kind,
            p.trace_id,
            p.kernel_id,
            p.session_id,
            p.notebook,
            p.msg_id,
            p.identity_id,
            p.identity_json,
            p.event_id,
            p.client_event,
            p.flags,
            p.op_index,
            p.kernel_time,
            p.origin_json,
            p.parts,
        ) = wire  # the order of _WIRE
        p.identity = None if p.identity_json is None else _snapshot(p.identity_id, p.identity_json)
        # sealed already: none of these is read again (see the slots' types above)
        p.payload = p.payload_json = p.schema = p.extras_json = None  # type: ignore[assignment]
        return p

    def set_payload(self, payload: dict, astral: bool = False) -> None:
        self.payload = payload
        if astral:
            self.payload_json = canonical_bytes(payload, astral_keys=True)
        else:
            self.payload_json = _jcs_bmp(payload)
        self.parts = None

    def seal(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """The record's canonical bytes around `prev_hash`, `seq`, `time` and `v` (keys in
        JCS order): head + prev + mid + seq + at + time + tail + v + end."""
        capped, flags, withheld = self.extras_json
        op_index = self.op_index
        origin = f'"origin":{self.origin_json},' if self.origin_json else ""
        parts = (
            (
                f'{{"capped":{capped},"event_id":"{self.event_id}","flags":{flags},'
                f'"identity_id":{_json_str(self.identity_id)},'
                f'"kernel_id":{_json_str(self.kernel_id)},'
                f'"kernel_time":{_json_str(self.kernel_time)},"kind":"{self.kind}",'
                f'"msg_id":{_json_str(self.msg_id)},"notebook":{self.notebook_json},'
                f'"op_index":{"null" if op_index is None else op_index},'
                f'{origin}"payload":'
            ).encode()
            + self.payload_json
            + b',"prev_hash":"',
            f'","schema":{self.schema},"seq":'.encode(),
            f',"session_id":{_json_str(self.session_id)},"time":"'.encode(),
            f'","trace_id":{_json_str(self.trace_id)},"v":'.encode(),
            f',"withheld":{withheld}}}'.encode(),
        )
        self.parts = parts
        return parts


def _make_jcs_bmp():
    """JCS text of a normalised value whose dict keys all lie in the BMP, as UTF-8 bytes: what
    `canonical_bytes` computes. orjson with sorted keys writes exactly that for such values
    (keys in code point order, which is UTF-16 order within the BMP; the same minimal
    escapes; no floats or big integers to format) in a third of the time of the standard
    library's C encoder, which is the fallback (built once: building it costs more than
    encoding a typical payload). Each is checked against `canonical_bytes` at import, and a
    test compares them over every code point and random values."""
    probe = {"b": [1, -2, 'é\u2028"\\\x00\x1f\x7f€', None, True, {}], "a": {"x": [], "\ufb33": ""}}
    want = canonical_bytes(probe, astral_keys=False)
    try:
        option = orjson.OPT_SORT_KEYS
        dumps = orjson.dumps
        if dumps(probe, option=option) == want:
            return lambda value: dumps(value, option=option)
    except Exception:  # noqa: BLE001 - not equal (another orjson): the encoders below
        pass
    if _c_make_encoder is not None:
        from json.encoder import encode_basestring

        try:
            enc = _c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, False)
            if "".join(enc(probe, 0)).encode() == want:
                join = "".join
                return lambda value: join(enc(value, 0)).encode("utf-8")
        except Exception:  # noqa: BLE001 - another Python: the portable encoder below
            pass
    return lambda value: canonical_bytes(value, astral_keys=False)


_jcs_bmp = _make_jcs_bmp()


_ID_RE = re.compile(rf"[A-Za-z0-9._:@/+=~-]{{1,{MAX_ID_LEN}}}")


_VALID_IDS: set[str] = set()  # ids seen valid (trace and kernel ids recur in every event)


def _id(name: str, value):
    if type(value) is str and value in _VALID_IDS:
        return value
    if type(value) is not str or not _ID_RE.fullmatch(value):
        raise EventValidationError(
            f"{name} must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 . _ : @ / + = ~ -"
        )
    if len(_VALID_IDS) > 16384:
        _VALID_IDS.clear()
    _VALID_IDS.add(value)
    return value


_event_ids: tuple = (None, itertools.count())


def _new_event_id_key() -> None:
    global _event_ids
    _event_ids = (hashlib.blake2b(key=os.urandom(32), digest_size=16), itertools.count(1))


_new_event_id_key()
os.register_at_fork(after_in_child=_new_event_id_key)  # a forked child draws its own key


def new_event_id() -> str:
    """A fresh event id the server chooses (32 hex digits): a counter under a keyed hash
    whose key is drawn once per process, so ids are unique across processes and restarts
    and cannot be predicted from one another (a kernel sees the stamped ones), without a
    system call per id."""
    mac, counter = _event_ids
    mac = mac.copy()
    mac.update(next(counter).to_bytes(8, "big"))
    return mac.hexdigest()


def safe_id(value) -> str | None:
    """`value` if it is a usable id, else None (for ids taken from client messages)."""
    return value if type(value) is str and _ID_RE.fullmatch(value) else None


def _json_str(value: str | None) -> str:
    return "null" if value is None else '"' + value + '"'


def prepare(
    event,
    masker,
    max_field_bytes: int,
    *,
    event_id: str | None = None,
    origin: dict | None = None,
) -> Prepared:
    """Validate, normalise, mask and cap one submitted event. `event_id` is an id the server
    chose ahead of time (the gateway stamps it on a cell's message before the cell's event
    is prepared); an `event_id` inside the event is a client's, for exactly-once delivery.
    `origin`: where a record forwarded to a collector came from (`ORIGIN_FIELDS`); only the
    collector passes it, never an event's sender (it is not an envelope field)."""
    if type(event) is not dict:
        raise EventValidationError(f"an event must be an object, not {type(event).__name__}")
    if not event.keys() <= ENVELOPE_FIELDS:
        raise EventValidationError(f"unknown event fields {sorted(set(event) - ENVELOPE_FIELDS)}")
    get = event.get
    kind = get("kind")
    if type(kind) is not str:
        raise EventValidationError("event kind is missing")
    payload = get("payload", {})
    schema = validate_payload(kind, payload)
    p = Prepared()
    p.kind = kind
    p.schema = schema
    walk = _Walk()
    if not _is_normal(payload, 0, max_field_bytes, walk):
        walk = _Walk()
        payload = _normalise(payload, "payload", 0, max_field_bytes, walk)
    withheld: list = []
    payload = masker.mask_structure(kind, payload)
    try:
        payload = masker.mask(payload)
    except Exception:
        # mask field by field; a field that still fails is withheld, never stored unmasked
        masked = {}
        for k, v in payload.items():
            try:
                masked[masker.mask_text(k)] = masker.mask(v)
            except Exception as e:  # noqa: BLE001 - any failure withholds the field
                masked[k if k.isidentifier() else "withheld"] = None
                withheld.append({"field": f"payload.{k}", "reason": type(e).__name__})
        payload = masked
    if kind == "op.sql" or (
        kind == "op.unattributed"
        and isinstance(payload, dict)
        and payload.get("original_kind") == "op.sql"
    ):
        payload = _described(payload)
    capped: list = []
    if walk.oversize:
        payload = _cap(payload, "payload", max_field_bytes, capped)
    p.set_payload(payload, walk.astral)

    ident = get("identity")
    if ident is None:
        p.identity = p.identity_id = p.identity_json = None
    else:
        p.identity, p.identity_id, p.identity_json = _identity(ident)
    value = get("trace_id")
    p.trace_id = None if value is None else _id("trace_id", value)
    value = get("kernel_id")
    p.kernel_id = None if value is None else _id("kernel_id", value)
    value = get("session_id")
    p.session_id = None if value is None else _id("session_id", value)
    value = get("msg_id")
    p.msg_id = None if value is None else _id("msg_id", value)
    value = get("event_id")
    if value is None:
        p.client_event = False
        p.event_id = event_id or new_event_id()
    else:
        p.client_event = True
        p.event_id = _id("event_id", value)
    value = get("kernel_time")
    p.kernel_time = None if value is None else _id("kernel_time", value)
    notebook = get("notebook")
    if notebook is not None:
        if type(notebook) is not str:
            raise EventValidationError("notebook must be a string")
        notebook = _normalise(notebook, "notebook", 0, 4096, walk)
        if len(notebook) > 4096:
            raise EventValidationError("notebook path longer than 4096 characters")
        notebook = masker.mask_text(notebook)
        p.notebook_json = _jcs_bmp(notebook).decode()
    else:
        p.notebook_json = "null"
    p.notebook = notebook
    op_index = get("op_index")
    if op_index is not None and (type(op_index) is not int or not 0 <= op_index <= SAFE_INT):
        raise EventValidationError("op_index must be a non-negative integer")
    p.op_index = op_index
    flags = get("flags")
    if not flags:
        p.flags = []
        flags_json = "[]"
    else:
        if not isinstance(flags, list | tuple) or not all(
            type(f) is str and f.isidentifier() for f in flags
        ):
            raise EventValidationError("flags must be a list of identifiers")
        p.flags = sorted(set(flags))
        flags_json = canonical_bytes(p.flags).decode()
    p.origin_json = "" if origin is None else _origin_json(origin, masker)
    p.extras_json = (
        canonical_bytes(capped).decode() if capped else "[]",
        flags_json,
        canonical_bytes(withheld).decode() if withheld else "[]",
    )
    p.seal()
    return p


# a forwarded record's origin: the server that recorded it first (as the Hub names it), the
# Hub user who owns that server, that server's trail id, the record's sequence number, chain
# hash, record time and event id there, and what that server capped or withheld
ORIGIN_FIELDS = {
    "server": str,
    "owner": str,
    "trail": str,
    "seq": int,
    "hash": str,
    "time": str,
    "event_id": str,
    "capped": list,
    "withheld": list,
}
ORIGIN_REQUIRED = ("server", "owner", "trail", "seq", "hash")


def _origin_json(origin: dict, masker) -> str:
    if type(origin) is not dict or not origin.keys() <= ORIGIN_FIELDS.keys():
        raise EventValidationError("origin: unknown or malformed fields")
    for name, typ in ORIGIN_FIELDS.items():
        value = origin.get(name)
        if value is None:
            if name in ORIGIN_REQUIRED:
                raise EventValidationError(f"origin.{name} is missing")
            continue
        if type(value) is not typ:
            raise EventValidationError(f"origin.{name} must be of type {typ.__name__}")
        if name in ("trail", "hash", "event_id"):
            _id(f"origin.{name}", value)
        elif type(value) is str and (len(value) > MAX_ID_LEN or not value.isprintable()):
            raise EventValidationError(f"origin.{name} must be printable, {MAX_ID_LEN} at most")
    if not 0 < origin["seq"] <= SAFE_INT:
        raise EventValidationError("origin.seq must be a positive integer")
    walk = _Walk()
    value = _normalise(origin, "origin", 0, 4096, walk)
    # what the server said it capped or withheld is its free text: masked like a payload
    for name in ("capped", "withheld"):
        if name in value:
            try:
                value = {**value, name: masker.mask(value[name])}
            except Exception:  # noqa: BLE001 - what cannot be masked is not stored
                raise EventValidationError(f"origin.{name} cannot be masked") from None
    # what `canonical_bytes` writes, as a payload is written (`Prepared.set_payload`): the
    # fast encoder unless a key lies outside the BMP (a collector prepares one per record)
    text = canonical_bytes(value, astral_keys=True) if walk.astral else _jcs_bmp(value)
    return text.decode()


def encode_record(p: Prepared, seq: int, prev_hex: str, time_iso: str, version: int) -> bytes:
    """Canonical (JCS) bytes of a sequenced record: keys in sorted order, fragments spliced."""
    head, mid, at, tail, end = p.parts or p.seal()
    return b"".join(
        (
            head,
            prev_hex.encode(),
            mid,
            str(seq).encode(),
            at,
            time_iso.encode(),
            tail,
            str(version).encode(),
            end,
        )
    )


_IDENTITY_CACHE: dict = {}
_identity_key = orjson.dumps


_SNAPSHOTS: dict[str, dict] = {}  # identity_id -> snapshot, for records sealed elsewhere


def _snapshot(identity_id: str, text: str) -> dict:
    snap = _SNAPSHOTS.get(identity_id)
    if snap is None:
        if len(_SNAPSHOTS) > 4096:
            _SNAPSHOTS.clear()
        snap = _SNAPSHOTS[identity_id] = json.loads(text)
    return snap


def _plain(value) -> bool:
    t = type(value)
    return t is str or value is None or (t is list and all(type(v) is str for v in value))


def identity_id_of(raw) -> str:
    """The identity_id `prepare` records for an identity snapshot."""
    return _identity(raw)[1]


def _identity(raw) -> tuple[dict, str, str]:
    """(snapshot, identity_id, snapshot JCS text), memoised: the same few identities recur."""
    if not isinstance(raw, dict):
        raise EventValidationError("identity must be an object")
    key = hit = None
    if all(_plain(v) for v in raw.values()):
        # its JSON in the order given (the same identity in another key order is one more
        # entry); only for str, None and lists of str, whose JSON tells them apart (it
        # would not tell NaN from None, or an enum from its value)
        try:
            key = _identity_key(raw)
            hit = _IDENTITY_CACHE.get(key)
        except TypeError:  # orjson.JSONEncodeError: e.g. a key that is not a string
            key = None
    if hit is not None:
        return hit
    try:
        snap = normalise_snapshot(raw)
    except ValueError as e:
        raise EventValidationError(f"identity: {e}") from None
    text = jcs(snap)
    out = (snap, hashlib.sha256(text).hexdigest(), text.decode("utf-8"))
    if key is not None:
        if len(_IDENTITY_CACHE) > 4096:
            _IDENTITY_CACHE.clear()
        _IDENTITY_CACHE[key] = out
    return out


def _described(payload: dict) -> dict:
    """An op.sql payload with the server's `statement_type` and `tables`, read from the
    masked statement (policy/describe.py): never what the kernel said."""
    statement = payload.get("statement")
    if type(statement) is not str:
        return payload
    statement_type, tables = describe_sql(statement)
    return {**payload, "statement_type": statement_type, "tables": list(tables)}

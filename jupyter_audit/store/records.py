"""From a submitted event to a normalised, masked record body (before sequencing).

Everything a caller hands the Writer passes through `prepare`: unknown kinds and malformed
fields are refused with a message naming the field; strings are checked for valid UTF-8;
oversized strings are capped with their original size and sha256 recorded; every free-text
field is masked. Nothing unmasked leaves this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ..events import EventValidationError, validate_payload
from ..identity import normalise_snapshot
from .canonical import SAFE_INT, canonical_bytes, jcs

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
    """A validated, masked event waiting for its sequence number. The `*_json` attributes are
    canonical JSON fragments, so sequencing only has to splice them together."""

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
        "payload",
        "payload_json",
        "schema",
        "session_id",
        "trace_id",
    )

    def set_payload(self, payload: dict, astral: bool = False) -> None:
        self.payload = payload
        self.payload_json = canonical_bytes(payload, astral_keys=astral).decode("utf-8")


_ID_RE = re.compile(rf"[A-Za-z0-9._:@/+=~-]{{1,{MAX_ID_LEN}}}")


def _id(name: str, value):
    if type(value) is not str or not _ID_RE.fullmatch(value):
        raise EventValidationError(
            f"{name} must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 . _ : @ / + = ~ -"
        )
    return value


_dumps_str = json.JSONEncoder(ensure_ascii=False).encode  # JCS form of a lone string


def safe_id(value) -> str | None:
    """`value` if it is a usable id, else None (for ids taken from client messages)."""
    return value if type(value) is str and _ID_RE.fullmatch(value) else None


def _json_str(value: str | None) -> str:
    return "null" if value is None else '"' + value + '"'


def prepare(event, masker, max_field_bytes: int) -> Prepared:
    """Validate, normalise, mask and cap one submitted event."""
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
    payload = _normalise(payload, "payload", 0, max_field_bytes, walk)
    withheld: list = []
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
    capped: list = []
    if walk.oversize:
        payload = _cap(payload, "payload", max_field_bytes, capped)
    p.set_payload(payload, walk.astral)

    ident = get("identity")
    if ident is None:
        p.identity = p.identity_id = p.identity_json = None
    else:
        p.identity, p.identity_id, p.identity_json = _identity(ident)
    for name in _ID_FIELDS:
        value = get(name)
        setattr(p, name, None if value is None else _id(name, value))
    p.client_event = p.event_id is not None
    if p.event_id is None:
        p.event_id = os.urandom(16).hex()
    notebook = get("notebook")
    if notebook is not None:
        if type(notebook) is not str:
            raise EventValidationError("notebook must be a string")
        notebook = _normalise(notebook, "notebook", 0, 4096, walk)
        if len(notebook) > 4096:
            raise EventValidationError("notebook path longer than 4096 characters")
        notebook = masker.mask_text(notebook)
        p.notebook_json = _dumps_str(notebook)
    else:
        p.notebook_json = "null"
    p.notebook = notebook
    op_index = get("op_index")
    if op_index is not None and (type(op_index) is not int or not 0 <= op_index <= SAFE_INT):
        raise EventValidationError("op_index must be a non-negative integer")
    p.op_index = op_index
    flags = get("flags") or []
    if not isinstance(flags, list | tuple) or not all(
        type(f) is str and f.isidentifier() for f in flags
    ):
        raise EventValidationError("flags must be a list of identifiers")
    p.flags = sorted(set(flags))
    p.extras_json = (
        canonical_bytes(capped).decode() if capped else "[]",
        canonical_bytes(p.flags).decode() if p.flags else "[]",
        canonical_bytes(withheld).decode() if withheld else "[]",
    )
    return p


def encode_record(p: Prepared, seq: int, prev_hex: str, time_iso: str, version: int) -> bytes:
    """Canonical (JCS) bytes of a sequenced record: keys in sorted order, fragments spliced."""
    capped, flags, withheld = p.extras_json
    op_index = p.op_index
    return (
        f'{{"capped":{capped},"event_id":"{p.event_id}","flags":{flags},'
        f'"identity_id":{_json_str(p.identity_id)},"kernel_id":{_json_str(p.kernel_id)},'
        f'"kernel_time":{_json_str(p.kernel_time)},"kind":"{p.kind}",'
        f'"msg_id":{_json_str(p.msg_id)},"notebook":{p.notebook_json},'
        f'"op_index":{"null" if op_index is None else op_index},"payload":{p.payload_json},'
        f'"prev_hash":"{prev_hex}","schema":{p.schema},"seq":{seq},'
        f'"session_id":{_json_str(p.session_id)},"time":"{time_iso}",'
        f'"trace_id":{_json_str(p.trace_id)},"v":{version},"withheld":{withheld}}}'
    ).encode()


_IDENTITY_CACHE: dict = {}


def _identity(raw) -> tuple[dict, str, str]:
    """(snapshot, identity_id, snapshot JCS text), memoised: the same few identities recur."""
    if not isinstance(raw, dict):
        raise EventValidationError("identity must be an object")
    try:
        key = tuple(
            (k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in sorted(raw.items())
        )
        hit = _IDENTITY_CACHE.get(key)
    except TypeError:  # unhashable values: normalise below reports them
        key, hit = None, None
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

"""Canonical bytes and hashes of trail records (docs/design-notes.md, "Records and canonical
bytes").

Canonical bytes are RFC 8785 (JCS) JSON. Records reaching `canonical_bytes` have been
normalised by `store.records.normalise` (str/int/bool/None/list/dict only, integers within
JavaScript's safe range, no lone surrogates), and for such values JCS equals Python's
`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` except that JCS sorts
keys by UTF-16 code units; dicts with keys outside the BMP therefore go through `rfc8785`.
A property test pins the equivalence.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import rfc8785

GENESIS_HASH = bytes(32)
SAFE_INT = 2**53 - 1

_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def _needs_utf16_sort(value: object) -> bool:
    if isinstance(value, dict):
        for k, v in value.items():
            if any(ord(c) > 0xFFFF for c in k) or _needs_utf16_sort(v):
                return True
    elif isinstance(value, list):
        return any(_needs_utf16_sort(v) for v in value)
    return False


def canonical_bytes(record: dict | list | str, *, astral_keys: bool | None = None) -> bytes:
    """JCS bytes of a normalised record. `astral_keys` may be passed when the caller already
    knows whether any dict key lies outside the BMP (saves a walk)."""
    if astral_keys is None:
        astral_keys = _needs_utf16_sort(record)
    if astral_keys:
        return rfc8785.dumps(record)
    return _dumps(record).encode("utf-8")


def jcs(value: Any) -> bytes:
    """Reference JCS for values not produced by the Writer (bundles, signatures)."""
    return rfc8785.dumps(value)


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


def leaf_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + canonical).digest()


def identity_id(snapshot: dict) -> str:
    return hashlib.sha256(jcs(snapshot)).hexdigest()


def iso_time(us: int) -> str:
    """A record's or a checkpoint's time (microseconds since the epoch) as the trail writes it:
    UTC, microseconds, ``Z``."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

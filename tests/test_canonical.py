"""Canonical bytes equal RFC 8785 (JCS); Merkle roots and proofs match RFC 6962."""

import hashlib
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_audit.events import EventValidationError
from jupyter_audit.store.canonical import canonical_bytes
from jupyter_audit.store.merkle import (
    MerkleFrontier,
    MerkleLevels,
    inclusion_proofs,
    root_from_inclusion,
    root_from_leaves,
)
from jupyter_audit.store.records import encode_record, prepare

json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20
)  # no lone surrogates: the Writer refuses them
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | json_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_bytes_are_jcs(value):
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_astral_keys_sort_by_utf16():
    value = {"\U0001f600": 1, "\ufb33": 2, "a": 3}
    assert canonical_bytes(value) == rfc8785.dumps(value)


class _NoMask:
    def mask(self, v):
        return v

    def mask_structure(self, kind, v):
        return v

    def mask_text(self, t):
        return t


@settings(max_examples=100, deadline=None)
@given(json_values, json_text)
def test_spliced_records_are_jcs(payload, notebook):
    p = prepare(
        {
            "kind": "op.shell",
            "payload": {"command": "ls", "extra": payload},
            "notebook": notebook,
            "identity": {"username": "u"},
            "trace_id": "t-1",
        },
        _NoMask(),
        1 << 20,
    )
    raw = encode_record(p, 7, "ab" * 32, "2026-01-01T00:00:00.000000Z", 1)
    assert raw == rfc8785.dumps(json.loads(raw))


def _naive_root(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _naive_root(leaves[:k]), _naive_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_merkle_roots_and_proofs_match_rfc6962():
    leaves = [hashlib.sha256(b"\x00" + bytes([i])).digest() for i in range(37)]
    frontier = MerkleFrontier()
    levels = MerkleLevels(leaves)
    for n in range(1, len(leaves) + 1):
        frontier.append(leaves[n - 1])
        expected = _naive_root(leaves[:n])
        assert frontier.root() == expected
        assert levels.root(n) == expected
        assert root_from_leaves(leaves[:n]) == expected
        proofs = inclusion_proofs(leaves[:n], range(n))
        for i in range(n):
            assert root_from_inclusion(leaves[i], i, n, proofs[i]) == expected
    restored = MerkleFrontier.from_hex(frontier.size, frontier.to_hex())
    assert restored.root() == frontier.root()


@settings(max_examples=50, deadline=None)
@given(json_text, st.integers(min_value=1, max_value=2**53 - 1))
def test_forwarded_records_carry_their_origin_in_jcs(owner, seq):
    """A collector's record of a forwarded event names where it came from, inside the signed
    bytes (between `op_index` and `payload` in JCS order)."""
    origin = {"server": "alice/", "owner": owner[:200] or "a", "trail": "t-9", "seq": seq}
    origin["hash"] = "cd" * 32
    # what the server capped, as it said (keys of any plane: JCS sorts by UTF-16 units)
    origin["capped"] = [{"field": "payload.x", owner[:50] or "k": seq, "\U0001f600": 1}]
    ev = {"kind": "op.shell", "payload": {"command": "ls"}, "identity": {"username": "u"}}
    try:
        p = prepare(ev, _NoMask(), 1 << 20, origin=origin)
    except EventValidationError:
        assert not origin["owner"].isprintable()
        return
    raw = encode_record(p, 7, "ab" * 32, "2026-01-01T00:00:00.000000Z", 1)
    assert raw == rfc8785.dumps(json.loads(raw))
    assert json.loads(raw)["origin"] == origin


def test_an_origin_is_not_an_envelope_field_and_is_checked():
    ev = {"kind": "op.shell", "payload": {"command": "ls"}}
    with pytest.raises(EventValidationError, match="unknown event fields"):
        prepare({**ev, "origin": {"server": "x"}}, _NoMask(), 1 << 20)
    good = {"server": "a/", "owner": "a", "trail": "t", "seq": 1, "hash": "00"}
    for bad, msg in (
        ({**good, "seq": 0}, "seq"),
        ({**good, "seq": "1"}, "seq"),
        ({**good, "hash": "a b"}, "hash"),
        ({**good, "admin": True}, "unknown"),
        ({k: v for k, v in good.items() if k != "owner"}, "owner"),
    ):
        with pytest.raises(EventValidationError, match=msg):
            prepare(ev, _NoMask(), 1 << 20, origin=bad)
    assert b'"origin"' not in encode_record(prepare(ev, _NoMask(), 1 << 20), 1, "00", "t", 1)

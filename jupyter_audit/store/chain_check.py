"""The chain check's loop, whatever database the records are read from: `ChainScan` takes
rows in batches (seq, hash, record, Merkle leaf) and finds the first that is out of place,
does not hash to its stored hash or leaf, or does not link to the one before. `verify` feeds
it from DuckDB (Arrow batches), `pg.verify` from a PostgreSQL cursor. Pure Python: it reads
no trail itself and must never write one.
"""

from __future__ import annotations

from hashlib import sha256

_LEAF_PREFIX = sha256(b"\x00")


class ChainScan:
    """Records checked as they come, in batches, whatever the database they are read from:
    contiguous from `lo`, each hashing to its stored hash and its stored Merkle leaf, each
    linking to the one before (`start_prev`: the hash record `lo` must link to). Stops
    checking at the first bad record (counting the rows after it)."""

    def __init__(self, lo: int, want, deep: bool, start_prev: bytes):
        self.lo = lo
        self.want_set = set(want)
        self.deep = deep
        self.prev = start_prev
        self.expected = lo
        self.leaves: list[bytes] = []
        self.hash_at: dict[int, bytes] = {}
        # (seq, expected seq, stored hash, record, leaf mismatch)
        self.bad: tuple[int, int, bytes | None, bytes | None, bool] | None = None
        self.rows = 0

    def feed(self, seqs: list, hashes: list, records: list, batch_leaves: list) -> None:
        """One batch of rows, in the order read (columns: seq, hash, record, leaf)."""
        self.rows += len(seqs)
        if self.bad:
            return
        want_set, hash_at, leaf_prefix = self.want_set, self.hash_at, _LEAF_PREFIX
        prev, expected = self.prev, self.expected
        start = expected
        for seq, h, rec, leaf in zip(seqs, hashes, records, batch_leaves, strict=True):
            digest = sha256(prev)
            digest.update(rec)
            if seq != expected or digest.digest() != h:
                self.bad = (seq, expected, h, bytes(rec), False)
                break
            digest = leaf_prefix.copy()
            digest.update(rec)
            if digest.digest() != leaf:
                self.bad = (seq, seq, None, None, True)
                break
            if seq in want_set:
                hash_at[seq] = h
            prev = h
            expected += 1
        if self.deep:
            self.leaves.extend(batch_leaves[: expected - start])
        self.prev, self.expected = prev, expected

    def segment(self, hi: int, first_prev: bytes | None) -> dict:
        """The outcome up to `hi` (`conclude`'s segment): the good prefix's leaves (with
        `deep`, for the Merkle roots), hashes at the wanted sequence numbers and the first
        bad record, if any. `first_prev`: the hash the segment was assumed to link to, when
        the caller must check it against the segment before (None: it was checked)."""
        lo, expected, bad = self.lo, self.expected, self.bad
        if not bad and expected <= hi:
            bad = (expected, expected, None, None, False)  # rows missing at the end
        return {
            "lo": lo,
            "rows": self.rows,
            "first_prev": first_prev,
            "last_hash": self.prev if expected > lo else None,
            "good_upto": expected - 1,
            "leaves": self.leaves,
            "hash_at": self.hash_at,
            "bad": bad,
        }

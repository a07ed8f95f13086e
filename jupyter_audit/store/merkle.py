"""RFC 6962 Merkle tree hashes: incremental frontier, roots, inclusion proofs.

leaf = sha256(0x00 || canonical bytes), node = sha256(0x01 || left || right); the tree over n
leaves splits at the largest power of two smaller than n (RFC 6962 section 2.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleFrontier:
    """Incremental tree: keeps one hash per set bit of the leaf count (perfect subtrees)."""

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()):
        self.size = size
        self._stack = list(stack)
        if len(self._stack) != bin(size).count("1"):
            raise ValueError("frontier does not match its size")

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        stack.append(leaf)
        n = self.size
        while n & 1:
            right = stack.pop()
            stack[-1] = hashlib.sha256(b"\x01" + stack[-1] + right).digest()
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            acc = node_hash(h, acc)
        return acc

    def copy(self) -> MerkleFrontier:
        return MerkleFrontier(self.size, self._stack)

    def blocks(self) -> dict[tuple[int, int], bytes]:
        """The perfect subtrees it keeps, by leaf range [lo, hi): what inclusion proofs of
        later leaves need of the leaves before (`inclusion_proofs(known=...)`)."""
        out, lo = {}, 0
        sizes = [1 << b for b in range(self.size.bit_length() - 1, -1, -1) if self.size >> b & 1]
        for size, h in zip(sizes, self._stack, strict=True):
            out[(lo, lo + size)] = h
            lo += size
        return out

    def to_hex(self) -> str:
        return ",".join(h.hex() for h in self._stack)

    @classmethod
    def from_hex(cls, size: int, text: str) -> MerkleFrontier:
        return cls(size, [bytes.fromhex(h) for h in text.split(",") if h])


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _subtree_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    frontier = MerkleFrontier()
    for i in range(lo, hi):
        frontier.append(leaves[i])
    return frontier.root()


def inclusion_proofs(
    leaves: Sequence[bytes], indices: Sequence[int], known: dict | None = None
) -> dict[int, list[bytes]]:
    """Audit paths (RFC 6962 section 2.1.1) of several leaves in the tree over `leaves`.
    `known`: subtree roots by leaf range, for leaves not at hand (an archived prefix's
    `MerkleFrontier.blocks()`: enough for the proofs of every leaf after it).

    Subtree roots are memoised, so proofs for k leaves of an n-leaf tree cost O(n + k log n).
    """
    memo: dict[tuple[int, int], bytes] = dict(known or {})

    def root(lo: int, hi: int) -> bytes:
        key = (lo, hi)
        got = memo.get(key)
        if got is None:
            if hi - lo == 1:
                got = leaves[lo]
            else:
                k = _split(hi - lo)
                got = node_hash(root(lo, lo + k), root(lo + k, hi))
            memo[key] = got
        return got

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo <= 1:
            return []
        k = _split(hi - lo)
        if m < k:
            return path(m, lo, lo + k) + [root(lo + k, hi)]
        return path(m - k, lo + k, hi) + [root(lo, lo + k)]

    n = len(leaves)
    out = {}
    for i in indices:
        if not 0 <= i < n:
            raise IndexError(f"leaf {i} outside tree of size {n}")
        out[i] = path(i, 0, n)
    return out


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf and its audit path (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


class MerkleLevels:
    """All levels of the tree over a list of leaves, built with one hash per node: gives the
    root of any prefix (every signed checkpoint's tree size) without re-hashing."""

    def __init__(self, leaves: Sequence[bytes]):
        self.levels = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            level = [
                hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            self.levels.append(level)

    def root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        if size > len(self.levels[0]):
            raise ValueError("tree size beyond the leaves")
        parts = []
        start = 0
        for k in range(size.bit_length() - 1, -1, -1):
            if size >> k & 1:
                parts.append(self.levels[k][start >> k])
                start += 1 << k
        acc = parts[-1]
        for p in reversed(parts[:-1]):
            acc = node_hash(p, acc)
        return acc

"""The views of one text that recognizers share: `Context`, and the gates built on it.

Recognizers search a text through views that keep its positions (one byte per character:
non-ASCII characters become ``?``), computed lazily, once per text, whichever recognizers
ask: the ASCII bytes, their lowercase, a character-class view, the runs of token characters.
A gate (``"longrun"``, ``"digits"``, ``"cluster"``, ``"dotted"``, ``"at"``) is a cheap
property of these views that must hold before a recognizer searches at all. This module finds
nothing itself and must never hold a recognizer, nor import one (they import it).
"""

from __future__ import annotations

import re

#: A run of this many token characters gates the well-known token formats.
MIN_TOKEN_RUN = 20

_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# token characters -> "a", everything else -> " "
T_TOK = bytes(0x61 if b in _TOKEN_CHARS else 0x20 for b in range(256))


def _cls(b: int) -> int:
    c = chr(b)
    if b < 128 and c.isupper():
        return ord("A")
    if b < 128 and c.islower():
        return ord("a")
    if b < 128 and c.isdigit():
        return ord("0")
    if c in " -.":
        return b
    return ord("_")


# character classes: upper -> "A", lower -> "a", digit -> "0", " ", "-" and "." kept,
# other -> "_"
_T_CLS = bytes(_cls(b) for b in range(256))
RUN_NEEDLE = b"a" * MIN_TOKEN_RUN
# On the class view ("(", ")", "+", "/" are "_"): seven digits with at most two separator
# characters between neighbours, not starting inside a run or after a ".", where a "." is not
# followed by five digits (every phone number, SSN, SIN, DNI, BSN has such a run; a float's
# fraction does not) ...
CLUSTER = re.compile(rb"0(?<![0.]0)(?:[ _-]{0,2}0|[ _-]?\.[ _-]?(?!0{5})0){6}")
# Every character of a CLUSTER match is a digit or a separator (" ", "_", "-", "."): with the
# separators deleted from the class view, its seven digits are adjacent. A view without seven
# adjacent digits then has no cluster, proved at C speed (commands with --opt10=v10, code).
_SEPARATORS = b" _-."
_SEVEN = b"0" * 7
# No cluster holds a digit of a decimal fraction (a "." right followed by five or more digits,
# all of them taken): a start there follows a digit or the ".", and the "." is never crossed
# into five digits. Replaced by one "x" (no class, so nothing matches across it), they leave
# the same clusters, and the search no longer tries every digit of every float
# (``{"features": [0.8444218515250481, ...]}``): 11 -> 6 µs on 60 floats. Worth its own
# cost only when there are many.
_FRACTION = re.compile(rb"\.0{5,}")
_MANY_FRACTIONS = 8
# ... and a dotted quad (IPv4). Both start with a literal, so they run at C speed.
DOTTED = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")


class Context:
    """Per-call views of one text, computed lazily and shared by all recognizers.

    ``screen``: recognizers may skip work with exact pre-screens (a cheap test that proves
    their full search would find nothing). ``False`` runs every search in full; the engine
    uses that as the reference the tests compare the screened path with.
    """

    __slots__ = (
        "text", "n", "ab", "screen", "_low", "_cls", "_runs", "_digits", "_cluster", "_dotted"
    )  # fmt: skip

    def __init__(self, text: str, screen: bool = True) -> None:
        self.text = text
        self.n = len(text)
        self.screen = screen
        # one byte per character, so positions are shared with ``text``
        self.ab = text.encode("ascii") if text.isascii() else text.encode("ascii", "replace")
        self._low: bytes | None = None
        self._cls: bytes | None = None
        self._runs: list[tuple[int, int]] | None = None
        self._digits: bool | None = None
        self._cluster: bool | None = None
        self._dotted: bool | None = None

    @property
    def low(self) -> bytes:
        """ASCII-lowercased view."""
        if self._low is None:
            self._low = self.ab.lower()
        return self._low

    @property
    def cls(self) -> bytes:
        """Character-class view (see ``_T_CLS``)."""
        if self._cls is None:
            self._cls = self.ab.translate(_T_CLS)
        return self._cls

    @property
    def runs(self) -> list[tuple[int, int]]:
        """(start, end) of every run of >= MIN_TOKEN_RUN token characters."""
        if self._runs is None:
            tok = self.ab.translate(T_TOK)
            runs = []
            i = tok.find(RUN_NEEDLE)
            while i >= 0:
                j = tok.find(b" ", i + MIN_TOKEN_RUN)
                if j < 0:
                    j = self.n
                runs.append((i, j))
                i = tok.find(RUN_NEEDLE, j)
            self._runs = runs
        return self._runs

    @property
    def digits(self) -> bool:
        """True when the text has an ASCII digit (computes the class view)."""
        if self._digits is None:
            self._digits = self.cls.find(b"0") >= 0
        return self._digits

    @property
    def cluster(self) -> bool:
        """True when the class view has a run of seven digits (see ``CLUSTER``)."""
        if self._cluster is None:
            cls = self.cls
            if cls.translate(None, _SEPARATORS).find(_SEVEN) < 0:
                self._cluster = False
            else:
                if cls.count(b".00000") >= _MANY_FRACTIONS:
                    cls = _FRACTION.sub(b"x", cls)
                self._cluster = CLUSTER.search(cls) is not None
        return self._cluster

    @property
    def dotted(self) -> bool:
        """True when the class view has a dotted quad of digit runs (see ``DOTTED``)."""
        if self._dotted is None:
            self._dotted = DOTTED.search(self.cls) is not None
        return self._dotted

    def gate(self, name: str | None) -> bool:
        if name is None:
            return True
        if name == "longrun":
            return bool(self.runs)
        if name == "digits":
            return self.digits
        if name == "at":
            return "@" in self.text
        if name == "cluster":
            return self.cluster
        if name == "dotted":
            return self.dotted
        raise ValueError(f"unknown gate {name!r}")


GATES = (None, "longrun", "digits", "cluster", "dotted", "at")

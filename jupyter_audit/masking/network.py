"""Network addresses: IPv4 and IPv6.

An IPv4 address is four decimal octets (0-255, no leading zeros) standing on their own; a
dotted run that is a version (``v1.2.3.4``, ``version 10.0.0.1``, ``numpy==1.26.4.1``), an
OID or a longer dotted number is not. An IPv6 address is what :mod:`ipaddress` parses, with
at least three groups written (or two when one of them is a word such as ``fe80``), so that
``x[1::2]``, ``std::map`` and ``12:30:45`` are left alone. This module must never mask a
version string.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .base import Recognizer
from .context import Context

IP = "IP_ADDRESS"

# on the class view: starts with a literal ("0."), so the search runs at C speed
_V4_CLS = re.compile(rb"0\.0{1,3}\.0{1,3}\.0{1,3}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = re.compile(_OCTET + r"(?:\." + _OCTET + r"){3}")
# what a version string has before it on its line (on the low view): a word naming a version
# up to 24 characters back (``"model_version": "1.2.3.4"``), a ``v``, a pin (``==``), or a
# product name joined by "/" or "-" (``python-requests/1.2.3.4``, ``pandas-1.2.3.4``)
_VERSION_BEFORE = re.compile(
    rb"(?:(?:version|release|build|revision|ver)[^\n]{0,24}"
    rb"|(?<![a-z])(?:v|python)[ \t]*|(?:==|>=|<=|~=|!=)[ \t]*|[a-z0-9][/-])$"
)


class IPv4Recognizer(Recognizer):
    """Dotted-quad IPv4 addresses (not versions, OIDs, longer dotted numbers or floats)."""

    type = IP
    priority = 45
    gate = "dotted"
    name = "ipv4"
    screened = True

    def may_match(self, ctx: Context) -> bool:
        return ctx.dotted

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        cls, text, n, out = ctx.cls, ctx.text, ctx.n, []
        m = _V4_CLS.search(cls)
        while m is not None:
            s = m.start()
            while s > 0 and cls[s - 1] == 0x30 and m.start() - s < 2:
                s -= 1
            e = m.end()
            m = _V4_CLS.search(cls, e)
            if s > 0 and cls[s - 1] in b"0Aa.":
                continue
            if e < n and (
                cls[e] in b"0Aa" or (cls[e] in b".-" and e + 1 < n and cls[e + 1] in b"0Aa")
            ):
                continue
            if not _V4.fullmatch(text, s, e):
                continue
            if _VERSION_BEFORE.search(ctx.low, max(0, s - 40), s) is not None:
                continue
            out.append((s, e))
        return out


_V6_SCREEN = re.compile(rb":[0-9a-f]{0,4}:")
_V6_CHARS = frozenset(b"0123456789abcdef:")
_WORDISH = frozenset(b"ghijklmnopqrstuvwxyz0123456789_")


class IPv6Recognizer(Recognizer):
    """IPv6 addresses (full or ``::``-compressed), checked by :mod:`ipaddress`."""

    type = IP
    priority = 45
    gate = None
    name = "ipv6"
    screened = True

    def may_match(self, ctx: Context) -> bool:
        return ":" in ctx.text and _V6_SCREEN.search(ctx.low) is not None

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        if ":" not in ctx.text:
            return ()
        low, n, out = ctx.low, ctx.n, []
        m = _V6_SCREEN.search(low)
        done = 0
        while m is not None:
            s, e = m.start(), m.end()
            while s > 0 and s > m.start() - 5 and low[s - 1] in _V6_CHARS:
                s -= 1
            while e < n and e - s < 45 and low[e] in _V6_CHARS:
                e += 1
            m = _V6_SCREEN.search(low, max(e - 1, m.end()))
            if s < done:
                continue
            span = self._address(ctx.text, low, s, e)
            if span is not None:
                out.append(span)
                done = span[1]
        return out

    @staticmethod
    def _address(text: str, low: bytes, s: int, e: int) -> tuple[int, int] | None:
        # an address does not end with a single ":" (a "key: value" or a prompt)
        while e > s and low[e - 1] == 0x3A and not (e - s >= 2 and low[e - 2] == 0x3A):
            e -= 1
        if (s > 0 and (low[s - 1] in _WORDISH or low[s - 1] in b".[")) or (
            e < len(low) and (low[e] in _WORDISH or low[e] == 0x2E)
        ):
            return None
        candidate = text[s:e]
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
        groups = [g for g in candidate.split(":") if g]
        if len(groups) >= 3 or (len(groups) == 2 and max(map(len, groups)) >= 3):
            return (s, e)
        return None

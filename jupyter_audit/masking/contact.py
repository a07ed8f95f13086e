"""Contact data: e-mail addresses.

This module must never mask what only looks like an address (``@property``, ``a@b``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import EMAIL, Recognizer
from .context import Context

# the local part, read backwards from the "@" on the reversed text
_LOCAL_REVERSED = re.compile(rb"[A-Za-z0-9._%+\-]{1,64}")
_DOMAIN = re.compile(
    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    rb"(?![A-Za-z0-9(-]|\.[A-Za-z0-9])"
)


class EmailRecognizer(Recognizer):
    """local@domain.tld -- found from each "@" (``@property`` and ``a@b`` are not emails)."""

    type = EMAIL
    priority = 30
    gate = "at"
    name = "email"

    def normalize(self, value: str) -> str:
        return value.lower()

    def find(self, ctx: Context) -> Iterable[tuple[int, int]]:
        ab = ctx.ab
        at = ab.find(b"@")
        out = []
        while at >= 0:
            m = _DOMAIN.match(ab, at + 1)
            if m is not None:
                local = _LOCAL_REVERSED.match(ab[max(0, at - 64) : at][::-1])
                if local is not None:
                    j = at - local.end()
                    while j < at and ab[j] == 0x2E:  # no leading dot
                        j += 1
                    if j < at:
                        out.append((j, m.end()))
                at = ab.find(b"@", m.end())
            else:
                at = ab.find(b"@", at + 1)
        return out

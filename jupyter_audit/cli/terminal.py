"""Text from the trail made safe for a terminal: whatever a notebook user could put in a
record (a notebook name, a statement, a URL) is printed with every control character shown
as an escape, so it cannot move the cursor, retitle the window, hide text or reorder it."""

from __future__ import annotations

import re

# C0 and C1 controls (ANSI escapes, newlines, BEL), line/paragraph separators, bidi
# embeddings, overrides, isolates and marks, zero-width characters and the BOM
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]"
)


def printable(value: object, width: int | None = None) -> str:
    """One line of text with every control character (ANSI escapes, newlines, bidi
    overrides) shown as an escape; cut to `width` characters with an ellipsis."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(value or ""))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text

"""Text from the trail made safe for a terminal: whatever a notebook user could put in a
record (a notebook name, a statement, a URL) is printed with every control character shown
as an escape, so it cannot move the cursor, retitle the window, hide text or reorder it."""

from __future__ import annotations

import re

# characters that draw nothing and are no control: soft hyphen, combining grapheme joiner,
# Hangul fillers, Khmer vowel inherents, Mongolian selectors, variation selectors and the
# tag characters (`report<tags>.ipynb` looks like `report.ipynb`); shown as escapes here and
# as markers in a replayed notebook (replay_notebook.py)
INVISIBLE = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0000-\U000e0fff"
)
# C0 and C1 controls (ANSI escapes, newlines, BEL), line/paragraph separators, bidi
# embeddings, overrides, isolates and marks, zero-width characters, the BOM, and INVISIBLE
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff"
    + INVISIBLE
    + "]"
)


def printable(value: object, width: int | None = None) -> str:
    """One line of text with every control character (ANSI escapes, newlines, bidi
    overrides) shown as an escape; cut to `width` characters with an ellipsis."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(value or ""))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text

"""Which steps of a trace are repeats of one another, for showing a long trace short.

Consecutive operations of the same cell, of the same kind, doing the same thing fold into one
line with a count: the same SQL statement (parameters aside, whitespace collapsed), the same
shell command, the same HTTP method and URL; never a step the risk reading flags. A loop
of 2,000 `SELECT ? + 1` is then one line "×2000". The key decides; how a caller shows a
group is its own. Pure: no trail.
"""

from __future__ import annotations

import re

from .risk import risk_rules

#: the kinds whose consecutive repeats fold
FOLDED_KINDS = ("op.sql", "op.shell", "op.http")
_SPACE = re.compile(r"\s+")


def fold_key(event: dict) -> tuple | None:
    """What a step repeats: equal keys of consecutive events fold; None never folds. The
    text compared is the statement or command with runs of whitespace made one space (case
    kept: a literal, a path or a shell word differs by case), or the HTTP method and the
    whole (masked) URL. A step the risk reading flags never folds: a group holds only
    identical, unflagged steps, so a risky one shows on its own."""
    kind = event.get("kind")
    p = event.get("payload")
    if kind not in FOLDED_KINDS or not isinstance(p, dict):
        return None
    if kind == "op.sql":
        text = p.get("statement")
    elif kind == "op.shell":
        text = p.get("command")
    else:
        text = f"{p.get('method')} {p.get('url')}"
    if not isinstance(text, str) or risk_rules(kind, p):
        return None
    return (event.get("msg_id"), kind, _SPACE.sub(" ", text).strip())


def failed(event: dict) -> bool:
    """Whether an operation failed (an error, a non-zero exit, an HTTP status ≥ 400)."""
    p = event.get("payload")
    if not isinstance(p, dict):
        return False
    if p.get("error") is not None:
        return True
    code, status = p.get("exit_code"), p.get("status")
    return (isinstance(code, int) and code != 0) or (
        event.get("kind") == "op.http" and isinstance(status, int) and status >= 400
    )

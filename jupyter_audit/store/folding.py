"""Which steps of a trace are repeats of one another, for showing a long trace short.

Consecutive operations of the same cell, of the same kind, doing the same thing fold into one
line with a count: the same SQL statement (parameters aside, whitespace collapsed), the same
shell command, the same HTTP method on the same host. A loop of 2,000 `SELECT ? + 1` is then
one line "×2000". The key decides; how a caller shows a group is its own. Pure: no trail.
"""

from __future__ import annotations

from urllib.parse import urlsplit

#: the kinds whose consecutive repeats fold
FOLDED_KINDS = ("op.sql", "op.shell", "op.http")


def _collapsed(text) -> str:
    return " ".join(str(text or "").split())


def fold_key(event: dict) -> tuple | None:
    """What a step repeats: equal keys of consecutive events fold; None never folds."""
    kind = event.get("kind")
    if kind not in FOLDED_KINDS:
        return None
    p = event.get("payload") or {}
    if kind == "op.sql":
        what = _collapsed(p.get("statement"))
    elif kind == "op.shell":
        what = _collapsed(p.get("command"))
    else:
        try:
            host = urlsplit(str(p.get("url") or "")).netloc
        except ValueError:
            host = str(p.get("url") or "")
        what = f"{p.get('method')} {host}"
    return (event.get("msg_id"), kind, what)


def failed(event: dict) -> bool:
    """Whether an operation failed (an error, a non-zero exit, an HTTP status ≥ 400)."""
    p = event.get("payload") or {}
    if p.get("error"):
        return True
    code = p.get("exit_code")
    if isinstance(code, int) and code != 0:
        return True
    status = p.get("status")
    return event.get("kind") == "op.http" and isinstance(status, int) and status >= 400

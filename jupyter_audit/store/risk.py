"""How risky a stored operation reads: the built-in findings of the server's classifiers
(policy/sql.py, policy/shell.py) on the operation's MASKED statement or command.

One reading for the trace counts (`traces.TraceRow.add`, on the writer thread) and for the
`risk` the REST timeline shows beside an event, so a trace flagged `risky` has a step that
shows why. It reads stored records only, never the configured rules (the kernel asked the
server's configured policy before running the operation; what that decided is recorded by
the approval events): a finding a configured rule re-rates to `allow` still reads as risky
here. Cheap on the hot path: a read without a write word (`might_write`) and a command naming
none of the programs the shell rules know are not classified, and texts seen recently are
remembered. Pure: no trail, no server.
"""

from __future__ import annotations

import re

from ..kernel.prefilter import might_write
from ..policy.shell import classify_shell
from ..policy.sql import classify

# the programs policy/shell.py has rules for (or runs SQL through), and what could hide one
# from a word search (quotes, escapes, substitutions): a command with none has no finding
_SHELL_PROGRAMS = frozenset(
    "rm find psql mysql mariadb sqlite3 duckdb clickhouse-client dropdb dropuser aws gcloud "
    "az gsutil kubectl oc helm terraform tofu pulumi eval".split()
)
_HIDING = "\\'\"`$"
_SPLIT = re.compile(r"[^a-z0-9_.+-]+")
_CACHE_MAX = 4096
_cache: dict[tuple[str, str], tuple[str, ...]] = {}


def _shell_may_find(command: str) -> bool:
    """False only when no shell rule can match `command` (a set of words: one regex pass
    and a set lookup; a regex alternation of the names cost ~100 µs on a 650-character
    command here)."""
    if any(c in command for c in _HIDING):
        return True
    return not _SHELL_PROGRAMS.isdisjoint(_SPLIT.split(command.lower()))


#: the rule DELETE/UPDATE without (a real) WHERE trips: risky only when it changed rows
WHERE_REQUIRED = "statement.where-required"


def _rules(kind: str, text: str) -> tuple[str, ...]:
    """The built-in rules `text` trips, screened first (most texts have no write word or
    no known program) and remembered: statements and commands recur."""
    key = (kind, text)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    rules: list[str] = []
    if kind == "op.sql":
        if might_write(text):
            for st in classify(text):
                rules.extend(f.rule for f in st.findings)
    elif _shell_may_find(text):
        for prog in classify_shell(text):
            rules.extend(f.rule for f in prog.findings)
    out = tuple(dict.fromkeys(rules))
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = out
    return out


def risk_rules(kind: str, payload: dict | None) -> tuple[str, ...]:
    """The built-in rules an `op.sql` / `op.shell` payload trips (empty: not risky). A
    DELETE/UPDATE without WHERE counts when it changed rows (or did not say how many)."""
    if kind == "op.unattributed" and isinstance(payload, dict):
        # an operation the server could not tie to a cell: read as what it was
        kind = str(payload.get("original_kind"))
    if not isinstance(payload, dict) or kind not in _TEXT_FIELD:
        return ()
    text = payload.get(_TEXT_FIELD[kind])
    if not isinstance(text, str):
        return ()
    rules = _rules(kind, text)
    if rules == (WHERE_REQUIRED,) and payload.get("rowcount") == 0:
        return ()
    return rules


_TEXT_FIELD = {"op.sql": "statement", "op.shell": "command"}

"""SQL written in a cell's code: the values it gives to sensitive columns.

``con.execute("SELECT * FROM c WHERE last_name = 'Lee'")`` or
``cur.execute("UPDATE c SET phone = ? WHERE id = ?", ("555 0100", 7))``: the cell's code
(kept by ``cell.requested``, ``cell.started`` and ``cell.finished``) holds the values that
``op.sql`` masks by their column. Each Python string literal of the code that reads as SQL
is read as `sql` reads a statement; its literals given to a sensitive column, and the
elements of a tuple, list or dict of literals passed right after it as its parameters, are
replaced by the same pseudonyms as in ``op.sql``. A statement built at run time (an f-string
field, a concatenation, a variable) is masked in ``op.sql`` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..base import MASKED_RE
from .sql import SqlMasker, _Analysis
from .tables import python_str, tuple_at

Pseudonym = Callable[[str, str], str]

# a string literal that starts like a statement: the screen of a cell's code (C speed)
_SQL_STRING = re.compile(
    r"""(?i)["']\s*(?:select|insert|update|delete|merge|with|replace|upsert)\b"""
)
_REMEMBER = 1024  # codes remembered
_REMEMBER_MAX_LEN = 16_384  # longer codes are read every time
_PARAMS_START = re.compile(r"\s*,\s*(?:(?:parameters|params|vars|args)\s*=\s*)?([(\[{])")
_DICT_PAIR = re.compile(r"""(["'])(\w+)\1\s*:\s*(['"](?:[^'"\\\n]|\\.)*['"]|-?[\d.]+)""")


class CodeMasker:
    """Masks SQL values in the string literals of Python code; remembers the result for the
    codes it saw (a cell's code comes with its cell.requested, cell.started and
    cell.finished, and cells are run again)."""

    def __init__(self, sql: SqlMasker) -> None:
        self.sql = sql
        self._done: dict[tuple[str, object], str] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_done"] = {}
        return state

    def mask(self, code: str, pseudonym: Pseudonym) -> str:
        """``code`` with the values its SQL strings give to sensitive columns masked."""
        key = (code, pseudonym)  # the pseudonym function carries the engine's key
        done = self._done.get(key)  # (first: a re-run cell skips the screens too)
        if done is None:
            if (
                ("'" not in code and '"' not in code)
                or _SQL_STRING.search(code) is None
                or not self.sql.columns.may_occur(code.lower())
            ):
                done = code  # remembered too: most cells have no SQL to read
            else:
                done = self._mask(code, pseudonym)
            if len(code) <= _REMEMBER_MAX_LEN:
                if len(self._done) >= _REMEMBER:
                    self._done.clear()
                self._done[key] = done
        return done

    def _mask(self, code: str, pseudonym: Pseudonym) -> str:
        edits: list[tuple[int, int, str]] = []
        for start, end, quote in _sql_strings(code):
            body = code[start:end]
            analysis = self.sql.analyse(body)
            if analysis is None:
                continue
            # read as written (escapes and f-string fields included): what matters is that
            # no value given to a sensitive column stays in the code
            for s, e, t, _ttype in analysis.literals:
                value = body[s:e]
                inner = value[1:-1] if value[0] in "'\"" else value
                if MASKED_RE.fullmatch(inner):
                    continue
                masked = pseudonym(t, inner)
                edits.append((start + s, start + e, value[0] + masked + value[0]
                              if value[0] in "'\"" else masked))  # fmt: skip
            if analysis.positional or analysis.named:
                edits.extend(_param_edits(code, end + len(quote), analysis, pseudonym))
        if not edits:
            return code
        edits.sort()
        parts, pos = [], 0
        for s, e, text in edits:
            if s < pos:
                continue
            parts.append(code[pos:s])
            parts.append(text)
            pos = e
        parts.append(code[pos:])
        return "".join(parts)


def _sql_strings(code: str):
    """(body start, body end, quote) of each string literal that starts like a statement.

    Found from their openings (a quote, blanks, a statement's first word: one C-speed search
    of the code, where walking every literal of every cell in Python cost ~30 µs a cell). A
    closing quote followed by such a word would be taken for an opening one: that can only
    mask more, never less, and every real opening of a SQL string is found."""
    done = 0
    for m in _SQL_STRING.finditer(code):
        q = m.start()
        if q < done:
            continue
        ch = code[q]
        quote = ch * 3 if code[max(0, q - 2) : q] == ch * 2 else ch
        start = q + 1
        i = start
        while True:
            j = code.find(quote, i)
            if j < 0:
                j = len(code)  # unterminated: read to the end
                break
            backslashes = 0
            while j - 1 - backslashes >= start and code[j - 1 - backslashes] == "\\":
                backslashes += 1
            if backslashes % 2 == 0:
                break
            i = j + 1
        yield start, j, quote
        done = j + len(quote)


def _param_edits(code: str, at: int, analysis: _Analysis, pseudonym: Pseudonym) -> list:
    """Edits for the literal parameters written right after a statement's string."""
    m = _PARAMS_START.match(code, at)
    if m is None:
        return []
    opening = m.start(1)
    out = []
    if m.group(1) == "{":
        close = _closing(code, opening)
        for pair in _DICT_PAIR.finditer(code, opening, close):
            t = analysis.named.get(pair.group(2))
            if t is not None:
                out.append(_literal_edit(code, pair.start(3), pair.end(3), t, pseudonym))
        return [e for e in out if e is not None]
    items = tuple_at(code, opening, "]" if m.group(1) == "[" else ")")
    if items is None:
        return []
    rows = [items]
    if items and all(code[s] in "([" for s, _ in items):  # executemany: rows of parameters
        rows = [r for s, _ in items if (r := tuple_at(code, s, ")" if code[s] == "(" else "]"))]
    for row in rows:
        for k, (s, e) in enumerate(row):
            t = analysis.positional.get(k)
            if t is not None:
                out.append(_literal_edit(code, s, e, t, pseudonym))
    return [e for e in out if e is not None]


def _literal_edit(code: str, s: int, e: int, t: str, pseudonym: Pseudonym):
    value = code[s:e]
    if not value or not (value[0] in "'\"" or value.lstrip("-")[:1].isdigit()):
        return None  # a name or an expression: its value is masked in op.sql
    inner = python_str(value)
    if MASKED_RE.fullmatch(inner):
        return None
    return (s, e, repr(pseudonym(t, inner)))


def _closing(code: str, opening: int) -> int:
    depth = 0
    for i in range(opening, min(len(code), opening + 100_000)):
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return opening

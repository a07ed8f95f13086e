"""SQL-aware masking: literals and bound parameters given to a sensitive column.

``WHERE last_name = 'Smith'``, ``INSERT INTO customers (name, phone) VALUES (?, ?)`` with
``("Ann Lee", "555 0100")``, ``UPDATE c SET email = :e``: the value is masked because of the
column it is compared with, inserted into or assigned to, whatever it looks like (the text
recognizers still run on every statement and parameter afterwards, so a value that looks
like an e-mail or card number is masked wherever it stands).

The statement is read as sqlparse's lexer reads it (`policy.sqlparser.lex`, the project's one
reader of SQL text, its patterns tried as one alternation), without its grouping pass (~0.5 ms
a statement): the flat token stream is enough to see ``column <op> value``,
``column IN (...)``, ``column BETWEEN a AND b``, the column list of an INSERT against its
VALUES rows, and UPDATE SET assignments, which lex as comparisons. Placeholders in every
DB-API style are bound to their parameter: qmark ``?``, numbered ``?1`` ``:1`` ``$1``, named
``:name`` ``$name`` ``@name``, format ``%s`` and pyformat ``%(name)s``. The analysis of a
statement is cached (statements recur); a statement runs through it only when it has
parameters or a literal and a sensitive column name may occur in it. A statement it fails to
read has its statement and parameters withheld by the caller (`structured.StructureMasker`),
never passed on.

Not seen: an INSERT without a column list (the table's columns are not known here).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlparse import tokens as T

from ...policy.sqlparser import lex
from ..base import MASKED_RE
from .names import SensitiveNames

Pseudonym = Callable[[str, str], str]

_VALUE_TYPES = (T.Literal.String.Single, T.Literal.Number, T.Literal)
_DIGIT = re.compile(r"\d")
_UNREAD: Any = object()
_CACHE = 2048  # statements whose analysis is remembered
_CACHE_MAX_LEN = 8192  # longer statements are read every time (memory)
_NUMBERED = re.compile(r"[:$](\d+)")
_NAMED = re.compile(r"(?:[:$@]|%\()([A-Za-z_][A-Za-z0-9_]*)\)?s?")
_STOP_WORDS = frozenset(
    "and or where set from join on group order having limit offset union returning when then "
    "else end values select into".split()
)


class _Analysis:
    """What a statement binds: literal spans with their TYPE, and positional (index) and
    named placeholders with theirs."""

    __slots__ = ("literals", "positional", "named")

    def __init__(self) -> None:
        self.literals: list[tuple[int, int, str, object]] = []
        self.positional: dict[int, str] = {}
        self.named: dict[str, str] = {}

    def empty(self) -> bool:
        return not (self.literals or self.positional or self.named)


class _Tok:
    __slots__ = ("ttype", "value", "start", "placeholder")

    def __init__(self, ttype, value: str, start: int) -> None:
        self.ttype = ttype
        self.value = value
        self.start = start
        self.placeholder: int | str | None = None  # index or name, for placeholders


class SqlMasker:
    """Masks op.sql ``statement`` and ``params`` by the columns their values are given to."""

    def __init__(self, columns: SensitiveNames) -> None:
        self.columns = columns
        self._cache: dict[str, _Analysis | None] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def applies(self, statement: str, params) -> bool:
        """Cheap screen: a literal or parameters, and a sensitive name may occur."""
        if not params and "'" not in statement and _DIGIT.search(statement) is None:
            return False
        return self.columns.may_occur(statement.lower())

    def mask(self, payload: dict, pseudonym: Pseudonym) -> dict:
        """``payload`` with its statement's and parameters' sensitive values replaced by
        pseudonyms (a new dict when anything changed)."""
        statement = payload.get("statement")
        if type(statement) is not str:
            return payload
        params = payload.get("params")
        if not params and "'" not in statement and _DIGIT.search(statement) is None:
            return payload
        cached = self._cache.get(statement, _UNREAD)
        analysis = self.analyse(statement) if cached is _UNREAD else cached
        if analysis is None and type(params) is not dict:
            return payload  # nothing bound to a sensitive column (named ones: by their names)
        out = dict(payload)
        if analysis is not None and analysis.literals:
            out["statement"] = _replace_literals(statement, analysis, pseudonym)
        if params:
            many = payload.get("executemany") is True and type(params) is list
            if many:
                out["params"] = [self._params(p, analysis, pseudonym) for p in params]
            else:
                out["params"] = self._params(params, analysis, pseudonym)
        return out

    def analyse(self, statement: str) -> _Analysis | None:
        cache = self._cache
        if statement in cache:
            return cache[statement]
        # a failure propagates: the caller withholds what it could not read
        analysis: _Analysis | None = None
        if self.columns.may_occur(statement.lower()):
            analysis = _analyse(statement, self.columns)
        if analysis is not None and analysis.empty():
            analysis = None
        if len(statement) <= _CACHE_MAX_LEN:
            if len(cache) >= _CACHE:
                cache.clear()
            cache[statement] = analysis
        return analysis

    def _params(self, params, analysis: _Analysis | None, pseudonym: Pseudonym):
        if type(params) is dict:
            out = {}
            for key, value in params.items():
                t = analysis.named.get(key) if analysis is not None else None
                if t is None and isinstance(key, str):
                    t = self.columns.type_of(key)  # a parameter named like a column
                out[key] = value if t is None else _masked_value(value, t, pseudonym)
            return out
        if type(params) is list and analysis is not None and analysis.positional:
            pos = analysis.positional
            return [
                v if (t := pos.get(i)) is None else _masked_value(v, t, pseudonym)
                for i, v in enumerate(params)
            ]
        return params


def _masked_value(value, t: str, pseudonym: Pseudonym):
    if value is None or value is True or value is False:
        return value
    if type(value) is str:
        if value == "" or MASKED_RE.fullmatch(value):
            return value
        return pseudonym(t, value)
    if type(value) is int or type(value) is float:
        return pseudonym(t, repr(value))
    if type(value) is list:
        return [_masked_value(v, t, pseudonym) for v in value]
    if type(value) is dict:
        return {k: _masked_value(v, t, pseudonym) for k, v in value.items()}
    return pseudonym(t, str(value))


def _literal_value(tok: _Tok) -> str:
    v = tok.value
    if tok.ttype in T.Literal.String.Single or tok.ttype in T.Literal.String.Symbol:
        return v[1:-1].replace(v[0] * 2, v[0])
    if tok.ttype is T.Literal and v.startswith("$"):  # $tag$...$tag$
        tag_end = v.index("$", 1) + 1
        return v[tag_end:-tag_end]
    return v


def _replace_literals(statement: str, analysis: _Analysis, pseudonym: Pseudonym) -> str:
    parts, pos = [], 0
    for start, end, t, quote in sorted(analysis.literals):
        if start < pos:
            continue
        parts.append(statement[pos:start])
        value = statement[start:end]
        tok = _Tok(quote, value, start)
        inner = _literal_value(tok)
        if MASKED_RE.fullmatch(inner):
            parts.append(value)
        elif value[0] in "'\"":
            parts.append(value[0] + pseudonym(t, inner) + value[0])
        else:
            parts.append(pseudonym(t, inner))
        pos = end
    parts.append(statement[pos:])
    return "".join(parts)


# Reading a statement ----------------------------------------------------------------------------


def _tokens(statement: str) -> list[_Tok]:
    """Significant tokens with their offsets; placeholders numbered in DB-API order."""
    out: list[_Tok] = []
    pos = 0
    counter = 0
    raw = lex(statement)
    for i, (ttype, value) in enumerate(raw):
        start = pos
        pos += len(value)
        if ttype in T.Whitespace or ttype in T.Comment or ttype in T.Newline:
            continue
        tok = _Tok(ttype, value, start)
        if ttype in T.Name.Placeholder:
            if value == "?":
                nxt = raw[i + 1] if i + 1 < len(raw) else None
                if nxt is not None and nxt[0] in T.Literal.Number.Integer:
                    tok.placeholder = int(nxt[1]) - 1  # ?NNN
                    out.append(tok)
                    # the number belongs to the placeholder, not a literal
                    raw[i + 1] = (T.Punctuation, nxt[1])
                    continue
                tok.placeholder = counter
                counter += 1
            elif value == "%s":
                tok.placeholder = counter
                counter += 1
            elif m := _NUMBERED.fullmatch(value):
                tok.placeholder = int(m.group(1)) - 1
            elif m := _NAMED.fullmatch(value):
                tok.placeholder = m.group(1)
        elif ttype in T.Name and out and out[-1].value == "@" and out[-1].ttype in T.Operator:
            at = out.pop()  # @name (SQL Server, DuckDB)
            tok = _Tok(T.Name.Placeholder, "@" + value, at.start)
            tok.placeholder = value
        out.append(tok)
    return out


def _is_value(tok: _Tok) -> bool:
    return tok.placeholder is not None or (
        tok.ttype in T.Literal and tok.ttype not in T.Literal.String.Symbol
    )


def _is_name(tok: _Tok) -> bool:
    if tok.placeholder is not None:
        return False
    if tok.ttype in T.Name or tok.ttype in T.Literal.String.Symbol:
        return True
    return tok.ttype in T.Keyword and tok.ttype not in T.Keyword.DML


def _matching_open(toks: list[_Tok], close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        v = toks[i].value
        if v == ")":
            depth += 1
        elif v == "(":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _column_before(toks: list[_Tok], i: int, columns: SensitiveNames) -> str | None:
    """The TYPE of the column the expression ending at ``i`` names (``email``, ``c.email``,
    ``lower(email)``, ``"Email"``), or None."""
    if i < 0:
        return None
    tok = toks[i]
    if tok.value.lower() == "not" and i > 0:
        i -= 1
        tok = toks[i]
    if tok.value == ")":
        start = _matching_open(toks, i)
        for j in range(start + 1, i):
            if _is_name(toks[j]) and (t := columns.type_of(toks[j].value)) is not None:
                return t
        return None
    if _is_name(tok):
        return columns.type_of(tok.value)
    return None


def _bind(toks: list[_Tok], lo: int, hi: int, t: str, out: _Analysis) -> None:
    for j in range(lo, hi):
        tok = toks[j]
        if tok.placeholder is not None:
            if type(tok.placeholder) is int:
                out.positional[tok.placeholder] = t
            else:
                out.named[tok.placeholder] = t  # type: ignore[index]
        elif _is_value(tok) or (
            tok.ttype in T.Literal.String.Symbol and j == lo  # "x" as a string (sqlite)
        ):
            out.literals.append((tok.start, tok.start + len(tok.value), t, tok.ttype))


def _value_end(toks: list[_Tok], i: int, between: bool = False) -> int:
    """The end of the value expression starting at ``i`` (exclusive): the next top-level
    stop word, comma, comparison or closing parenthesis."""
    depth = 0
    n = len(toks)
    skip_and = between
    while i < n:
        tok = toks[i]
        v = tok.value
        if v == "(":
            depth += 1
        elif v == ")":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0:
            if v == "," or v == ";" or tok.ttype in T.Operator.Comparison:
                return i
            low = v.lower()
            if low in _STOP_WORDS and tok.ttype in T.Keyword:
                if low == "and" and skip_and:
                    skip_and = False
                else:
                    return i
        i += 1
    return n


def _analyse(statement: str, columns: SensitiveNames) -> _Analysis:
    toks = _tokens(statement)
    out = _Analysis()
    n = len(toks)
    for i, tok in enumerate(toks):
        low = tok.value.lower()
        if tok.ttype in T.Operator.Comparison:
            t = _column_before(toks, i - 1, columns)
            if t is not None:
                _bind(toks, i + 1, _value_end(toks, i + 1), t, out)
            elif i > 0 and _is_value(toks[i - 1]) and i + 1 < n and _is_name(toks[i + 1]):
                t = columns.type_of(toks[i + 1].value)  # 'x' = email
                if t is not None:
                    _bind(toks, i - 1, i, t, out)
        elif tok.ttype in T.Keyword and low in ("in", "between", "like", "ilike"):
            t = _column_before(toks, i - 1, columns)
            if t is not None:
                _bind(toks, i + 1, _value_end(toks, i + 1, between=low == "between"), t, out)
        elif tok.ttype in T.Keyword and low == "values":
            _bind_insert(toks, i, columns, out)
    return out


def _bind_insert(toks: list[_Tok], at: int, columns: SensitiveNames, out: _Analysis) -> None:
    """``INSERT INTO t (c1, c2) VALUES (v1, v2), (...)``: position k of every row is given
    to column k."""
    if at == 0 or toks[at - 1].value != ")":
        return
    open_ = _matching_open(toks, at - 1)
    if open_ < 0:
        return
    types: list[str | None] = []
    expect_name = True
    for j in range(open_ + 1, at - 1):
        tok = toks[j]
        if tok.value == ",":
            expect_name = True
        elif expect_name and _is_name(tok):
            types.append(columns.type_of(tok.value))
            expect_name = False
    if not any(types):
        return
    i, n = at + 1, len(toks)
    while i < n and toks[i].value == "(":
        k, j = 0, i + 1
        while j < n:
            end = _value_end(toks, j)
            if k < len(types) and (t := types[k]) is not None:
                _bind(toks, j, end, t, out)
            if end >= n or toks[end].value != ",":
                j = end
                break
            k += 1
            j = end + 1
        if j >= n or toks[j].value != ")":
            return
        i = j + 1
        if i < n and toks[i].value == ",":
            i += 1

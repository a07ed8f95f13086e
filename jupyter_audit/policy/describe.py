"""What a SQL statement is and which tables it names: the `statement_type` and `tables` of an
`op.sql` record. The server fills them from the masked statement when it stores the record
(store/records.py); what a kernel sends in those fields is replaced, never trusted.

A description, not a decision: the risk policy (policy/sql.py) decides what waits for a
reviewer and fails closed; this reads the common shapes cheaply (every statement a notebook
runs passes here, most of them reads): the first word says the type (after a WITH, the
first verb outside parentheses), the names after FROM, JOIN, INTO, UPDATE and TABLE say the
tables, outside comments and string literals. Names of common table expressions and table
functions (`read_csv(...)`) are not tables. Texts seen recently are remembered.
"""

from __future__ import annotations

import re

MAX_TABLES = 32
_CACHE_MAX = 4096
_cache: dict[str, tuple[str, tuple[str, ...]]] = {}

# string literals and comments (blanked), so `'FROM t'` and `-- JOIN x` name nothing
_NOISE = re.compile(r"'(?:[^']|'')*'?|--[^\n]*|/\*.*?(?:\*/|$)", re.S)
_NAME = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[^\W\d][\w$]*)'
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME}){{0,2}}"
# FROM, JOIN, INTO, UPDATE, TABLE: found by their first letter (an alternation of the
# words under re.I tries each at every position: ~6x slower on a long statement)
_KEYWORD = re.compile(r"[FfJjIiUuTt](?i:rom|oin|nto|pdate|able)\b")
_AFTER = re.compile(
    rf"\s+(?:ONLY\s+|IF\s+(?:NOT\s+)?EXISTS\s+)?({_QUALIFIED}(?:\s*,\s*{_QUALIFIED})*)(\s*\()?",
    re.I,
)
_ONE = re.compile(_QUALIFIED)
_CTE = re.compile(
    rf"(?:\bWITH(?:\s+RECURSIVE)?|,)\s*({_NAME})\s*(?:\([^()]*\)\s*)?AS\s+"
    rf"(?:NOT\s+)?(?:MATERIALIZED\s+)?\(",
    re.I,
)
# `EXTRACT(year FROM d)`, `TRIM(x FROM y)`…: FROM inside these calls names no table
_CALLS = ("extract", "substring", "trim", "position", "overlay")
_IN_CALL = re.compile(r"\b(?:EXTRACT|SUBSTRING|TRIM|POSITION|OVERLAY)\s*\([^()]*$", re.I)
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z]+)")
_MAIN_VERBS = frozenset("SELECT INSERT UPDATE DELETE MERGE VALUES TABLE FROM".split())
_WORDS = re.compile(r"[A-Za-z_]+|[()]")
# words that may follow FROM and are not a table (`DELETE FROM`, `EXTRACT(x FROM y)`…)
_NOT_TABLES = frozenset(
    "SELECT VALUES LATERAL UNNEST ONLY WHERE SET DEFAULT AS ON USING GROUP ORDER LIMIT".split()
)


def describe_sql(statement: str) -> tuple[str, tuple[str, ...]]:
    """(statement type, tables named) of `statement`: the type in upper case (`SELECT`,
    `DELETE`, … `UNKNOWN`; `MULTIPLE` when a string holds statements of several types),
    tables as written (quotes removed), in order of appearance, at most MAX_TABLES."""
    hit = _cache.get(statement)
    if hit is not None:
        return hit
    out = _describe(statement)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[statement] = out
    return out


def _describe(statement: str) -> tuple[str, tuple[str, ...]]:
    text = _NOISE.sub(" ", statement)
    lowered = text.lower()
    calls = any(word in lowered for word in _CALLS)
    ctes = set()
    if "with" in lowered:
        ctes = {_unquote(m.group(1)).lower() for m in _CTE.finditer(text)}
    tables: dict[str, None] = {}
    for k in _KEYWORD.finditer(text):
        if k.start() and (text[k.start() - 1].isalnum() or text[k.start() - 1] in "_$."):
            continue  # part of a longer name (`datafrom`, `t.from`)
        m = _AFTER.match(text, k.end())
        if m is None or (calls and _IN_CALL.search(text, max(0, k.start() - 200), k.start())):
            continue
        names = _ONE.findall(m.group(1))
        if m.group(2) and k.group().upper() in ("FROM", "JOIN"):
            # `FROM read_csv(…)`: the last name is a table function (`INTO t (a, b)` and
            # `TABLE t (id INT)` name a table)
            names = names[:-1]
        for raw in names:
            if "." in raw:
                name = ".".join(_unquote(p) for p in _split_dots(raw))
            else:
                name = _unquote(raw)
            if name.upper() not in _NOT_TABLES and name.lower() not in ctes:
                tables.setdefault(name)
    types = [t for t in dict.fromkeys(map(_type, text.split(";"))) if t is not None]
    types = types or ["UNKNOWN"]
    kind = types[0] if len(types) == 1 else "MULTIPLE"
    return kind, tuple(list(tables)[:MAX_TABLES])


def _type(part: str) -> str | None:
    first = _FIRST_WORD.match(part)
    if first is None:
        return None
    verb = first.group(1).upper()
    if verb != "WITH":
        return verb
    # the statement after the common table expressions: its first verb outside parentheses
    depth = 0
    for w in _WORDS.finditer(part, first.end()):
        tok = w.group()
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif depth == 0 and tok.upper() in _MAIN_VERBS:
            return tok.upper()
    return "WITH"


def _split_dots(name: str) -> list[str]:
    parts, cur, quote = [], "", ""
    for ch in name:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in '"`[':
            quote = "]" if ch == "[" else ch
            cur += ch
        elif ch == ".":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in '"`[' and text[-1] in '"`]':
        return text[1:-1]
    return text

"""The one place that uses sqlparse: SQL text -> statements of plain tokens.

sqlparse (0.5/0.6) is used for its lexer only: it tells comments, string literals, quoted
identifiers, numbers, operators and words apart. Its grouping is not used (~2 ms for 200
characters, a 10,000-token guard, and `get_type()` says UNKNOWN for GRANT, COPY, PRAGMA, SHOW
or FROM-first queries and SELECT for a CTE-wrapped DELETE); the classifier reads the flat
tokens itself. Statements are split at every `;` token, which can only split more finely than
a database does.

Dialects disagree on quoting, so `statements()` can lex the text twice: once as sqlparse does
(backslash escapes in strings, `# ` comments, dollar quotes, `[names]`) and once strictly,
reading as code whatever some dialect reads as code (no backslash escapes as in PostgreSQL
and SQLite, `#` an operator as in PostgreSQL, `--` a comment only before whitespace and `$$`
no quote as in MySQL, no bracketed names). The classifier keeps the findings of both, so
`'\\'; DELETE FROM t; --'` or `1 --1; DELETE FROM t` cannot hide a DELETE. MySQL's executable
comments (`/*! … */`) are read as code. Keywords are ASCII words whatever
sqlparse calls them (it lexes `WHERE(` as a name). The patterns run as one alternation
(`FastLexer`, the same tokens ~2x faster than sqlparse's loop). Text over PARSE_LIMIT
characters is not lexed at all: the caller falls back to a keyword scan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlparse import keywords as _keywords
from sqlparse import tokens as T
from sqlparse.lexer import Lexer

# ~30 ms of lexing on a quiet core; larger statements get the keyword scan (policy/sql.py)
PARSE_LIMIT = 20_000

_WORDISH = re.compile(r"[^\W\d][\w$#]*|\d\w*", re.UNICODE)


@dataclass(slots=True)
class Tok:
    """One token: kind is word, name (quoted identifier), string, number, param, punct,
    cmp (comparison operator), op or other. `up` is the upper-cased ASCII keyword of a word
    ("" for a non-ASCII word, which is never a keyword)."""

    kind: str
    text: str
    up: str
    start: int
    end: int
    depth: int = 0


def _strict_regex() -> list:
    """sqlparse's lexer reading as much as code as any dialect might: no backslash escapes,
    `#` not a comment, `--` a comment only before whitespace (MySQL runs `1 --1; DELETE …`),
    no `[bracketed]` or `´quoted´` names."""
    regex = []
    patched = 0
    for rx, tt in _keywords.SQL_REGEX:
        patched += 1
        if rx == r"'(''|\\'|[^'])*'":
            rx = r"'(''|[^'])*'"
        elif rx == r'"(""|\\"|[^"])*"':
            rx = r'"(""|[^"])*"'
        elif rx == r'(""|".*?[^\\]")':
            rx = r'""'
        elif rx.startswith("(--|# )"):
            rx = r"--(?=[ \t\r\n\f\v]|$)" + rx[len("(--|# )") :]
        elif rx in (r"(?<![\w\])])(\[[^\]\[]+\])", r"´(´´|[^´])*´"):
            continue
        else:
            patched -= 1
        regex.append((rx, tt))
    if patched != 7:
        # a sqlparse release with other patterns: refuse to run half-strict
        raise RuntimeError(f"sqlparse's lexer changed ({patched} of 7 patterns found)")
    return regex


class FastLexer:
    """sqlparse's lexer loop over the same patterns, tried as one alternation.

    sqlparse's `Lexer.get_tokens` calls each of its ~70 patterns in turn at every token
    (~2.5 µs a character); Python's alternation keeps that order (the first alternative that
    matches wins), so one `match` per token gives the same tokens several times faster.
    Dollar quotes and block comments are paired by sqlparse's own `find_delimited_spans`,
    keywords looked up by its `Lexer.is_keyword`. tests/test_policy_sql.py checks that the
    tokens equal sqlparse's over the whole suite and fuzzed input.
    """

    def __init__(self, regex: list) -> None:
        self.keywords = Lexer()
        self.keywords.default_initialization()  # its keyword tables; its patterns unused
        self.actions = [tt for _, tt in regex]
        self.pattern = re.compile(
            "|".join(f"(?P<g{i}>{rx})" for i, (rx, _) in enumerate(regex)),
            re.IGNORECASE | re.UNICODE,
        )

    def get_tokens(self, text: str):
        spans = _keywords.find_delimited_spans(text)
        openers = spans.openers
        match, actions, n, pos = self.pattern.match, self.actions, len(text), 0
        while pos < n:
            if pos in openers:
                resolved = spans.resolve(pos)
                if resolved is not None:
                    end, ttype = resolved
                    yield ttype, text[pos:end]
                    pos = end
                    continue
            m = match(text, pos)
            if m is None or m.end() == pos:
                yield T.Error, text[pos]
                pos += 1
                continue
            action = actions[int(m.lastgroup[1:])]  # type: ignore[index]
            value = m.group()
            if action is _keywords.PROCESS_AS_KEYWORD:
                yield self.keywords.is_keyword(value)
            else:
                yield action, value
            pos = m.end()


_LEXERS = {"sqlparse": FastLexer(list(_keywords.SQL_REGEX)), "strict": FastLexer(_strict_regex())}


def lex(text: str, reading: str = "sqlparse") -> list:
    """sqlparse's (ttype, value) tokens of ``text``, read as sqlparse does or ``"strict"``ly
    (for readers of the flat stream outside the policy: masking/structured/sql.py)."""
    return list(_LEXERS[reading].get_tokens(text))


_EXECUTABLE_COMMENT = re.compile(r"/\*!\d*")
_DOLLAR_TAG = re.compile(r"\$\w*\$")


def _kind(ttype) -> str | None:
    if ttype in T.Comment or ttype in T.Whitespace or ttype is T.Newline:
        return None
    if ttype in T.String.Symbol:
        return "name"
    if ttype in T.Literal.String or ttype is T.Literal:
        return "string"
    if ttype in T.Number:
        return "number"
    if ttype in T.Name.Placeholder:
        return "param"
    if ttype in T.Punctuation:
        return "punct"
    if ttype in T.Operator.Comparison:
        return "cmp"
    if ttype in T.Operator or ttype in T.Wildcard or ttype in T.Assignment:
        return "op"
    return "word"


def _lex(text: str, lexer: FastLexer, offset: int, out: list[Tok]) -> None:
    pos = offset
    strict = lexer is _LEXERS["strict"]
    for ttype, value in lexer.get_tokens(text):
        start, pos = pos, pos + len(value)
        if strict and ttype is T.Literal and value.startswith("$"):
            # MySQL reads `$$` as a name, not a quote: what is inside may be code
            tag = _DOLLAR_TAG.match(value)
            n = tag.end() if tag else 1
            out.append(Tok("other", value[:n], value[:n], start, start + n))
            _lex(value[n:], lexer, start + n, out)
            continue
        if ttype in T.Comment and value.startswith("/*!"):
            # MySQL runs the inside of /*! … */ (and /*!50001 … */): it is code
            head = _EXECUTABLE_COMMENT.match(value)
            inner = value[head.end() if head else 3 : -2 if value.endswith("*/") else None]
            _lex(inner, lexer, start + (head.end() if head else 3), out)
            continue
        kind = _kind(ttype)
        if kind is None:
            continue
        if kind == "cmp" and not value[0].isalpha():
            out.append(Tok("cmp", value, value, start, pos))
        elif kind in ("word", "cmp"):
            if value[:1] in "`[´":
                out.append(Tok("name", value, value, start, pos))
                continue
            # multi-word tokens (CREATE OR REPLACE, IF NOT EXISTS, NOT LIKE) become words
            for m in _WORDISH.finditer(value):
                word = m.group()
                up = word.upper() if word.isascii() else ""
                if word[0].isdigit():
                    kind_ = "number"
                elif kind == "cmp" and up in ("LIKE", "ILIKE", "RLIKE", "REGEXP", "BINARY"):
                    kind_ = "cmp"
                else:
                    kind_ = "word"
                out.append(Tok(kind_, word, up, start + m.start(), start + m.end()))
            if not _WORDISH.search(value):
                out.append(Tok("other", value, value, start, pos))
        else:
            out.append(Tok(kind, value, value, start, pos))


def statements(text: str, reading: str = "sqlparse") -> list[list[Tok]]:
    """The statements of `text` as token lists (`;` splits; comments and whitespace
    dropped), each token with its parenthesis depth within the statement."""
    toks: list[Tok] = []
    _lex(text, _LEXERS[reading], 0, toks)
    out: list[list[Tok]] = []
    current: list[Tok] = []
    depth = 0
    for tok in toks:
        if tok.kind == "punct" and tok.text == ";":
            if current:
                out.append(current)
            current, depth = [], 0
            continue
        if tok.kind == "punct" and tok.text == ")":
            depth = max(depth - 1, 0)
        tok.depth = depth
        if tok.kind == "punct" and tok.text == "(":
            depth += 1
        current.append(tok)
    if current:
        out.append(current)
    return out


def needs_second_reading(text: str) -> bool:
    """Whether the strict reading of `text` can differ from sqlparse's: a backslash, `#`,
    `[`, `´`, a dollar-quote tag or `--` before anything but whitespace."""
    return _READINGS_DIFFER.search(text) is not None


_READINGS_DIFFER = re.compile(r"[\\#\[´]|\$\w*\$|--(?![ \t\r\n\f\v]|\Z)")

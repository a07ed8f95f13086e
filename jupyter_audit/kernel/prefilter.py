"""Which statements the kernel must show the server's policy before running them.

`might_write(statement)` is False only when the statement has no write, DDL or
side-effect keyword outside comments, string literals and quoted identifiers: such a
statement runs without asking. Everything else goes to the server (`kernel/approvals`), whose
policy (jupyter_audit/policy/) decides. The list of words is the one the server's classifier
uses for its own fail-closed scan, so the two never disagree in the dangerous direction: the
server's tests run every statement of the adversarial suite through both.

Standard library only (this module is copied into foreign kernels). It must never say False
for something the server would not allow, so every ambiguity makes it say True: a word is
matched even beside digits, `$` or non-ASCII letters; MySQL's executable `/*! … */` comments,
`#` comments, `--x` (MySQL's double minus), dollar-quoted and bracketed text count as code;
an unterminated string or comment is not stripped; and backslashes are read both ways
(standard SQL and backslash-escaping dialects).
"""

from __future__ import annotations

import re

# Statements and functions that write data, change schema or privileges, touch files or
# run code the classifier cannot see. The policy's rules only ever see statements holding
# one of these words (docs/policy.md).
WRITE_WORDS: frozenset[str] = frozenset(
    {
        # data
        "insert", "update", "delete", "merge", "upsert", "replace", "truncate",
        # schema and privileges
        "create", "drop", "alter", "rename", "grant", "revoke", "reassign",
        # files, databases, extensions, settings
        "copy", "export", "import", "attach", "detach", "install", "load", "pragma",
        "vacuum", "outfile", "dumpfile",
        # code the classifier cannot see
        "call", "do", "exec", "execute",
        # functions with side effects (PostgreSQL)
        "lo_export", "lo_import", "lo_unlink", "dblink_exec", "pg_terminate_backend",
        "pg_cancel_backend", "pg_reload_conf", "pg_file_write", "pg_write_file",
        # SQLite: loads native code; writes a file (fileio)
        "load_extension", "writefile",
    }
)  # fmt: skip

# Words are runs of ASCII letters and `_`: digits, `$`, `#` and non-ASCII characters split
# words, which can only add matches (`1delete` matches; sqlparse reads one word). One
# bytes.translate maps every other byte to a space and folds case: ~1.5 µs for 200 characters,
# a third of a regular expression's time.
_FOLD = bytes(
    (c | 0x20) if (65 <= c <= 90 or 97 <= c <= 122) else c if c == 95 else 32 for c in range(256)
)
_WRITE_BYTES = frozenset(w.encode("ascii") for w in WRITE_WORDS)


def _has_word(text: str) -> bool:
    return not _WRITE_BYTES.isdisjoint(text.encode("ascii", "replace").translate(_FOLD).split())


# comments and quoted text as standard SQL reads them; MySQL's executable `/*!…*/`, `#` (an
# operator in PostgreSQL) and `--` before anything but whitespace (MySQL: `1 --1` is 1 - -1)
# stay code. An unterminated comment or string matches up to the end in one step (so many
# openers cost one pass, not one pass each) and is then kept as code (`_strip`).
_QUOTED = (
    r"--(?=\s|\Z)[^\r\n]*(?P<line>)"
    r"|/\*(?!!)(?:.*?(?P<comment>\*/)|.*)"
    r"|'(?:[^']|'')*(?:(?P<single>')|\Z)"
    r'|"(?:[^"]|"")*(?:(?P<double>")|\Z)'
    r"|`(?:[^`]|``)*(?:(?P<back>`)|\Z)"
)
_STANDARD = re.compile(_QUOTED, re.DOTALL)
# the same where a backslash escapes the next character (MySQL, PostgreSQL E'' strings)
_BACKSLASH = re.compile(
    _QUOTED.replace("[^']|''", r"[^'\\]|''|\\.").replace('[^"]|""', r'[^"\\]|""|\\.'),
    re.DOTALL,
)


def _blank(m: re.Match) -> str:
    # a terminated comment or string (its closing group matched) goes; an unterminated one
    # stays, as the server's lexer then reads what follows it as code
    return " " if m.lastgroup is not None else m.group()


def _strip(pattern: re.Pattern, statement: str) -> str:
    return pattern.sub(_blank, statement)


def might_write(statement: str) -> bool:
    """False only when `statement` has no write/DDL word outside comments and quoted text."""
    if not _has_word(statement):
        return False
    if _has_word(_strip(_STANDARD, statement)):
        return True
    return "\\" in statement and _has_word(_strip(_BACKSLASH, statement))


def write_words(statement: str) -> frozenset[str]:
    """The write/DDL words of `statement` outside comments and quoted text, read both ways
    (the server's fallback for statements too large to parse)."""
    found = _words(_strip(_STANDARD, statement))
    if "\\" in statement:
        found |= _words(_strip(_BACKSLASH, statement))
    return found


def _words(text: str) -> frozenset[str]:
    words = _WRITE_BYTES.intersection(text.encode("ascii", "replace").translate(_FOLD).split())
    return frozenset(w.decode("ascii") for w in words)

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
        "lo_export", "lo_import", "lo_unlink", "dblink_exec", "dblink", "dblink_send_query",
        "pg_terminate_backend",
        "pg_cancel_backend", "pg_reload_conf", "pg_file_write", "pg_write_file",
        "lo_put", "set_config", "pg_drop_replication_slot", "pg_promote",
        "pg_rotate_logfile", "pg_switch_wal",
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
    if "\\" in statement and _has_word(_strip(_BACKSLASH, statement)):
        return True
    return needs_dialect_readings(statement) and any(
        _has_word(text) for text in dialect_readings(statement)
    )


def write_words(statement: str) -> frozenset[str]:
    """The write/DDL words of `statement` outside comments and quoted text, read every way
    (the server's fallback for statements too large to parse)."""
    found = _words(_strip(_STANDARD, statement))
    if "\\" in statement:
        found |= _words(_strip(_BACKSLASH, statement))
    if needs_dialect_readings(statement):
        for text in dialect_readings(statement):
            found |= _words(text)
    return found


# ---------------------------------------------------------------- the databases' own readings
# The two uniform readings above (no backslash escapes anywhere / backslash escapes
# everywhere) are not how any one database reads a statement when it mixes constructs:
# PostgreSQL and DuckDB nest block comments, escape backslashes only in E'' strings and quote
# with $tag$; MySQL ends `#` and `-- ` comments at a newline only; SQLite ends `--` comments
# at a newline only (not at a carriage return). `dialect_readings` reads the text as each of
# them does and returns it with comments blanked and quoted text replaced by `'xxx'` of the
# same length, so the server can lex each reading (positions unchanged) and this module can
# look for words in it. Text a database would reject (an unterminated string or comment) is
# read as code.
_IDENT = r"[^\W\d]\w*"
_DIALECTS = {
    "postgres": re.compile(
        # (a backtick is a syntax error there: whatever it encloses cannot run)
        r"--|/\*|(?<![\w$])[Ee]'|'|\"|`|(?<![\w$])\$(?:" + _IDENT + r")?\$",
        re.UNICODE,
    ),
    "mysql": re.compile(r"--(?=[\x00-\x20]|\Z)|#|/\*M?!\d*|/\*|'|\"|`"),
    "mysql-no-backslash": re.compile(r"--(?=[\x00-\x20]|\Z)|#|/\*M?!\d*|/\*|'|\"|`"),
    "sqlite": re.compile(r"--|/\*|'|\"|`|\["),
}
_STRING_PLAIN = re.compile(r"'(?:[^']|'')*'", re.DOTALL)
_STRING_ESCAPED = re.compile(r"'(?:[^'\\]|''|\\.)*'", re.DOTALL)
_DOUBLE_PLAIN = re.compile(r'"(?:[^"]|"")*"', re.DOTALL)
_DOUBLE_ESCAPED = re.compile(r'"(?:[^"\\]|""|\\.)*"', re.DOTALL)
_BACKTICK = re.compile(r"`(?:[^`]|``)*`", re.DOTALL)
_NESTING = re.compile(r"/\*|\*/")
_DIALECT_CHARS = ("\\", "$", "#", "\r", "[", "/*")
_DASHES = re.compile(r"--(?![ \t\n\f\v]|\Z)")


def needs_dialect_readings(statement: str) -> bool:
    """Whether some database may read `statement` unlike both uniform readings (plain `in`
    tests first: this runs for every statement with a write word in a literal)."""
    for c in _DIALECT_CHARS:
        if c in statement:
            return True
    return "--" in statement and _DASHES.search(statement) is not None


def _quoted(text: str, start: int, end: int) -> str:
    return "'" + "x" * (end - start - 2) + "'"


_QUOTING = re.compile(r"['\"`\[\]#$\\]|/\*|\*/|--")


def _spaces(m: re.Match) -> str:
    return " " * len(m.group())


def _read(statement: str, dialect: str) -> str:
    openers = _DIALECTS[dialect]
    escapes = dialect == "mysql"
    newline = "\r\n" if dialect == "postgres" else "\n"
    out: list[str] = []
    pos, n = 0, len(statement)
    while pos < n:
        m = openers.search(statement, pos)
        if m is None:
            out.append(statement[pos:])
            break
        start, tok = m.start(), m.group()
        out.append(statement[pos:start])
        end = -1
        mask = None
        if tok in ("--", "#"):
            end = n
            for c in newline:
                i = statement.find(c, m.end())
                if i >= 0:
                    end = min(end, i)
            mask = " " * (end - start)
        elif tok.startswith("/*") and tok != "/*":
            # MySQL/MariaDB executable comment: its inside is code
            out.append(" " * len(tok))
            pos = m.end()
            continue
        elif tok == "/*":
            if dialect == "postgres":
                depth = 0
                for nest in _NESTING.finditer(statement, start):
                    depth += 1 if nest.group() == "/*" else -1
                    if depth == 0:
                        end = nest.end()
                        break
            else:
                i = statement.find("*/", m.end())
                end = i + 2 if i >= 0 else -1
            if end >= 0:
                mask = " " * (end - start)
        elif tok in ("'", "E'", "e'"):
            q = start + len(tok) - 1
            pattern = _STRING_ESCAPED if escapes or tok != "'" else _STRING_PLAIN
            s = pattern.match(statement, q)
            if s:
                end = s.end()
                mask = tok[:-1] + _quoted(statement, q, end)
        elif tok == '"':
            s = (_DOUBLE_ESCAPED if escapes else _DOUBLE_PLAIN).match(statement, start)
            if s:
                end = s.end()
                mask = _quoted(statement, start, end)
        elif tok == "`":
            s = _BACKTICK.match(statement, start)
            if s:
                end = s.end()
                mask = _quoted(statement, start, end)
        elif tok == "[":
            i = statement.find("]", start + 1)
            end = i + 1 if i >= 0 else -1
            if end >= 0:
                mask = _quoted(statement, start, end)
        else:  # a dollar quote: $$ or $tag$
            i = statement.find(tok, m.end())
            end = i + len(tok) if i >= 0 else -1
            if end >= 0:
                mask = _quoted(statement, start, end)
        if mask is None:
            # unterminated: the database rejects the text; read the rest as code, quoting
            # characters blanked (one pass: many openers cannot make this quadratic)
            out.append(_QUOTING.sub(_spaces, statement[start:]))
            break
        out.append(mask)
        pos = end
    return "".join(out)


def dialect_readings(statement: str) -> list[str]:
    """`statement` as PostgreSQL/DuckDB, MySQL (with and without backslash escapes) and
    SQLite read it: comments blanked, quoted text replaced by `'xxx'`, same length."""
    backslash = "\\" in statement  # without one, MySQL reads alike with or without escapes
    return [_read(statement, d) for d in _DIALECTS if backslash or d != "mysql"]


def _words(text: str) -> frozenset[str]:
    words = _WRITE_BYTES.intersection(text.encode("ascii", "replace").translate(_FOLD).split())
    return frozenset(w.decode("ascii") for w in words)

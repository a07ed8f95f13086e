"""SQL classification: every statement of a string -> its type, the tables it writes, and the
built-in rules it trips (rule ids in docs/policy.md).

Reads the flat tokens of policy/sqlparser.py, at every depth: a DELETE inside a CTE, a
subquery or `EXPLAIN ANALYZE` is found like a top-level one. It fails closed: a statement
holding a write or DDL word (kernel/prefilter.py's list, the same one the kernel uses) that
it does not understand is `statement.unparsed`; one too large to lex is
`statement.too-large` when the keyword scan finds such a word. Never raises on any text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernel.prefilter import (
    WRITE_WORDS,
    dialect_readings,
    needs_dialect_readings,
    write_words,
)
from .sqlparser import PARSE_LIMIT, Tok, needs_second_reading, statements

WRITE_UP = frozenset(w.upper() for w in WRITE_WORDS)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    message: str
    tables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Statement:
    """One classified statement: `text` is its source, `tables` the tables it writes."""

    text: str
    statement_type: str
    tables: tuple[str, ...]
    findings: tuple[Finding, ...]


# statement verbs that only read, or only touch the session or transaction
READ_VERBS = frozenset(
    "SELECT WITH VALUES TABLE FROM SUMMARIZE DESCRIBE DESC SHOW EXPLAIN PIVOT UNPIVOT".split()
)
SESSION_VERBS = frozenset(
    "BEGIN START COMMIT END ROLLBACK SAVEPOINT RELEASE ABORT SET RESET USE CHECKPOINT ANALYZE "
    "LISTEN UNLISTEN NOTIFY DEALLOCATE DISCARD PREPARE DECLARE FETCH MOVE CLOSE LOCK COMMENT "
    "REINDEX CLUSTER REFRESH".split()
)
# read-only PRAGMAs (SQLite, DuckDB); any other, and any with `=`, is pragma.write
READ_PRAGMAS = frozenset(
    "table_info table_xinfo table_list index_list index_info index_xinfo foreign_key_list "
    "foreign_key_check integrity_check quick_check database_list collation_list function_list "
    "pragma_list module_list compile_options user_version schema_version application_id "
    "data_version page_count page_size freelist_count encoding journal_mode foreign_keys "
    "show show_tables show_tables_expanded storage_info database_size version platform "
    "user_agent metadata_info functions collations "
    # settings read when named bare (SQLAlchemy's sqlite dialect reads read_uncommitted on
    # its first connection); set with `=` or `(…)`
    "read_uncommitted busy_timeout cache_size synchronous auto_vacuum locking_mode temp_store "
    "wal_autocheckpoint".split()
)
_SETTABLE_PRAGMAS = frozenset(
    "user_version application_id journal_mode foreign_keys page_size encoding "
    "read_uncommitted busy_timeout cache_size synchronous auto_vacuum locking_mode temp_store "
    "wal_autocheckpoint".split()
)
# functions that act outside the query (PostgreSQL, SQLite); their names are in WRITE_WORDS
SIDE_EFFECT_FUNCTIONS = frozenset(
    "LO_EXPORT LO_IMPORT LO_UNLINK DBLINK_EXEC PG_TERMINATE_BACKEND PG_CANCEL_BACKEND "
    "PG_RELOAD_CONF PG_FILE_WRITE PG_WRITE_FILE LOAD_EXTENSION WRITEFILE "
    # a large object written; a setting changed for the session (or the transaction); a
    # replication slot dropped; a standby promoted; the server's log or WAL file switched
    "LO_PUT SET_CONFIG PG_DROP_REPLICATION_SLOT PG_PROMOTE PG_ROTATE_LOGFILE PG_SWITCH_WAL "
    # dblink runs the SQL in its string argument (a DELETE too) on any database
    "DBLINK DBLINK_SEND_QUERY".split()
)
ROUTINES = frozenset("FUNCTION PROCEDURE TRIGGER RULE EVENT MACRO".split())
ROLES = frozenset(("ROLE", "USER", "GROUP"))
# words between a verb and its target that are not the target
_MODIFIERS = frozenset(
    "FROM INTO ONLY TABLE IF EXISTS NOT TEMP TEMPORARY UNLOGGED GLOBAL LOCAL LOW_PRIORITY "
    "QUICK IGNORE DELAYED HIGH_PRIORITY OR REPLACE ROLLBACK ABORT FAIL VIEW MATERIALIZED "
    "FOREIGN OVERWRITE CONCURRENTLY".split()
)
_CONSTANT_WORDS = frozenset(
    "TRUE FALSE NULL NOT AND OR IS IN BETWEEN LIKE ILIKE GLOB DISTINCT FROM CASE WHEN THEN "
    "ELSE END SELECT EXISTS CAST AS INT INTEGER BIGINT TEXT VARCHAR BOOLEAN BOOL".split()
)
_SELF_TRUE = frozenset(("=", "==", ">=", "<=", "LIKE", "ILIKE", "GLOB", "IS"))
# bounds that keep every check linear in the statement's size: nesting a WHERE condition
# deeper, or putting more write words in one statement (no `;`), fails closed
MAX_NESTING = 32
MAX_WRITE_WORDS = 64


def classify(text: str) -> list[Statement]:
    """The statements of `text`, classified; both dialect readings merged (sqlparser.py)."""
    if len(text) > PARSE_LIMIT:
        return [_too_large(text)]
    found = [_statement(text, toks) for toks in statements(text)]
    others: list[list[Tok]] = []
    if needs_second_reading(text):
        others += statements(text, "strict")
    if needs_dialect_readings(text):
        # each database's own reading (nested comments, E'' strings, `#` and `--` comments
        # ending at a newline only): quoted text is masked, positions are unchanged
        for reading in dict.fromkeys(dialect_readings(text)):  # often all alike
            others += statements(reading, "strict")
    extra = [_statement(text, toks) for toks in others]
    nul = text.find("\x00")
    if nul >= 0:
        # libpq (psycopg, psycopg2) sends the text as a C string: PostgreSQL runs only what
        # comes before a NUL, so `DELETE FROM t \x00 WHERE id = 1` deletes every row
        extra += classify(text[:nul])
    if extra:
        seen = {(s.statement_type, s.tables, s.findings) for s in found}
        for s in extra:
            if (s.statement_type, s.tables, s.findings) not in seen:
                seen.add((s.statement_type, s.tables, s.findings))
                found.append(s)
    return found


def _too_large(text: str) -> Statement:
    words = sorted(w.upper() for w in write_words(text))
    findings: tuple[Finding, ...] = ()
    if words:
        message = (
            f"statement of {len(text)} characters is too large to classify and contains "
            + ", ".join(words[:5])
        )
        findings = (Finding("statement.too-large", message),)
    return Statement(text, "UNKNOWN", (), findings)


def _statement(text: str, toks: list[Tok]) -> Statement:
    src = text[toks[0].start : toks[-1].end]
    return _Classifier(toks).run(src)


class _Classifier:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.findings: list[Finding] = []
        self.tables: dict[str, None] = {}  # ordered, O(1) membership
        self.type = "UNKNOWN"

    def add(self, rule: str, message: str, tables: tuple[str, ...] = ()) -> None:
        finding = Finding(rule, message, tables)
        if finding not in self.findings:
            self.findings.append(finding)
        self.tables.update(dict.fromkeys(tables))

    def run(self, src: str) -> Statement:
        toks = self.toks
        start = 0
        while start < len(toks) and toks[start].text == "(":
            start += 1
        verb = toks[start].up if start < len(toks) else ""
        self.type = verb or "UNKNOWN"
        if verb == "EXPLAIN":
            # EXPLAIN runs nothing; EXPLAIN ANALYZE runs the statement it explains
            j = start + 1
            analyze = False
            while j < len(toks) and (
                toks[j].depth > toks[start].depth
                or toks[j].text in ("(", ")")
                or toks[j].up in ("ANALYZE", "ANALYSE", "VERBOSE", "QUERY", "PLAN")
            ):
                analyze = analyze or toks[j].up in ("ANALYZE", "ANALYSE")
                j += 1
            if not analyze:
                return Statement(src, "EXPLAIN", (), ())
            start, verb = j, toks[j].up if j < len(toks) else ""
        if verb == "WITH":
            self.type = self._main_verb(start) or "WITH"
        understood = self._verb(start, verb)
        # the words after GRANT DELETE ON, PRAGMA x = DELETE or SET x = … are not statements
        in_grant = verb in ("GRANT", "REVOKE", "PRAGMA", "SET", "RESET")
        in_alter = verb == "ALTER"
        seen = 0
        for i, tok in enumerate(toks):
            if tok.kind != "word" or tok.up not in WRITE_UP or in_grant:
                continue
            seen += 1
            if seen > MAX_WRITE_WORDS:
                # each DELETE/UPDATE reads on to its end: this many would cost n² time
                self.add(
                    "statement.unparsed",
                    f"more than {MAX_WRITE_WORDS} write keywords in one statement",
                )
                break
            if self._anywhere(i, tok, in_alter):
                understood = True
        first = verb if start < len(toks) and toks[start].kind == "word" else "?"
        if tok_words := {t.up for t in toks if t.kind == "word"} & WRITE_UP:
            if not understood and not self.findings:
                self.add(
                    "statement.unparsed",
                    # a word, never a literal: reasons carry no values
                    f"cannot classify a statement starting with {first!r}"
                    f" that contains {', '.join(sorted(tok_words)[:3])}",
                )
        return Statement(src, self.type, tuple(self.tables), tuple(self.findings))

    # ------------------------------------------------------------------ helpers
    def _prev_word(self, i: int) -> str:
        return self.toks[i - 1].up if i > 0 else ""

    def _next(self, i: int) -> Tok | None:
        return self.toks[i + 1] if i + 1 < len(self.toks) else None

    def _name_at(self, j: int) -> tuple[str | None, int]:
        """A possibly qualified name starting at token j (modifiers skipped) and the index
        after it."""
        toks = self.toks
        while j < len(toks) and toks[j].kind == "word" and toks[j].up in _MODIFIERS:
            j += 1
        parts = []
        # identifiers only: a string literal is never named in a reason
        while j < len(toks) and toks[j].kind in ("word", "name"):
            parts.append(_unquote(toks[j].text))
            if j + 1 < len(toks) and toks[j + 1].text == ".":
                j += 2
                continue
            j += 1
            break
        return (".".join(parts) if parts else None), j

    def _names_at(self, j: int) -> tuple[str, ...]:
        names = []
        while True:
            name, j = self._name_at(j)
            if name is None:
                break
            names.append(name)
            if j < len(self.toks) and self.toks[j].text == ",":
                j += 1
                continue
            break
        return tuple(names)

    def _main_verb(self, start: int) -> str | None:
        base = self.toks[start].depth
        for tok in self.toks[start + 1 :]:
            if tok.depth == base and tok.up in (
                "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "FROM",
            ):  # fmt: skip
                return tok.up
        return None

    # ------------------------------------------------------------------ statement verbs
    def _verb(self, start: int, verb: str) -> bool:
        """Statement-level verbs (only meaningful first). True when understood."""
        toks = self.toks
        nxt = toks[start + 1] if start + 1 < len(toks) else None
        nup = nxt.up if nxt else ""
        if verb in READ_VERBS or verb in SESSION_VERBS:
            return True
        if verb == "FORCE" and nup in ("INSTALL", "CHECKPOINT"):
            return self._verb(start + 1, nup)
        if verb in ("GRANT", "REVOKE"):
            self.add(f"privilege.{verb.lower()}", f"{verb} changes privileges")
        elif verb == "REASSIGN":
            self.add("privilege.grant", "REASSIGN OWNED changes ownership")
        elif verb == "RENAME":
            names = self._names_at(start + 1)
            self.add("table.rename", f"RENAME {_names(names)}".rstrip(), names)
        elif verb == "COPY":
            self._copy(start)
        elif verb in ("EXPORT", "IMPORT"):
            self.add(f"file.{verb.lower()}", f"{verb} DATABASE writes or reads files")
        elif verb == "ATTACH":
            self.add("database.attach", "ATTACH opens another database")
        elif verb == "DETACH":
            self.add("database.detach", "DETACH closes a database")
        elif verb == "INSTALL":
            self.add("extension.install", "INSTALL adds an extension")
        elif verb == "LOAD":
            if nup == "DATA":
                self.add("file.copy", "LOAD DATA reads a file into a table")
            else:
                self.add("extension.load", "LOAD loads an extension")
        elif verb == "PRAGMA":
            self._pragma(start)
        elif verb == "VACUUM":
            if any(t.up == "INTO" for t in toks[start:]):
                self.add("file.copy", "VACUUM INTO writes the database to a file")
        elif verb in ("CALL", "EXEC", "EXECUTE", "DO"):
            name = (nup or "").lower()
            metadata = name.startswith("duckdb_") or (
                name.startswith("pragma_") and name[len("pragma_") :] in READ_PRAGMAS
            )
            if verb == "CALL" and metadata:
                return True  # DuckDB's metadata table functions (pragma_table_info, …)
            self.add("statement.procedural", f"{verb} runs code the policy cannot see into")
        elif verb in ("INSERT", "UPSERT", "REPLACE"):
            self.type = verb
            return True
        else:
            return False
        return True

    def _copy(self, start: int) -> None:
        toks = self.toks
        base = toks[start].depth
        nxt = self._next(start)
        names: tuple[str, ...] = () if nxt and nxt.text == "(" else self._names_at(start + 1)
        self.tables.update(dict.fromkeys(names))
        for j in range(start + 1, len(toks)):
            tok = toks[j]
            if tok.depth != base or tok.up not in ("FROM", "TO"):
                continue
            target = toks[j + 1] if j + 1 < len(toks) else None
            tup = target.up if target else ""
            if tup == "PROGRAM":
                self.add("file.program", f"COPY {tok.up} PROGRAM runs a program", names)
            elif tup in ("STDIN", "STDOUT"):
                pass
            else:
                self.add("file.copy", f"COPY {tok.up} a file", names)
            return
        self.add("file.copy", "COPY without a recognised source or target", names)

    def _pragma(self, start: int) -> None:
        toks = self.toks
        name, j = self._name_at(start + 1)
        bare = (name or "").rsplit(".", 1)[-1].lower()
        assigns = any(t.text in ("=", ":=") for t in toks[start:])
        # `PRAGMA journal_mode(WAL)` sets what `PRAGMA journal_mode` reads
        sets = j < len(toks) and bare in _SETTABLE_PRAGMAS
        if bare in READ_PRAGMAS and not assigns and not sets:
            return
        self.add("pragma.write", f"PRAGMA {bare or '?'} may change the database or settings")

    # ------------------------------------------------------------------ words anywhere
    def _anywhere(self, i: int, tok: Tok, in_alter: bool) -> bool:
        """Write words wherever they are (CTEs, subqueries, PREPARE … AS, rule bodies)."""
        up, prev = tok.up, self._prev_word(i)
        nxt = self._next(i)
        call = nxt is not None and nxt.text == "("
        if up in SIDE_EFFECT_FUNCTIONS and call:
            self.add("function.side-effect", f"{tok.text}() acts outside the query")
        elif up in ("OUTFILE", "DUMPFILE") and prev == "INTO":
            self.add("file.copy", f"INTO {up} writes a file")
        elif up in ("DELETE", "UPDATE"):
            if prev in ("ON", "FOR", "DO", "OF", "OR", "AFTER", "BEFORE", "KEY", "SHARE", "THEN"):
                # ON DELETE CASCADE, FOR UPDATE, ON CONFLICT DO UPDATE, triggers, MERGE arms
                return True
            if call:
                return False
            self._where_required(i, up)
        elif up == "INSERT":
            self.type = self.type if self.type != "WITH" else "INSERT"
            name, _ = self._name_at(i + 1)
            if name:
                self.tables[name] = None
            if nxt is not None and nxt.up == "OVERWRITE":
                self.add("table.overwrite", f"INSERT OVERWRITE {name or ''}".rstrip(), _t(name))
        elif up == "MERGE" and not call:
            name, _ = self._name_at(i + 1)
            self.add("statement.merge", f"MERGE into {name or '?'}", _t(name))
        elif up == "DROP" and not in_alter and prev not in ("COMMIT", "ON"):
            self._drop(i)
        elif up == "TRUNCATE" and not call:
            names = self._names_at(i + 1)
            self.add("table.truncate", f"TRUNCATE {_names(names)}".rstrip(), names)
        elif up == "ALTER":
            what = nxt.up if nxt else ""
            if what in ROLES:
                self.add("privilege.role", f"ALTER {what} changes an identity")
            else:
                names = self._names_at(i + 2) if what in ("TABLE", "VIEW", "INDEX") else ()
                self.add("schema.alter", f"ALTER {what} {_names(names)}".rstrip(), names)
        elif up == "CREATE":
            self._create(i)
        else:
            # statement verbs (COPY, PRAGMA, GRANT, …) mid-statement are names or handled
            # by _verb; REPLACE(…) is a function
            return up in ("REPLACE", "UPSERT") or i == 0 or call
        return True

    def _drop(self, i: int) -> None:
        toks = self.toks
        j = i + 1
        what = []
        while j < len(toks) and toks[j].kind == "word" and toks[j].up in (
            "TABLE", "VIEW", "MATERIALIZED", "FOREIGN", "SCHEMA", "DATABASE", "INDEX",
            "SEQUENCE", "TYPE", "FUNCTION", "PROCEDURE", "TRIGGER", "MACRO", "SECRET", "ROLE",
            "USER", "GROUP", "EXTENSION", "OWNED", "DOMAIN", "SERVER", "COLUMN", "CONSTRAINT",
        ):  # fmt: skip
            what.append(toks[j].up)
            j += 1
        kind = " ".join(what) or "?"
        names = self._names_at(j)
        if not what or what[-1] == "TABLE":
            rule = "table.drop"
        elif what[0] in ("SCHEMA", "DATABASE"):
            rule = "schema.drop"
        elif what[0] in ROLES or what[0] == "OWNED":
            rule = "privilege.role"
        else:
            rule = "object.drop"
        self.add(rule, f"DROP {kind} {_names(names)}".rstrip(), names)

    def _create(self, i: int) -> None:
        toks = self.toks
        j = i + 1
        replace = False
        while j < len(toks) and toks[j].up in (
            "OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "PERSISTENT",
            "UNIQUE", "MATERIALIZED", "CONSTRAINT", "RECURSIVE", "DEFINER", "SECURE",
        ):  # fmt: skip
            replace = replace or toks[j].up == "REPLACE"
            j += 1
        what = toks[j].up if j < len(toks) else ""
        if what in ROUTINES:
            self.add("routine.create", f"CREATE {what}: code that runs later, not classified")
        elif what in ROLES:
            self.add("privilege.role", f"CREATE {what} adds an identity")
        elif what == "EXTENSION":
            self.add("extension.install", "CREATE EXTENSION adds an extension")
        name = None
        if what in ("TABLE", "VIEW", "INDEX", "SCHEMA", "SEQUENCE", "TYPE"):
            name, _ = self._name_at(j + 1)
            if what == "INDEX":
                k = j + 1
                while k < len(toks) and toks[k].up != "ON":
                    k += 1
                name, _ = self._name_at(k + 1)
        if replace:
            self.add("object.replace", f"CREATE OR REPLACE {what} {name or ''}".rstrip(), _t(name))
        elif name:
            self.tables[name] = None

    def _where_required(self, i: int, verb: str) -> None:
        """DELETE/UPDATE at token i: a WHERE at its own depth, and not always true."""
        toks = self.toks
        base = toks[i].depth
        name, _ = self._name_at(i + 1)
        if verb == "DELETE" and name is None:
            # MySQL: DELETE t1 FROM t1 JOIN …
            name, _ = self._name_at(i + 1)
        if self.type in ("WITH", "UNKNOWN"):
            self.type = verb
        cond: list[Tok] | None = None
        j = i + 1
        while j < len(toks) and toks[j].depth >= base:
            tok = toks[j]
            if tok.depth == base and tok.kind == "word" and tok.up == "WHERE":
                cond = []
                k = j + 1
                while k < len(toks) and toks[k].depth >= base:
                    t = toks[k]
                    if t.depth == base and t.up in ("RETURNING", "ORDER", "LIMIT"):
                        break
                    cond.append(t)
                    k += 1
                break
            j += 1
        tables = _t(name)
        if cond is None:
            message = f"{verb} without WHERE {_on(tables)}".rstrip()
            self.add("statement.where-required", message, tables)
        elif _always_true(cond):
            self.add(
                "statement.where-required",
                f"{verb} with an always-true WHERE {_on(tables)}".rstrip(),
                tables,
            )
        else:
            self.tables.update(dict.fromkeys(tables))


def _t(name: str | None) -> tuple[str, ...]:
    return (name,) if name else ()


def _on(names: tuple[str, ...]) -> str:
    return ("on " + ", ".join(names)) if names else ""


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in '"`[' and text[-1] in '"`]':
        return text[1:-1]
    return text


# ---------------------------------------------------------------------- tautologies
def _split(toks: list[Tok], word: str) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "word" and t.up == word:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _strip_parens(toks: list[Tok]) -> list[Tok] | None:
    """`toks` without the parentheses around all of it; None when nested too deep to check."""
    for _ in range(MAX_NESTING):
        if len(toks) < 2 or toks[0].text != "(" or toks[-1].text != ")":
            return toks
        depth = 0
        for k, t in enumerate(toks):
            depth += (t.text == "(") - (t.text == ")")
            if depth == 0 and k < len(toks) - 1:
                return toks  # (a) OR (b): the first parenthesis closes early
        toks = toks[1:-1]
    return None


def _always_true(toks: list[Tok], level: int = 0) -> bool:
    """Whether a WHERE condition is (or may be) constant or always true: `1=1`, `TRUE`,
    `x = x`, `… OR 1=1`, `NOT FALSE`, `'a'='a'`, `1`. Constant false counts too (fail
    closed: it is as suspicious and rarer), and so does a condition nested too deep."""
    stripped = _strip_parens(toks)
    if stripped is None or level > MAX_NESTING:
        return True
    toks = stripped
    if not toks:
        return True
    ors = _split(toks, "OR")
    if len(ors) > 1:
        return any(_always_true(p, level + 1) for p in ors)
    ands = _split(toks, "AND")
    if len(ands) > 1:
        return all(_always_true(p, level + 1) for p in ands)
    if toks[0].up == "NOT":
        return _constant(toks[1:])
    return _constant(toks) or _self_compare(toks)


def _constant(toks: list[Tok]) -> bool:
    for k, t in enumerate(toks):
        if t.kind == "name":
            return False
        if t.kind == "word" and t.up not in _CONSTANT_WORDS:
            is_call = k + 1 < len(toks) and toks[k + 1].text == "("
            if not is_call:
                return False
    return True


def _self_compare(toks: list[Tok]) -> bool:
    depth = 0
    for k, t in enumerate(toks):
        depth += (t.text == "(") - (t.text == ")")
        if depth == 0 and (t.kind == "cmp" or t.up == "IS"):
            op = t.up if t.kind == "word" else t.text.upper()
            right = toks[k + 1 :]
            if op == "IS" and [x.up for x in right[:3]] == ["NOT", "DISTINCT", "FROM"]:
                right = right[3:]
            elif op == "IS":
                return False
            left = toks[:k]
            return bool(left) and op in _SELF_TRUE and _norm(left) == _norm(right)
    return False


def _norm(toks: list[Tok]) -> list[str]:
    return [_unquote(t.text).lower() if t.kind in ("word", "name") else t.text for t in toks]

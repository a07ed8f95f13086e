"""Connections to a PostgreSQL trail, and the one adapter that lets the read modules written
for DuckDB (`queries`, `listing`, `trail`, `chain`, `verify`'s portable parts) run on it.

`connect` opens a psycopg connection with a clear `TrailError` when the server cannot be
reached (never the DSN's password). `PortableCursor` wraps a connection so that callers
written against a DuckDB cursor work unchanged where their SQL is standard: `execute(sql,
params)` takes `?` placeholders (PostgreSQL's driver wants `%s`), `cursor()` hands out a
cursor on the same connection (and so the same snapshot), and `stream(sql, params, size)`
reads a big result in batches through a server-side cursor instead of loading it whole.

This is the only module of `store/` besides the other `pg` modules that imports psycopg.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.string import StrDumper

from ..errors import TrailError

CONNECT_TIMEOUT = 10  # seconds to wait for the server at open


# a URI's password runs to the last `@` before its path; a keyword's value may be quoted
_URI_PASSWORD = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://[^:/@\s]*):[^/\s]*@")
_KEY_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)")


def redacted(dsn: str) -> str:
    """`dsn` with any password left out, for messages."""
    return _KEY_PASSWORD.sub(r"\1***", _URI_PASSWORD.sub(r"\1:***@", dsn))


def connect(dsn: str, *, autocommit: bool = False, application: str = "jupyter-audit"):
    """A psycopg connection to `dsn` (TrailError if it cannot be made, naming neither the
    password nor, for a connection string libpq cannot read, the string itself: libpq's
    messages then quote pieces of it)."""
    uri = _URI_PASSWORD.match(dsn)
    if uri is not None and "@" in uri.group(0)[:-1]:
        # libpq ends the password at the first `@` and takes the rest for the host name,
        # which its messages then quote
        raise TrailError(
            "cannot connect to PostgreSQL: the connection string's password holds an `@`: "
            "write it as %40"
        )
    try:
        con = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=application,
        )
    except psycopg.ProgrammingError:
        raise TrailError(
            "cannot connect to PostgreSQL: the connection string is not valid (neither it "
            "nor libpq's message about it is repeated, either may quote a password)"
        ) from None
    except psycopg.Error as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrailError(
            f"cannot connect to PostgreSQL at {redacted(dsn)}: {_scrubbed(why, dsn)}"
        ) from None
    # strings as `text` (psycopg sends them untyped by default), so that a list is a
    # text[]: the read modules' `unnest(?)` then needs no cast
    con.adapters.register_dumper(str, StrDumper)
    return con


def _scrubbed(message: str, dsn: str) -> str:
    """`message` (about `dsn`) with the password, should it quote it, left out."""
    message = redacted(message)
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return message
    return message.replace(str(password), "***") if password else message


def qmark(sql: str) -> str:
    """`sql` with DuckDB's `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PortableCursor:
    """A psycopg connection as the read modules see a DuckDB cursor (module docstring)."""

    dialect = "postgresql"

    def __init__(self, con: psycopg.Connection, owned: bool = False):
        self.connection = con
        self.owned = owned  # close() closes the connection (a CLI's own)

    def execute(self, sql: str, params=None):
        cur = self.connection.cursor()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(qmark(sql), list(params))
        return cur

    def cursor(self) -> PortableCursor:
        return self

    def stream(self, sql: str, params=(), size: int = 10_000) -> Iterator[list]:
        """The rows of `sql`, `size` at a time, through a server-side cursor (inside the
        connection's transaction, or one of its own)."""
        with self.connection.transaction():
            with self.connection.cursor(name=f"ja_{uuid.uuid4().hex[:12]}") as cur:
                cur.itersize = size
                cur.execute(qmark(sql), list(params))
                while rows := cur.fetchmany(size):
                    yield rows

    def close(self) -> None:
        """Close the connection if this cursor owns it (else its owner does)."""
        if self.owned:
            self.connection.close()

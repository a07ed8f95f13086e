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
from psycopg.types.string import StrDumper

from ..errors import TrailError

CONNECT_TIMEOUT = 10  # seconds to wait for the server at open


def redacted(dsn: str) -> str:
    """`dsn` with any password left out, for messages."""
    dsn = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def connect(dsn: str, *, autocommit: bool = False, application: str = "jupyter-audit"):
    """A psycopg connection to `dsn` (TrailError if it cannot be made)."""
    try:
        con = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=application,
        )
    except psycopg.Error as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrailError(f"cannot connect to PostgreSQL at {redacted(dsn)}: {why}") from None
    # strings as `text` (psycopg sends them untyped by default), so that a list is a
    # text[]: the read modules' `unnest(?)` then needs no cast
    con.adapters.register_dumper(str, StrDumper)
    return con


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

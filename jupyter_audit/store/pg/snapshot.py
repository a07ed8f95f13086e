"""Read-only views of a PostgreSQL trail as of one moment: `open_readable` (the CLI's
`--pg`) and `snapshot` (a context). A REPEATABLE READ, read-only transaction: every read in
it sees the trail as it was at its first, whatever the writer commits meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from . import schema
from .connection import connect


@contextmanager
def snapshot(dsn: str) -> Iterator[psycopg.Connection]:
    """A read-only connection inside one REPEATABLE READ transaction: every read sees the
    trail as it was at the first."""
    con, _meta = open_readable(dsn, application="jupyter-audit snapshot")
    try:
        yield con
    finally:
        con.rollback()
        con.close()


def open_readable(dsn: str, application: str = "jupyter-audit cli") -> tuple:
    """(a read-only connection inside one REPEATABLE READ transaction, the trail's meta),
    checked to be a format this code reads; for the CLI's `--pg` (`snapshot` for a
    context). The caller closes it."""
    con = connect(dsn, application=application)
    con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    con.read_only = True
    try:
        meta = schema.read_meta(con)
        schema.check_version(meta)
    except BaseException:
        con.close()
        raise
    return con, meta

"""Statements that one database reads unlike both of the classifier's uniform readings
(review of issue 14): PostgreSQL/DuckDB nest block comments and escape backslashes only in
E'' strings; SQLite ends `--` comments at a newline only; MySQL ends `#` comments at a
newline only and needs no space after `#`. Each statement runs on a real database where one
is here (DuckDB, SQLite): whatever it destroys there, the policy must not allow and the
kernel's prefilter must send to the server."""

from __future__ import annotations

import os
import sqlite3

import duckdb
import pytest

from jupyter_audit.kernel.prefilter import might_write
from jupyter_audit.policy import Policy

POLICY = Policy(review_possible=True)

# (statement, rows of t left after the database runs it)
DUCKDB = [
    # nested comment: DuckDB sees no WHERE; a flat reading sees `WHERE a = 1`
    ("DELETE FROM t /* /* */ WHERE a = 1 */", 0),
    ("UPDATE t SET a = 2 /* /* */ WHERE a = 1 */", None),
    # nested comment hides a quote that the flat readings pair with a later one
    ("SELECT 1 /* /* */ ' */; DELETE FROM t; -- '", 0),
    # E'' string (backslash escapes) next to a standard one (none)
    ("SELECT E'\\'' , '\\' , 1; DELETE FROM t; -- '", 0),
    # dollar quote holding a quote
    ("SELECT $a$ ' $a$; DELETE FROM t; -- '", 0),
]
SQLITE = [
    # SQLite's `--` comment runs to a newline; a carriage return does not end it
    ("DELETE FROM t --x\r WHERE a = 1", 0),
    ("DELETE FROM t -- \r WHERE a = 1", 0),
]
# MySQL (no server here): `#` starts a comment to the end of the line, space or not
MYSQL = [
    "DELETE FROM t #WHERE a = 1",
    "DELETE FROM t #\tWHERE a = 1",
    "SELECT 1 #'\n; DELETE FROM t; -- '",
    "SELECT '\\'' , $$ ; DELETE FROM t; -- ' $$",
]


def _duck(statement: str):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 1 AS a")
    con.execute(statement)
    return con.execute("SELECT a FROM t").fetchall()


def _lite(statement: str):
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (a)")
    con.execute("INSERT INTO t VALUES (1)")
    con.executescript(statement)
    return con.execute("SELECT a FROM t").fetchall()


@pytest.mark.parametrize(("statement", "left"), DUCKDB)
def test_duckdb_reading_is_not_hidden(statement, left):
    after = _duck(statement)
    assert after != [(1,)]  # the database did change t: the statement is destructive
    assert POLICY.check_sql(statement).action == "review"
    assert might_write(statement)


@pytest.mark.parametrize(("statement", "left"), SQLITE)
def test_sqlite_reading_is_not_hidden(statement, left):
    assert len(_lite(statement)) == left
    assert POLICY.check_sql(statement).action == "review"
    assert might_write(statement)


@pytest.mark.parametrize("statement", MYSQL)
def test_mysql_reading_is_not_hidden(statement):
    assert POLICY.check_sql(statement).action == "review"
    assert might_write(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'it''s' /* a /* nested */ comment */ FROM t",
        "SELECT E'a\\\\b' FROM t -- DELETE\r\n",
        "SELECT a FROM t WHERE b = '#' -- delete\n",
        'SELECT $$x$$ AS "DROP" FROM t',
    ],
)
def test_benign_statements_stay_allowed(statement):
    assert POLICY.check_sql(statement).action == "allow"


def test_many_unterminated_openers_stay_linear():
    # each dialect reading stops at the first unterminated quote or comment
    text = "SELECT 1 " + "/* $a$ ' E'\\ # [" * 4000
    assert might_write(text) is False
    assert POLICY.check_sql(text).action == "allow"


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
def test_dblink_runs_the_sql_in_its_string_so_it_is_reviewed():
    """`SELECT * FROM dblink(conn, 'DELETE …')` deletes through a string literal."""
    psycopg = pytest.importorskip("psycopg")
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        except psycopg.Error:
            pytest.skip("no dblink extension in this PostgreSQL")
        c.execute("DROP TABLE IF EXISTS dblink_victims")
        c.execute("CREATE TABLE dblink_victims AS SELECT generate_series(1, 3) AS id")
        info = c.info
        conn = f"dbname={info.dbname} user={info.user} host={info.host} port={info.port}"
        statement = (
            f"SELECT * FROM dblink('{conn}', 'DELETE FROM dblink_victims RETURNING id') "
            "AS t(id int)"
        )
        c.execute(statement)
        assert c.execute("SELECT count(*) FROM dblink_victims").fetchone()[0] == 0
    for text in (statement, "SELECT dblink_send_query('c', 'DELETE FROM dblink_victims')"):
        assert POLICY.check_sql(text).action == "review"
        assert might_write(text)


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgresql_runs_only_what_comes_before_a_nul(driver):
    """libpq sends C strings: `DELETE FROM t \\x00 WHERE id = 1` reaches PostgreSQL as
    `DELETE FROM t`."""
    module = pytest.importorskip(driver)
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    statement = "DELETE FROM nul_victims \x00 WHERE id = 1"
    con = module.connect(dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("DROP TABLE IF EXISTS nul_victims")
    cur.execute("CREATE TABLE nul_victims AS SELECT generate_series(1, 3) AS id")
    cur.execute(statement)
    cur.execute("SELECT count(*) FROM nul_victims")
    assert cur.fetchone()[0] == 0
    con.close()
    assert POLICY.check_sql(statement).action == "review"
    assert might_write(statement)

"""SQL capture in a real kernel: sqlite3, duckdb, SQLAlchemy (+ pandas), PEP 249, and
PostgreSQL (psycopg, psycopg2) when a server is reachable."""

import os

import pytest


def sql_ops(kernel, code):
    msg_id = kernel.run(code)
    return [e for e in kernel.ingest.cell(msg_id) if e["kind"] == "op.sql"]


def test_sqlite3_statements(audited, tmp_path):
    db = tmp_path / "loans.db"
    ops = sql_ops(
        audited,
        f"""
import sqlite3
con = sqlite3.connect({str(db)!r})
con.execute("create table loans (id integer, amount real, who text)")
con.executemany("insert into loans values (?, ?, ?)", ((i, i * 1.5, f"p{{i}}") for i in range(3)))
cur = con.cursor()
cur.execute("select * from loans where id = :id", {{"id": 2}})
rows = cur.fetchall()
con.executescript("update loans set amount = 0; delete from loans where id = 0;")
try:
    con.execute("select * from no_such_table")
except sqlite3.OperationalError:
    pass
con.commit()
assert rows == [(2, 3.0, "p2")]
""",
    )
    statements = [o["payload"]["statement"] for o in ops]
    assert statements == [
        "create table loans (id integer, amount real, who text)",
        "insert into loans values (?, ?, ?)",
        "select * from loans where id = :id",
        "update loans set amount = 0; delete from loans where id = 0;",
        "select * from no_such_table",
    ]
    p = [o["payload"] for o in ops]
    assert all(x["driver"] == "sqlite3" and x["database"] == str(db) for x in p)
    assert p[1]["params"] == [[0, 0.0, "p0"], [1, 1.5, "p1"], [2, 3.0, "p2"]]
    assert p[1]["param_sets"] == 3 and p[1]["rowcount"] == 3
    assert p[2]["params"] == {"id": 2}
    assert p[3]["script"] is True
    assert p[4]["error"].startswith("OperationalError: no such table")
    assert all(isinstance(x["duration_us"], int) for x in p)


def test_sqlite3_custom_factories(audited):
    ops = sql_ops(
        audited,
        """
import sqlite3
class MyConn(sqlite3.Connection):
    pass
class MyCursor(sqlite3.Cursor):
    pass
con = sqlite3.connect(":memory:", factory=MyConn)
assert isinstance(con, MyConn)
cur = con.cursor(MyCursor)
assert isinstance(cur, MyCursor)
cur.execute("select 'custom'")
""",
    )
    assert [o["payload"]["statement"] for o in ops] == ["select 'custom'"]


def test_duckdb_imported_after_load(audited, tmp_path):
    pytest.importorskip("duckdb")
    db = tmp_path / "analytics.duckdb"
    ops = sql_ops(
        audited,
        f"""
import duckdb
con = duckdb.connect({str(db)!r})
con.execute("create table t as select range as i from range(5)")
con.execute("select count(*) from t where i > ?", [1]).fetchall()
con.sql("select sum(i) from t").fetchall()
con.executemany("insert into t values (?)", [[10], [11]])
cur = con.cursor()
cur.execute("select 1")
duckdb.sql("select 42").fetchall()
duckdb.execute("select ?", [7]).fetchall()
""",
    )
    p = [o["payload"] for o in ops]
    assert [x["statement"] for x in p] == [
        "create table t as select range as i from range(5)",
        "select count(*) from t where i > ?",
        "select sum(i) from t",
        "insert into t values (?)",
        "select 1",
        "select 42",
        "select ?",
    ]
    assert all(x["driver"] == "duckdb" for x in p)
    assert p[0]["database"] == str(db) and p[4]["database"] == str(db)
    assert p[1]["params"] == [1]
    assert p[3]["params"] == [[10], [11]] and p[3]["param_sets"] == 2
    assert p[5]["database"] == ":default:" and p[6]["params"] == [7]


def test_sqlalchemy_and_pandas_report_once(audited, tmp_path):
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("pandas")
    db = tmp_path / "sa.db"
    ops = sql_ops(
        audited,
        f"""
import sqlalchemy as sa, pandas as pd
engine = sa.create_engine("sqlite:///{db}")
with engine.begin() as conn:
    conn.execute(sa.text("create table people (id integer, email text)"))
    conn.execute(sa.text("insert into people values (:id, :email)"), [{{"id": 1, "email": "a@example.org"}}, {{"id": 2, "email": "b@example.org"}}])
df = pd.read_sql("select * from people where id = 1", engine)
assert len(df) == 1
try:
    with engine.connect() as conn:
        conn.execute(sa.text("select nope from people"))
except sa.exc.OperationalError:
    pass
""",
    )
    mine = [o["payload"] for o in ops if o["payload"]["driver"] == "sqlalchemy"]
    statements = [x["statement"] for x in mine]
    assert "create table people (id integer, email text)" in statements
    assert "insert into people values (?, ?)" in statements
    assert "select * from people where id = 1" in statements
    assert "select nope from people" in statements
    # no statement was reported twice (once by SQLAlchemy, once by sqlite3 underneath)
    user_statements = [o["payload"]["statement"] for o in ops]
    for s in ("select * from people where id = 1", "insert into people values (?, ?)"):
        assert user_statements.count(s) == 1
    insert = [x for x in mine if x["statement"].startswith("insert")][0]
    assert insert["params"] == [[1, "a@example.org"], [2, "b@example.org"]]
    assert insert["dialect"] == "sqlite+pysqlite"
    assert insert["database"] == f"sqlite:///{db}"
    failed = [x for x in mine if x["statement"] == "select nope from people"][0]
    assert "no such column" in failed["error"]


def test_wrap_connection_generic_pep249(audited):
    ops = sql_ops(
        audited,
        """
import sqlite3
from jupyter_audit.kernel.capture.sql import wrap_connection
raw = sqlite3.dbapi2.Connection(":memory:")  # made without the patched connect
con = wrap_connection(raw, driver="acme-db", database="acme://user:hunter2@db.internal/sales")
cur = con.cursor()
cur.execute("select ?", (5,))
assert cur.fetchone() == (5,)
con.execute("select 'shortcut'")
con.execute("create table t (x)")
con.executemany("insert into t values (?)", iter([(1,), (2,)]))
""",
    )
    p = [o["payload"] for o in ops]
    assert [x["statement"] for x in p] == [
        "select ?",
        "select 'shortcut'",
        "create table t (x)",
        "insert into t values (?)",
    ]
    assert p[3]["params"] == [[1], [2]] and p[3]["param_sets"] == 2 and p[3]["rowcount"] == 2
    assert all(x["driver"] == "acme-db" for x in p)
    assert p[0]["database"] == "acme://user@db.internal/sales"  # no password
    assert p[0]["params"] == [5]


def test_drivers_imported_before_load(kernel_factory, ingest_factory, make_env, tmp_path):
    """%load_ext in a kernel where the drivers are already imported patches them at load."""
    pytest.importorskip("duckdb")
    pytest.importorskip("sqlalchemy")
    ingest = ingest_factory()
    kernel = kernel_factory(make_env(ingest, tmp_path), ext=None)
    kernel.run("import duckdb, sqlalchemy, sqlite3")
    kernel.run("%load_ext jupyter_audit.kernel")
    msg_id = kernel.run(
        "duckdb.connect().execute('select 1')\n"
        "sqlite3.connect(':memory:').execute('select 2')\n"
        "with sqlalchemy.create_engine('sqlite://').connect() as c:\n"
        "    c.execute(sqlalchemy.text('select 3'))"
    )
    ops = [e for e in ingest.cell(msg_id) if e["kind"] == "op.sql"]
    got = {(o["payload"]["driver"], o["payload"]["statement"]) for o in ops}
    assert {("duckdb", "select 1"), ("sqlite3", "select 2"), ("sqlalchemy", "select 3")} <= got


PG_DSN = os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN")


def _pg_reachable() -> bool:
    if not PG_DSN:
        return False
    try:
        import psycopg

        psycopg.connect(PG_DSN, connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _pg_reachable(), reason="no PostgreSQL at JUPYTER_AUDIT_TEST_PG_DSN")
def test_postgresql_drivers(audited):
    code = f"""
import psycopg
dsn = {PG_DSN!r}
with psycopg.connect(dsn) as conn:
    conn.execute("create temporary table pg_t (id int, name text)")
    with conn.cursor() as cur:
        cur.executemany("insert into pg_t values (%s, %s)", [(1, "a"), (2, "b")])
        cur.execute("select name from pg_t where id = %(id)s", {{"id": 2}})
        assert cur.fetchall() == [("b",)]
        with cur.copy("copy pg_t (id, name) from stdin") as cp:
            cp.write_row((3, "c"))
"""
    try:
        import psycopg2  # noqa: F401

        code += """
import psycopg2, psycopg2.extras
c2 = psycopg2.connect(dsn)
cur2 = c2.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
cur2.execute("select %s as v", (3,))
assert cur2.fetchone()["v"] == 3
c2.close()
"""
    except ImportError:
        pass
    try:
        import sqlalchemy  # noqa: F401

        code += """
import sqlalchemy as sa
url = sa.engine.make_url(dsn.replace("postgresql://", "postgresql+psycopg://", 1)) if "://" in dsn else None
if url is not None:
    with sa.create_engine(url).connect() as c:
        c.execute(sa.text("select 4"))
"""
    except ImportError:
        pass
    ops = sql_ops(audited, code)
    p = [o["payload"] for o in ops]
    by = {(x["driver"], x["statement"]) for x in p}
    assert ("psycopg", "create temporary table pg_t (id int, name text)") in by
    assert ("psycopg", "insert into pg_t values (%s, %s)") in by
    copy = [x for x in p if x["statement"].startswith("copy pg_t")][0]
    assert copy["copy"] is True and copy["rowcount"] == 1 and copy["error"] is None
    sel = [x for x in p if x["statement"].startswith("select name")][0]
    assert sel["params"] == {"id": 2} and sel["rowcount"] == 1
    from urllib.parse import urlsplit

    password = urlsplit(PG_DSN).password if "://" in PG_DSN else None
    for x in p:
        assert "password" not in (x["database"] or "").lower()
        if password:
            assert password not in (x["database"] or "")
    if "psycopg2" in code:
        assert ("psycopg2", "select %s as v") in by
    if "sqlalchemy" in code and "://" in PG_DSN:
        # reported once, by SQLAlchemy, not again by psycopg underneath
        assert [x["driver"] for x in p if x["statement"] == "select 4"] == ["sqlalchemy"]


def test_ipython_history_database_is_not_reported(audited, tmp_path):
    hist = tmp_path / "history.sqlite"
    msg_id = audited.run(
        f"""
from IPython.core.history import HistoryAccessor
h = HistoryAccessor(hist_file={str(hist)!r})
list(h.get_tail(1))
"""
    )
    assert hist.exists()
    assert not [e for e in audited.ingest.cell(msg_id) if e["kind"] == "op.sql"]

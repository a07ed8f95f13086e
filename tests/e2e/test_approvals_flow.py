"""Risky operations wait for a human approver, end to end: a real OIDC issuer over HTTP, a
real server with its approval broker, the server's own kernels running cells over the
websocket, real sqlite3, duckdb and SQLAlchemy (and PostgreSQL when
JUPYTER_AUDIT_TEST_PG_DSN is set) files, and the trail.

alice (reviewer and admin) and bob (reviewer) sign in at the issuer. alice's cell waits
before the statement reaches the database; she cannot approve her own request; bob decides.
"""

import asyncio
import hashlib
import json
import os
import sqlite3

import pytest
from helpers.kernels import open_kernel
from helpers.oidc import CLIENT, oidc_config
from helpers.trail import trail_events, wait_for
from tornado.httpclient import HTTPClientError


@pytest.fixture
def audit_config():
    return {}


@pytest.fixture
def jp_server_config(trail_dir, issuer, audit_config):
    cfg = oidc_config(trail_dir, issuer.issuer)
    cfg["AuditApp"].update(audit_config)
    return cfg


def bearer(issuer, name: str, groups: list[str]) -> dict:
    token = issuer.mint(
        issuer.claims(
            f"{name}-sub", CLIENT, lifetime=3600, preferred_username=name,
            email=f"{name}@example.org", groups=groups,
        )
    )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people(issuer):
    return {
        "alice": bearer(issuer, "alice", ["audit-reviewers", "audit-admins", "data-science"]),
        "bob": bearer(issuer, "bob", ["audit-reviewers"]),
    }


async def rest(jp_fetch, headers, *parts, method="GET", body=None, params=None):
    r = await jp_fetch(
        "jupyter-audit", "api", *parts, method=method, headers=headers, params=params,
        body=None if body is None else json.dumps(body),
    )  # fmt: skip
    return json.loads(r.body)


async def pending(jp_fetch, headers, kernel_id: str, timeout: float = 60) -> dict:
    """The kernel's pending request, once it exists (its cell is then waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await rest(jp_fetch, headers, "approvals", params={"state": "pending"})
        mine = [a for a in found["approvals"] if a["kernel_id"] == kernel_id]
        if mine:
            return mine[-1]
        assert loop.time() < deadline, "no pending approval appeared"
        await asyncio.sleep(0.1)


async def decide(jp_fetch, headers, rid: int, decision: str, reason: str = "looked at it"):
    return await rest(
        jp_fetch, headers, "approvals", str(rid), method="POST",
        body={"decision": decision, "reason": reason},
    )  # fmt: skip


def rows(db, table: str = "customers") -> int:
    return sqlite3.connect(str(db)).execute(f"select count(*) from {table}").fetchone()[0]


def make_db(path) -> None:
    con = sqlite3.connect(str(path))
    con.execute("create table customers (id integer, name text)")
    con.execute("create table orders (id integer)")
    con.executemany("insert into customers values (?, ?)", [(i, f"c{i}") for i in range(3)])
    con.executemany("insert into orders values (?)", [(i,) for i in range(2)])
    con.commit()
    con.close()


async def test_alice_waits_bob_decides(jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path):
    alice, bob = people["alice"], people["bob"]
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    db = tmp_path / "shop.db"
    make_db(db)
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, out = await kc.run(
        f"import sqlite3\ncon = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "print(con.execute('select count(*) from customers').fetchone()[0])"
    )
    assert status == "ok" and out.strip() == "3"

    # alice's DELETE waits before it reaches sqlite
    cell = asyncio.create_task(kc.run_full("con.execute('DELETE FROM customers')"))
    request = await pending(jp_fetch, bob, kid)
    assert request["requester"] == "alice" and request["statement"] == "DELETE FROM customers"
    assert "statement.where-required" in request["rules"]
    assert rows(db) == 3
    # alice approving her own request: 403, admin or not; it still waits
    with pytest.raises(HTTPClientError) as e:
        await decide(jp_fetch, alice, request["id"], "approve")
    assert e.value.code == 403
    assert not cell.done()
    decided = await decide(jp_fetch, bob, request["id"], "approve", "quarter-end cleanup")
    assert decided["state"] == "approved"
    status, out, errors = await cell
    assert status == "ok", errors
    assert rows(db) == 0

    events = [e for e in trail_events(audit) if e["kind"].startswith("approval.")]
    mine = [e for e in events if e["payload"]["request_id"] in (request["id"], str(request["id"]))]
    assert [e["kind"] for e in mine] == [
        "approval.requested",
        "approval.decided",
        "approval.executed",
    ]
    assert mine[0]["identity"]["username"] == "alice"
    assert mine[1]["identity"]["username"] == "bob"
    assert mine[2]["payload"]["rowcount"] == 3

    # a denied DROP TABLE leaves the table intact
    cell = asyncio.create_task(kc.run_full("con.execute('DROP TABLE orders')"))
    request = await pending(jp_fetch, bob, kid)
    await decide(jp_fetch, bob, request["id"], "deny", "we need those")
    status, _out, errors = await cell
    assert status == "error" and errors[0]["ename"] == "ApprovalDenied"
    assert f"#{request['id']}" in errors[0]["evalue"] and "we need those" in errors[0]["evalue"]
    assert rows(db, "orders") == 2

    # an interrupted wait cancels the request and leaves the data
    cell = asyncio.create_task(kc.run_full("con.execute('DROP TABLE orders')"))
    request = await pending(jp_fetch, bob, kid)
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="", headers=alice)
    status, _out, errors = await cell
    assert status == "error" and errors[0]["ename"] == "KeyboardInterrupt"
    got = await rest(jp_fetch, bob, "approvals", str(request["id"]))
    assert got["state"] == "cancelled"
    assert rows(db, "orders") == 2

    # an approval is for that statement only: the edited one asks anew and does not run
    cell = asyncio.create_task(kc.run_full("con.execute('DROP TABLE orders')"))
    first = await pending(jp_fetch, bob, kid)
    await decide(jp_fetch, bob, first["id"], "approve")
    assert (await cell)[0] == "ok"
    con = sqlite3.connect(str(db))
    con.execute("create table orders (id integer)")
    con.execute("insert into orders values (1)")
    con.commit()
    cell = asyncio.create_task(kc.run_full("con.execute('DROP TABLE customers')"))
    second = await pending(jp_fetch, bob, kid)
    assert second["id"] != first["id"] and second["statement"] == "DROP TABLE customers"
    await decide(jp_fetch, bob, second["id"], "deny")
    status, _out, errors = await cell
    assert errors[0]["ename"] == "ApprovalDenied"
    assert rows(db, "orders") == 1  # and customers is still there
    assert rows(db) == 0


async def test_sqlalchemy_and_duckdb_wait_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    pytest.importorskip("sqlalchemy")
    duckdb = pytest.importorskip("duckdb")
    alice, bob = people["alice"], people["bob"]
    db = tmp_path / "shop.db"
    make_db(db)
    duck = tmp_path / "shop.duckdb"
    d = duckdb.connect(str(duck))
    d.execute("create table customers as select range as id from range(4)")
    d.close()
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    # SQLAlchemy's first connection reads settings with bare PRAGMAs (read_uncommitted):
    # reads, which run without asking anyone
    setup = await kc.run(
        f"import duckdb, sqlalchemy as sa\nd = duckdb.connect({str(duck)!r})\n"
        f"eng = sa.create_engine('sqlite:///{db}')\neng.connect().close()"
    )
    assert setup[0] == "ok"
    assert (await rest(jp_fetch, bob, "approvals", params={"state": "all"}))["approvals"] == []

    cell = asyncio.create_task(
        kc.run_full("with eng.begin() as conn:\n    conn.execute(sa.text('DELETE FROM customers'))")
    )
    request = await pending(jp_fetch, bob, kid)
    assert rows(db) == 3
    await decide(jp_fetch, bob, request["id"], "approve")
    assert (await cell)[0] == "ok"
    assert rows(db) == 0

    cell = asyncio.create_task(kc.run_full("d.execute('DROP TABLE customers')"))
    request = await pending(jp_fetch, bob, kid)
    await decide(jp_fetch, bob, request["id"], "deny")
    status, _out, errors = await cell
    assert errors[0]["ename"] == "ApprovalDenied"
    status, out = await kc.run("print(d.execute('select count(*) from customers').fetchone()[0])")
    assert status == "ok" and out.strip() == "4"


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
async def test_postgresql_waits(jp_serverapp, jp_fetch, jp_ws_fetch, people):
    psycopg = pytest.importorskip("psycopg")
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    alice, bob = people["alice"], people["bob"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("drop table if exists approval_customers")
        c.execute("create table approval_customers as select generate_series(1, 3) as id")
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(f"import psycopg\npg = psycopg.connect({dsn!r}, autocommit=True)")
    assert status == "ok"
    cell = asyncio.create_task(kc.run_full("pg.execute('DELETE FROM approval_customers')"))
    request = await pending(jp_fetch, bob, kid)
    await decide(jp_fetch, bob, request["id"], "deny")
    assert (await cell)[2][0]["ename"] == "ApprovalDenied"
    with psycopg.connect(dsn) as c:
        assert c.execute("select count(*) from approval_customers").fetchone()[0] == 3


@pytest.mark.parametrize("audit_config", [{"approval_expiry": 2.0}])
async def test_an_expired_request_leaves_the_data(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path, audit_config
):
    alice = people["alice"]
    db = tmp_path / "shop.db"
    make_db(db)
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _out, errors = await kc.run_full(
        f"import sqlite3\nsqlite3.connect({str(db)!r}).execute('DELETE FROM customers')"
    )
    assert status == "error" and errors[0]["ename"] == "ApprovalExpired", errors
    assert rows(db) == 3


# ---------------------------------------------------------------- review of issue 14
async def denied_or_ran(jp_fetch, bob, kid, cell) -> str:
    """Deny the kernel's request if one appears before the cell ends: "denied" when one
    did, "ran" when the cell ended without asking."""
    while not cell.done():
        waiting = await rest(jp_fetch, bob, "approvals", params={"state": "pending"})
        for a in waiting["approvals"]:
            if a["kernel_id"] == kid:
                await decide(jp_fetch, bob, a["id"], "deny")
                await cell
                return "denied"
        await asyncio.wait([cell], timeout=0.2)
    return "ran"


async def test_a_duckdb_statement_object_waits_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    """`con.execute(con.extract_statements(sql)[0])` runs a duckdb.Statement: the text it
    asks about is the statement's, not the object's repr."""
    duckdb = pytest.importorskip("duckdb")
    alice, bob = people["alice"], people["bob"]
    duck = tmp_path / "shop.duckdb"
    d = duckdb.connect(str(duck))
    d.execute("create table customers as select range as id from range(4)")
    d.close()
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(f"import duckdb\nd = duckdb.connect({str(duck)!r})")
    assert status == "ok"
    for code in (
        "d.execute(d.extract_statements('DELETE FROM customers')[0])",
        # a relation's `query` runs any SQL on its connection
        "d.table('customers').query('x', 'DELETE FROM customers')",
        # a str subclass that says it is a read, and compares equal to one already run
        "d.execute('SELECT 42')\n"
        "class S(str):\n"
        "    __str__ = lambda self: 'SELECT 42'\n"
        "    __hash__ = lambda self: hash('SELECT 42')\n"
        "    __eq__ = lambda self, other: True\n"
        "d.execute(S('DELETE FROM customers'))",
    ):
        cell = asyncio.create_task(kc.run_full(code))
        assert await denied_or_ran(jp_fetch, bob, kid, cell) == "denied", code
        assert (await cell)[2][0]["ename"] == "ApprovalDenied"
    status, out = await kc.run("print(d.execute('select count(*) from customers').fetchone()[0])")
    assert status == "ok" and out.strip() == "4"


async def test_reviewers_see_the_parameters_masked_as_the_trail_stores_them(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    """A request shows its parameters (REST `params`, `approval.requested`), masked exactly
    as the statement's op.sql stores them; the hash the approval binds is of the originals."""
    alice, bob = people["alice"], people["bob"]
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    db = tmp_path / "shop.db"
    make_db(db)
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(
        f"import sqlite3\ncon = sqlite3.connect({str(db)!r}, isolation_level=None)"
    )
    assert status == "ok"
    statement = "UPDATE customers SET name = ?"
    secret = "Jane Q. Doe <jane.doe@example.com>"
    cell = asyncio.create_task(kc.run_full(f"con.execute({statement!r}, ({secret!r},))"))
    request = await pending(jp_fetch, bob, kid)
    assert request["statement"] == statement
    shown = request["params"]
    assert isinstance(shown, list) and len(shown) == 1 and shown[0] != secret
    assert "jane" not in json.dumps(request).lower()
    await decide(jp_fetch, bob, request["id"], "approve")
    assert (await cell)[0] == "ok"
    events = await wait_for(
        audit,
        lambda evs: any(
            e["kind"] == "op.sql" and e["payload"]["statement"] == statement for e in evs
        ),
    )
    op = next(e for e in events if e["kind"] == "op.sql" and e["payload"]["statement"] == statement)
    asked = next(e for e in events if e["kind"] == "approval.requested")
    assert op["payload"]["params"] == shown == asked["payload"]["params"]
    original = json.dumps([secret], sort_keys=True, separators=(",", ":"))
    assert asked["payload"]["params_sha256"] == hashlib.sha256(original.encode()).hexdigest()


async def test_a_lying_str_subclass_on_sqlite3_waits_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    """sqlite3's fast path looks a statement up among those already found read-only: a str
    subclass whose __eq__/__hash__ match a read that already ran is not found there."""
    bob = people["bob"]
    db = tmp_path / "shop.db"
    make_db(db)
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=people["alice"])
    status, _ = await kc.run(
        f"import sqlite3\ncon = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "con.execute('SELECT 42')\ncon.cursor().execute('SELECT 42')\n"
        "class S(str):\n"
        "    __hash__ = lambda self: hash('SELECT 42')\n"
        "    __eq__ = lambda self, other: True"
    )
    assert status == "ok"
    for code in (
        "con.execute(S('DELETE FROM customers'))",
        "con.cursor().execute(S('DELETE FROM customers'))",
    ):
        cell = asyncio.create_task(kc.run_full(code))
        assert await denied_or_ran(jp_fetch, bob, kid, cell) == "denied", code
        assert (await cell)[2][0]["ename"] == "ApprovalDenied"
    assert rows(db) == 3


async def test_a_duckdb_relation_update_waits_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    """duckdb's relation API writes without passing a SQL string (update, insert, create,
    views, COPY to a file, extensions): each asks and is recorded as the statement it
    amounts to."""
    duckdb = pytest.importorskip("duckdb")
    alice, bob = people["alice"], people["bob"]
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    duck = tmp_path / "shop.duckdb"
    out_csv = tmp_path / "out.csv"
    d = duckdb.connect(str(duck))
    d.execute("create table customers as select range as id from range(4)")
    d.close()
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(f"import duckdb\nd = duckdb.connect({str(duck)!r})")
    assert status == "ok"
    held = {
        "d.table('customers').update({'id': duckdb.ConstantExpression(0)})": (
            'UPDATE "customers" SET "id" = 0'
        ),
        # an alias does not hide the table it writes to
        "d.table('customers').set_alias('harmless').update({'id': duckdb.ConstantExpression(0)})": (
            'UPDATE "customers" AS "harmless" SET "id" = 0'
        ),
        f"d.table('customers').write_csv({str(out_csv)!r})": (
            'COPY (SELECT * FROM "customers") TO ' + f"'{out_csv}' (FORMAT csv)"
        ),
        f"d.table('customers').to_parquet({str(out_csv)!r})": (
            'COPY (SELECT * FROM "customers") TO ' + f"'{out_csv}' (FORMAT parquet)"
        ),
        "d.table('customers').create_view('customers_v')": (
            'CREATE OR REPLACE TEMPORARY VIEW customers_v AS SELECT * FROM "customers"'
        ),
        "d.install_extension('httpfs')": "INSTALL 'httpfs'",
        "duckdb.load_extension('httpfs', connection=d)": "LOAD 'httpfs'",
    }
    for code, statement in held.items():
        cell = asyncio.create_task(kc.run_full(code))
        assert await denied_or_ran(jp_fetch, bob, kid, cell) == "denied", code
        assert (await cell)[2][0]["ename"] == "ApprovalDenied", code
        asked = await rest(jp_fetch, bob, "approvals", params={"state": "all"})
        assert asked["approvals"][0]["statement"] == statement
    assert not out_csv.exists()
    # writes the policy allows run, and are recorded as the statement they amount to (a
    # denied one is in the trail as its approval.requested/decided, as for every driver)
    for code in (
        "d.table('customers').insert_into('customers')",
        "d.table('customers').create('customers2')",
        "d.table('customers').insert([7])",
    ):
        status, _ = await kc.run(code)
        assert status == "ok", code
    status, out = await kc.run(
        "print(d.execute('select count(*), max(id) from customers').fetchone())"
    )
    assert status == "ok" and out.strip() == "(9, 7)"
    recorded = (
        'INSERT INTO customers SELECT * FROM "customers"',
        'CREATE TABLE customers2 AS SELECT * FROM "customers"',
        'INSERT INTO "customers" VALUES (?)',
    )

    def all_recorded(events):
        statements = {e["payload"]["statement"] for e in events if e["kind"] == "op.sql"}
        return statements >= set(recorded)

    events = await wait_for(audit, all_recorded)
    insert = [e for e in events if e["payload"].get("statement") == recorded[-1]]
    assert insert[0]["payload"]["params"] == [7]


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
async def test_psycopg2_composed_sql_and_callproc_wait_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people
):
    """psycopg2.sql.Composed statements are asked about as the SQL they render to (their
    repr hides the verbs in quotes), and callproc asks as CALL does."""
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("psycopg2")
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    alice, bob = people["alice"], people["bob"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("drop table if exists approval_composed")
        c.execute("create table approval_composed as select generate_series(1, 3) as id")
        c.execute(
            "create or replace function approval_wipe() returns void language sql "
            "as 'delete from approval_composed'"
        )
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(
        f"import psycopg2\nfrom psycopg2 import sql\npg = psycopg2.connect({dsn!r})\n"
        "pg.autocommit = True\ncur = pg.cursor()"
    )
    assert status == "ok"
    for code in (
        "cur.execute(sql.SQL('DELETE FROM {}').format(sql.Identifier('approval_composed')))",
        "cur.callproc('approval_wipe')",
    ):
        cell = asyncio.create_task(kc.run_full(code))
        assert await denied_or_ran(jp_fetch, bob, kid, cell) == "denied", code
        assert (await cell)[2][0]["ename"] == "ApprovalDenied"
        with psycopg.connect(dsn) as c:
            assert c.execute("select count(*) from approval_composed").fetchone()[0] == 3


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
async def test_psycopg_stream_and_async_copy_wait_too(
    jp_serverapp, jp_fetch, jp_ws_fetch, people, tmp_path
):
    """psycopg 3's `Cursor.stream` and `AsyncCursor.copy` do not go through `execute`: they
    ask too."""
    psycopg = pytest.importorskip("psycopg")
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    alice, bob = people["alice"], people["bob"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("drop table if exists approval_stream")
        c.execute("create table approval_stream as select generate_series(1, 3) as id")
    target = f"/tmp/approval-copy-{os.getpid()}.csv"
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _ = await kc.run(f"import psycopg\npg = psycopg.connect({dsn!r}, autocommit=True)")
    assert status == "ok"
    for code in (
        "rows = list(pg.cursor().stream('DELETE FROM approval_stream RETURNING id'))",
        f"ac = await psycopg.AsyncConnection.connect({dsn!r}, autocommit=True)\n"
        f"async with ac.cursor().copy(\"COPY approval_stream TO '{target}'\") as cp:\n"
        "    pass",
    ):
        cell = asyncio.create_task(kc.run_full(code))
        assert await denied_or_ran(jp_fetch, bob, kid, cell) == "denied", code
        assert (await cell)[2][0]["ename"] == "ApprovalDenied"
        with psycopg.connect(dsn) as c:
            assert c.execute("select count(*) from approval_stream").fetchone()[0] == 3
            assert not c.execute("select pg_stat_file(%s, true)", [target]).fetchone()[0]

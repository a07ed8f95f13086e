"""Risky operations held for approval, in a real kernel: sqlite3, duckdb, SQLAlchemy, shell and
HTTP ask the approval broker (the tests' stand-in speaking the kernel protocol; the real
server's broker is exercised end to end in tests/e2e/test_approvals.py) before they reach
the driver, and run, warn, wait or refuse as it says."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

DELETE = "DELETE FROM customers"


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A kernel whose server enforces approvals, with its ingest endpoint and broker."""
    from .conftest import IngestServer, Kernel, kernel_env

    ingest = IngestServer()
    spool = tmp_path_factory.mktemp("spool")
    kernel = Kernel(kernel_env(ingest, spool, JUPYTER_AUDIT_APPROVALS_URL=ingest.approvals_url))
    kernel.ingest = ingest
    kernel.broker = ingest.broker
    yield kernel
    kernel.shutdown()
    ingest.stop()


@pytest.fixture
def broker(held):
    b = held.broker
    b.rules.clear()
    b.default = "allow"
    b.status = 200
    b.refuse_executed = False
    return b


def start(kernel, code: str) -> str:
    return kernel.execute(code, wait=False)[0]


def collect(kernel, msg_id: str, timeout: float = 60) -> tuple[dict, list[dict]]:
    """The reply and the iopub messages of one execution."""
    reply = kernel.reply(msg_id, timeout)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply, out


def text_of(messages) -> str:
    parts = []
    for m in messages:
        c = m["content"]
        if m["msg_type"] == "stream":
            parts.append(c["text"])
        elif m["msg_type"] in ("display_data", "update_display_data"):
            parts.append(c["data"].get("text/plain", ""))
        elif m["msg_type"] == "error":
            parts.append(f"{c['ename']}: {c['evalue']}")
    return "\n".join(parts)


def setup_customers(kernel, db, n: int = 3) -> None:
    kernel.run(
        f"""
import sqlite3
con = sqlite3.connect({str(db)!r}, isolation_level=None)
con.execute("create table if not exists customers (id integer, name text)")
con.execute("delete from customers where id >= 0")
con.executemany("insert into customers values (?, ?)", [(i, f"c{{i}}") for i in range({n})])
"""
    )


def count(kernel, db) -> int:
    msg_id, _ = kernel.execute(
        f"import sqlite3; print(sqlite3.connect({str(db)!r}).execute("
        "'select count(*) from customers').fetchone()[0])",
        wait=False,
    )
    _, out = collect(kernel, msg_id)
    return int(text_of(out).strip())


def test_read_only_statements_never_ask(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    before = len(broker.asked)
    held.run(
        f"""
import sqlite3
con = sqlite3.connect({str(db)!r})
con.execute("select * from customers where name = 'DROP TABLE customers'").fetchall()
con.execute('select "delete" from (select 1 as "delete") -- drop table customers').fetchall()
con.cursor().execute("select count(*) from customers /* delete */").fetchall()
"""
    )
    assert len(broker.asked) == before


def test_allowed_writes_ask_once_per_text(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.asked.clear()
    msg_id = held.run(
        f"""
import sqlite3
con = sqlite3.connect({str(db)!r})
for i in range(3):
    con.execute("update customers set name = 'x' where id = ?", (i,))
con.commit()
"""
    )
    asked = [a for a in broker.asked if a["kind"] == "sql"]
    assert [a["statement"] for a in asked] == ["update customers set name = 'x' where id = ?"]
    a = asked[0]
    assert a["driver"] == "sqlite3" and a["database"] == str(db)
    assert a["msg_id"] == msg_id  # the server attributes it by the running cell
    headers = next(c[3] for c in broker.calls if c[2] is a)
    assert headers["Authorization"] == "JupyterAudit-Kernel kernel-secret-for-tests"
    assert headers["X-Jupyter-Audit-Kernel"] == "test-kernel"


def test_warn_runs_and_says_why_in_the_cell(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules["delete from customers where id = 1"] = "warn"
    msg_id = start(
        held,
        f"import sqlite3; c = sqlite3.connect({str(db)!r}); "
        "c.execute('delete from customers where id = 1'); c.commit()",
    )
    reply, out = collect(held, msg_id)
    assert reply["status"] == "ok"
    stderr = "".join(
        m["content"]["text"]
        for m in out
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert "jupyter-audit warning: warn by the stand-in (test.rule)" in stderr
    assert count(held, db) == 2


def test_deny_never_reaches_the_driver(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules["DROP TABLE"] = "deny"
    msg_id = start(
        held, f"import sqlite3; sqlite3.connect({str(db)!r}).execute('DROP TABLE customers')"
    )
    reply, out = collect(held, msg_id)
    assert reply["status"] == "error" and reply["ename"] == "ApprovalDenied"
    assert "deny by the stand-in (test.rule)" in reply["evalue"]
    assert count(held, db) == 3  # the table is still there


def _start_review(held, broker, code: str):
    n = len(broker.requests)
    msg_id = start(held, code)
    broker.wait_for(lambda b: len(b.requests) > n)
    return msg_id, max(broker.requests)


def test_review_waits_then_runs_once_when_approved(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules[DELETE] = "review"
    msg_id, rid = _start_review(
        held,
        broker,
        f"import sqlite3; c = sqlite3.connect({str(db)!r}, isolation_level=None); c.execute({DELETE!r})",
    )
    assert broker.requests[rid]["body"]["msg_id"] == msg_id
    assert broker.requests[rid]["body"]["params"] is None  # none given: none shown
    assert count_while_waiting(held, db) == 3  # nothing ran yet
    broker.decide(rid, "approved", "checked with the owner")
    reply, out = collect(held, msg_id)
    assert reply["status"] == "ok", reply
    assert count(held, db) == 0
    text = text_of(out)
    assert f"waiting for approval #{rid}: {DELETE}" in text
    updates = [m for m in out if m["msg_type"] == "update_display_data"]
    assert updates and "approved by bob: checked with the owner" in text_of(updates)
    executed = broker.requests[rid]["executed"]
    assert executed["statement_sha256"] == hashlib.sha256(DELETE.encode()).hexdigest()
    assert executed["rowcount"] == 3 and executed["error"] is None
    # an approval is never a cached permission: the same text asks again
    n = len(broker.requests)
    msg_id, rid2 = _start_review(
        held,
        broker,
        f"import sqlite3; sqlite3.connect({str(db)!r}, isolation_level=None).execute({DELETE!r})",
    )
    assert rid2 == n + 1
    broker.decide(rid2, "denied", "once is enough")
    reply, _ = collect(held, msg_id)
    assert reply["ename"] == "ApprovalDenied"
    assert f"approval #{rid2} was denied by bob: once is enough" in reply["evalue"]


def count_while_waiting(held, db) -> int:
    """The rows as another process sees them while the kernel waits."""
    import sqlite3

    return sqlite3.connect(str(db)).execute("select count(*) from customers").fetchone()[0]


@pytest.mark.parametrize(
    ("state", "ename"), [("denied", "ApprovalDenied"), ("expired", "ApprovalExpired")]
)
def test_denied_or_expired_leaves_the_data(held, broker, tmp_path, state, ename):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules[DELETE] = "review"
    msg_id, rid = _start_review(
        held,
        broker,
        f"import sqlite3; sqlite3.connect({str(db)!r}, isolation_level=None).execute({DELETE!r})",
    )
    broker.decide(rid, state)
    reply, _ = collect(held, msg_id)
    assert reply["ename"] == ename and f"#{rid}" in reply["evalue"]
    assert "ApprovalError" in held_mro(held, ename)
    assert count(held, db) == 3
    assert "executed" not in broker.requests[rid]


def held_mro(held, ename: str) -> list[str]:
    msg_id = start(
        held,
        f"import jupyter_audit.kernel as k; print([c.__name__ for c in k.{ename}.__mro__])",
    )
    _, out = collect(held, msg_id)
    return text_of(out)


def test_interrupt_cancels_the_request(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules[DELETE] = "review"
    msg_id, rid = _start_review(
        held,
        broker,
        f"import sqlite3; sqlite3.connect({str(db)!r}, isolation_level=None).execute({DELETE!r})",
    )
    broker.wait_for(lambda b: any(c[0] == "GET" and f"/{rid}?" in c[1] for c in b.calls))
    held.km.interrupt_kernel()
    reply, _ = collect(held, msg_id)
    assert reply["ename"] == "KeyboardInterrupt"
    assert broker.requests[rid]["state"] == "cancelled"
    assert any(c[2] == {"cancel": "interrupt"} for c in broker.calls)
    assert count(held, db) == 3


def test_edited_statement_does_not_run_on_an_old_approval(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules["DELETE FROM customers WHERE"] = "review"
    first = "DELETE FROM customers WHERE id = 0"
    msg_id, rid = _start_review(
        held,
        broker,
        f"import sqlite3; c = sqlite3.connect({str(db)!r}, isolation_level=None); "
        f"c.execute({first!r})",
    )
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    edited = "DELETE FROM customers WHERE id > 0"
    msg_id, rid2 = _start_review(held, broker, f"c.execute({edited!r})")
    assert rid2 != rid and broker.requests[rid2]["body"]["statement"] == edited
    assert count_while_waiting(held, db) == 2
    broker.decide(rid2, "denied")
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    assert count(held, db) == 2


def test_parameters_that_run_are_the_ones_asked_about(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules["delete from customers where id = ?"] = "review"
    url = held.ingest.approvals_url
    n = len(broker.asked) + 1
    # a thread of the cell changes the parameter list while the statement waits
    msg_id, rid = _start_review(
        held,
        broker,
        f"""
import sqlite3, threading, urllib.request
c = sqlite3.connect({str(db)!r}, isolation_level=None)
params = [0]
def change():
    urllib.request.urlopen({url!r} + "?asked={n}").read()
    params[0] = 2
    urllib.request.urlopen({url!r} + "/note-changed").read()
threading.Thread(target=change).start()
c.execute("delete from customers where id = ?", params)
""",
    )
    broker.wait_for(lambda b: b.notes)
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    import sqlite3

    left = sorted(r[0] for r in sqlite3.connect(str(db)).execute("select id from customers"))
    assert left == [1, 2]  # the row the request named, not the one the list names now
    asked = broker.requests[rid]["body"]["params_sha256"]
    assert broker.requests[rid]["executed"]["params_sha256"] == asked


def test_nested_parameters_that_run_are_the_ones_asked_about(held, broker, tmp_path):
    """The copy made before asking is deep: a thread changing a list inside the parameters
    while the statement waits changes neither what runs nor what reviewers were shown."""
    pytest.importorskip("duckdb")
    db = tmp_path / "c.duckdb"
    statement = "delete from customers where list_contains(?, id)"
    broker.rules[statement] = "review"
    url = held.ingest.approvals_url
    n = len(broker.asked) + 1
    msg_id, rid = _start_review(
        held,
        broker,
        f"""
import duckdb, threading, urllib.request
d = duckdb.connect({str(db)!r})
d.execute("create table customers as select range as id from range(3)")
params = [[0]]
def change():
    urllib.request.urlopen({url!r} + "?asked={n}").read()
    params[0][0] = 2
    urllib.request.urlopen({url!r} + "/note-changed").read()
threading.Thread(target=change).start()
d.execute({statement!r}, params)
d.close()
""",
    )
    assert broker.requests[rid]["body"]["params"] == [[0]]
    broker.wait_for(lambda b: b.notes)
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    import duckdb

    with duckdb.connect(str(db)) as d:
        left = sorted(r[0] for r in d.execute("select id from customers").fetchall())
    assert left == [1, 2]  # the row the request named, not the one the list names now
    asked = broker.requests[rid]["body"]["params_sha256"]
    assert broker.requests[rid]["executed"]["params_sha256"] == asked


def test_a_refused_outcome_report_is_said_in_the_cell(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.rules[DELETE] = "review"
    broker.refuse_executed = True
    msg_id, rid = _start_review(
        held,
        broker,
        f"import sqlite3; sqlite3.connect({str(db)!r}, isolation_level=None).execute({DELETE!r})",
    )
    broker.decide(rid, "approved")
    reply, out = collect(held, msg_id)
    assert reply["status"] == "ok"  # it ran: the report came after
    assert f"did not record the outcome of approval #{rid} (HTTP 409)" in text_of(out)


def test_unreachable_broker_fails_closed(held, broker, tmp_path):
    db = tmp_path / "c.db"
    setup_customers(held, db)
    broker.status = 503
    msg_id = start(
        held, f"import sqlite3; sqlite3.connect({str(db)!r}).execute('delete from customers')"
    )
    reply, _ = collect(held, msg_id)
    broker.status = 200
    assert reply["ename"] == "ApprovalUnavailable"
    assert "HTTP 503" in reply["evalue"] and "did not run" in reply["evalue"]
    assert count(held, db) == 3
    # reads still run while the broker is away
    broker.status = 503
    try:
        assert count(held, db) == 3
    finally:
        broker.status = 200


def test_duckdb_and_sqlalchemy_are_held(held, broker, tmp_path):
    pytest.importorskip("duckdb")
    pytest.importorskip("sqlalchemy")
    duck = tmp_path / "d.duckdb"
    lite = tmp_path / "s.db"
    broker.rules["DROP TABLE"] = "review"
    held.run(
        f"""
import duckdb, sqlalchemy as sa
d = duckdb.connect({str(duck)!r})
d.execute("create table t as select 1 as x")
eng = sa.create_engine("sqlite:///{lite}")
with eng.begin() as conn:
    conn.execute(sa.text("create table t (x integer)"))
"""
    )
    msg_id, rid = _start_review(held, broker, "d.execute('DROP TABLE t')")
    assert broker.requests[rid]["body"]["driver"] == "duckdb"
    broker.decide(rid, "denied")
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    msg_id, rid = _start_review(
        held, broker, "with eng.begin() as conn:\n    conn.execute(sa.text('DROP TABLE t'))"
    )
    assert broker.requests[rid]["body"]["driver"] == "sqlalchemy"
    broker.decide(rid, "denied")
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    held.run(
        "assert d.execute('select count(*) from t').fetchone() == (1,)\n"
        "with eng.connect() as conn:\n"
        "    assert conn.execute(sa.text('select count(*) from t')).scalar() == 0"
    )
    # approved: the duckdb table goes, and the outcome is reported
    msg_id, rid = _start_review(held, broker, "d.execute('DROP TABLE t')")
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    assert broker.requests[rid]["state"] == "executed"
    msg_id, rid = _start_review(
        held, broker, "with eng.begin() as conn:\n    conn.execute(sa.text('DROP TABLE t'))"
    )
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    assert broker.requests[rid]["executed"]["error"] is None


def test_duckdb_appenders_ask_when_made(held, broker, tmp_path):
    """duckdb's append, appender (insert/upsert/update/delete) and query_appender write
    without a SQL string of the caller's: each asks, when made, as the statement it amounts
    to; denied, no row changes."""
    pytest.importorskip("duckdb")
    duck = tmp_path / "d.duckdb"
    broker.rules["DELETE FROM customers"] = "deny"
    broker.rules["delete from customers"] = "deny"
    broker.rules["INSERT INTO customers"] = "deny"
    held.run(
        f"""
import duckdb
d = duckdb.connect({str(duck)!r})
d.execute("create table customers (id integer primary key)")
d.execute("insert into customers select range from range(3)")
"""
    )
    for code in (
        "a = d.appender('customers', action='delete', key=['id'])\na.append_row(1)\na.close()",
        "d.query_appender('delete from customers where id in (select id from appended_data)', "
        "{'id': 'INTEGER'})",
        "duckdb.appender('customers', connection=d)",
        "import pandas\nd.append('customers', pandas.DataFrame({'id': [7]}))",
    ):
        if "pandas" in code:
            pytest.importorskip("pandas")
        reply, _ = collect(held, start(held, code))
        assert reply["status"] == "error" and reply["ename"] == "ApprovalDenied", code
    asked = [a["statement"] for a in broker.asked if a["kind"] == "sql"]
    assert "DELETE FROM customers WHERE (id) IN (" in asked[-4]
    assert asked[-3] == "delete from customers where id in (select id from appended_data)"
    assert asked[-2].startswith("INSERT INTO customers SELECT * FROM (")
    assert asked[-1].startswith("INSERT INTO customers SELECT * FROM (/* a data frame */")
    held.run("assert d.execute('select count(*) from customers').fetchone() == (3,)")


def test_shell_and_http_are_held(held, broker, tmp_path, http_target):
    victim = tmp_path / "keep.txt"
    victim.write_text("x")
    broker.rules["rm -rf"] = "deny"
    broker.rules["/items/1"] = "deny"
    msg_id = start(held, f"!rm -rf {victim}")
    reply, _ = collect(held, msg_id)
    assert reply["ename"] == "ApprovalDenied"
    msg_id = start(held, f"import subprocess; subprocess.run(['rm', '-rf', {str(victim)!r}])")
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    assert victim.exists()
    before = len(broker.asked)
    msg_id = start(
        held,
        "import urllib.request\n"
        f"urllib.request.urlopen('{http_target.base}/ok').read()\n"
        f"urllib.request.urlopen(urllib.request.Request('{http_target.base}/items/1', "
        "method='DELETE'))",
    )
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    asked = broker.asked[before:]
    assert [(a["kind"], a["method"]) for a in asked] == [("http", "DELETE")]


@pytest.mark.skipif(
    not os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN"), reason="no PostgreSQL at the DSN"
)
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgresql_drivers_are_held(held, broker, driver):
    pytest.importorskip(driver)
    dsn = os.environ["JUPYTER_AUDIT_TEST_PG_DSN"]
    table = f"held_{driver}"
    broker.rules[f"DELETE FROM {table}"] = "review"
    held.run(
        f"import {driver}\npg = {driver}.connect({dsn!r})\npg.autocommit = True\n"
        f"cur = pg.cursor()\ncur.execute('drop table if exists {table}')\n"
        f"cur.execute('create table {table} as select generate_series(1, 3) as id')"
    )
    msg_id, rid = _start_review(held, broker, f"cur.execute('DELETE FROM {table}')")
    assert broker.requests[rid]["body"]["driver"] == driver
    broker.decide(rid, "denied")
    assert collect(held, msg_id)[0]["ename"] == "ApprovalDenied"
    msg_id, rid = _start_review(
        held, broker, f"cur.execute('DELETE FROM {table} WHERE id > %s', [1])"
    )
    broker.decide(rid, "approved")
    assert collect(held, msg_id)[0]["status"] == "ok"
    assert broker.requests[rid]["executed"]["rowcount"] == 2
    held.run(
        f"cur.execute('select count(*) from {table}')\nassert cur.fetchone()[0] == 1\n"
        f"cur.execute('drop table {table}')"
    )


def test_parameters_too_large_to_show_are_sent_as_their_size_and_hash():
    """An executemany of megabytes of parameters still asks (the ask would be refused as too
    large): reviewers see the parameters' size and sha256 instead of them."""
    from jupyter_audit.kernel.approvals import PARAMS_SHOWN_MAX, params_shown

    rows = [tuple("x" * 1000 for _ in range(100))] * 100
    [note] = params_shown(rows, many=True)
    assert note.startswith("[not sent by the kernel: ") and "sha256" in note
    assert params_shown([("a", 1)], many=True) == [["a", 1]]
    assert len(str(params_shown(["y" * (PARAMS_SHOWN_MAX // 2)]))) < PARAMS_SHOWN_MAX

"""The sqlite3 fast path in-process: a statement only writes a raw record to the transport's
queue and the sender renders it; what reaches the endpoint must be what the general path
(``params_json``, ``statement_text``, ``strip_password``) makes of the call as it was made."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import pytest

from jupyter_audit.kernel import context
from jupyter_audit.kernel.capture import Patcher
from jupyter_audit.kernel.capture import sql as sql_capture
from jupyter_audit.kernel.capture.sql import sqlite as sqlite_capture
from jupyter_audit.kernel.client import AuditClient, KernelConfig

KERNEL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def sender(ingest, tmp_path, kernel_id: str, **kwargs) -> AuditClient:
    """A kernel side's transport to the real ingest endpoint `ingest` (not started)."""
    config = KernelConfig(
        ingest_url=ingest.url, kernel_id=kernel_id, secret="s", spool_dir=tmp_path
    )
    return AuditClient(config, **kwargs)


@pytest.fixture
def capture(ingest_factory, tmp_path):
    """sqlite3 patched in this process, events going to a real ingest endpoint."""
    ingest = ingest_factory()
    client = sender(ingest, tmp_path, "fast").start()
    patcher = Patcher()
    context.set_sink(client.emit, client)
    sqlite_capture.patch_sqlite3(sqlite3, patcher)
    token = context.enter_cell("cell-1")
    try:
        yield client, ingest
    finally:
        context.exit_cell(token)
        context.set_cell_running(False)
        context.set_sink(None)
        patcher.restore()
        client.close()


def sql_events(client, ingest) -> list[dict]:
    assert client.flush(10)
    return [e for e in ingest.events() if e["kind"] == "op.sql"]


def test_params_as_they_were_at_call_time(capture):
    client, ingest = capture
    con = sqlite3.connect(":memory:")
    assert type(con) is not sqlite3.Connection
    calls = [
        ((),),
        ((7,),),
        (("x",),),
        ((1, "two", 2.5, None, True, b"\x00b"),),
        ((2**60,),),
        (("é" * 1500,),),
        ((float("nan"),),),
        ((False,),),
    ]
    for (params,) in calls:
        con.execute("select " + ", ".join("?" * len(params)) if params else "select 1", params)
    listed = [1, "a"]
    con.execute("select ?, ?", listed)
    listed[0] = 999  # changed after the call: the event keeps the call's values
    named = {"id": 3, "who": "p"}
    con.execute("select :id, :who", named)
    named["id"] = 999
    cur = con.cursor()
    cur.execute("select ?", (5,))
    events = sql_events(client, ingest)
    got = [e["payload"]["params"] for e in events]
    want = [sql_capture.params_json(p) for (p,) in calls]
    want += [[1, "a"], {"id": 3, "who": "p"}, [5]]
    assert got == want
    for e in events:
        p = e["payload"]
        assert p["driver"] == "sqlite3" and p["database"] == ":memory:"
        assert p["error"] is None and isinstance(p["duration_us"], int) and p["duration_us"] >= 0
        assert e["msg_id"] == "cell-1"
        assert KERNEL_TIME.match(e["kernel_time"])
        assert re.fullmatch(r"[0-9a-f]{32}", e["event_id"])
    indexes = [e["op_index"] for e in events]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)


def test_statements_rowcount_errors_and_database(capture, tmp_path):
    client, ingest = capture
    db = tmp_path / "x.db"
    con = sqlite3.connect(db)
    con.execute("create table t (id integer, name text)")
    con.execute("insert into t values (?, ?)", (1, "a"))
    con.cursor().execute("update t set name = 'b' where id = ?", (1,))
    long = "select 1 -- " + "x" * sql_capture.STATEMENT_CAP
    con.execute(long)
    con.execute("select 'ünïcödé ☃', ?", ("%s %d {}",))
    with pytest.raises(sqlite3.OperationalError):
        con.execute("select * from missing where id = ?", [4])
    with pytest.raises(sqlite3.OperationalError):
        con.cursor().execute("select nope")
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: the event stays valid JSON
        con.execute("select ?", ("\ud800",))
    events = sql_events(client, ingest)
    p = [e["payload"] for e in events]
    assert all(x["database"] == str(db) for x in p)
    assert [x["rowcount"] for x in p[:3]] == [None, 1, 1]
    assert p[3]["statement"] == long[: sql_capture.STATEMENT_CAP]
    assert p[3]["statement_truncated"] is True and p[3]["statement_chars"] == len(long)
    assert p[4]["statement"] == "select 'ünïcödé ☃', ?" and p[4]["params"] == ["%s %d {}"]
    assert p[5]["error"].startswith("OperationalError: no such table")
    assert p[5]["params"] == [4] and p[5]["rowcount"] is None
    assert p[6]["error"].startswith("OperationalError: no such column")
    assert p[7]["params"] == ["\ud800"] and p[7]["error"].startswith("UnicodeEncodeError")


def test_msg_id_of_threads_and_outside_cells(capture):
    client, ingest = capture
    con = sqlite3.connect(":memory:", check_same_thread=False)

    def work():
        con.execute("select 'thread'")

    patcher = Patcher()
    context.install_thread_propagation(patcher)
    try:
        token = context.enter_cell("cell-0")
        try:  # started by cell-0: its statements are cell-0's, whenever they run
            t = threading.Thread(target=work)
            t.start()
        finally:
            context.exit_cell(token)
        t.join()
    finally:
        patcher.restore()
    token = context.enter_cell(None)
    try:
        con.execute("select 'outside'")
    finally:
        context.exit_cell(token)
    by = {e["payload"]["statement"]: e["msg_id"] for e in sql_events(client, ingest)}
    assert by == {"select 'thread'": "cell-0", "select 'outside'": None}


def test_our_cursor_on_a_connection_made_before_load(capture):
    client, ingest = capture
    plain = sqlite3.Connection(":memory:")  # not through the patched connect
    cur = plain.cursor(sqlite_capture._sqlite_cursor)
    assert cur.execute("select ?", ("still reported",)).fetchall() == [("still reported",)]
    events = sql_events(client, ingest)
    assert [e["payload"]["params"] for e in events] == [["still reported"]]
    assert events[0]["payload"]["database"] is None


def test_records_stay_whole_and_ordered_with_other_events(capture):
    client, ingest = capture
    con = sqlite3.connect(":memory:")
    for i in range(300):
        con.execute("select ?", (i,))
        if i % 7 == 0:
            context.record("op.shell", {"command": f"echo {i}"})
    assert len(client.queue) % context.RECORD == 0
    events = sql_events(client, ingest) + [e for e in ingest.events() if e["kind"] == "op.shell"]
    events.sort(key=lambda e: e["op_index"])
    assert [e["payload"]["params"] for e in events if e["kind"] == "op.sql"] == [
        [i] for i in range(300)
    ]
    assert len([e for e in events if e["kind"] == "op.shell"]) == 43


def test_sender_holds_back_while_a_cell_runs(ingest_factory, tmp_path):
    """While a cell executes, events wait (up to bounds) and go out after it."""
    ingest = ingest_factory()
    client = sender(
        ingest, tmp_path, "busy", flush_interval=0.02, busy_interval=60, busy_max=50
    ).start()
    context.set_sink(client.emit, client)
    try:
        context.set_cell_running(True)
        for i in range(10):
            context.record("op.shell", {"command": str(i)})
        time.sleep(0.3)
        assert ingest.events() == []  # held back: no bound reached
        for i in range(10, 60):  # past busy_max: the sender goes, cell or not
            context.record("op.shell", {"command": str(i)})
        ingest.wait_for(lambda evs: len(evs) >= 50)
        context.record("op.shell", {"command": "last"})
        assert client.flush(10)  # a flush does not wait for the cell
        assert len(ingest.events()) == 61
        context.set_cell_running(False)
    finally:
        context.set_cell_running(False)
        context.set_sink(None)
        client.close()
    commands = [e["payload"]["command"] for e in ingest.events()]
    assert commands == [str(i) for i in range(60)] + ["last"]


def test_a_holding_sender_sleeps_instead_of_polling(ingest_factory, tmp_path):
    """While it holds events back for a running cell, the sender looks again every `quiet`
    seconds, not every flush_interval: each look takes the GIL from the cell. Once the
    cell ends, the backlog still goes out after `quiet`."""
    ingest = ingest_factory()
    client = sender(ingest, tmp_path, "sleepy", flush_interval=0.01, busy_interval=60, quiet=0.2)
    looks = []
    hold_back = client._hold_back

    def counted():
        looks.append(time.monotonic())
        return hold_back()

    client._hold_back = counted
    context.set_sink(client.emit, client)
    try:
        client.start()
        context.set_cell_running(True)
        context.record("op.shell", {"command": "held"})
        time.sleep(1.0)
        assert ingest.events() == []
        assert 3 <= len(looks) <= 8, len(looks)  # ~5 looks a second, not ~100
        context.set_cell_running(False)
        ended = time.monotonic()
        ingest.wait_for(lambda evs: len(evs) == 1)
        assert time.monotonic() - ended < 2
    finally:
        context.set_cell_running(False)
        context.set_sink(None)
        client.close()


def test_cells_in_quick_succession_share_a_post(ingest_factory, tmp_path):
    """Each post costs the server a commit: cells that follow each other closely are sent
    together once the kernel is quiet, not one post per cell."""
    ingest = ingest_factory()
    client = sender(ingest, tmp_path, "burst", flush_interval=0.02, busy_interval=60).start()
    context.set_sink(client.emit, client)
    try:
        for i in range(20):
            context.set_cell_running(True)
            context.record("cell.started", {"n": i})
            time.sleep(0.005)
            context.record("cell.finished", {"n": i})
            context.set_cell_running(False)
            time.sleep(0.005)
        ingest.wait_for(lambda evs: len(evs) == 40)
    finally:
        context.set_cell_running(False)
        context.set_sink(None)
        client.close()
    assert len(ingest.batches) <= 2  # not one (or two) per cell


def test_a_cycle_sends_what_was_queued_when_it_began(ingest_factory, tmp_path):
    """Events queued while a cycle posts wait for the next cycle: a steady stream of cells
    does not become back-to-back posts."""
    ingest = ingest_factory()
    client = sender(ingest, tmp_path, "snap", batch_max=5)  # not started: cycles are run here
    post = client._post

    def post_and_emit(lines):
        client.emit("op.shell", None, 100 + len(ingest.batches), time.time_ns(), {})
        return post(lines)

    client._post = post_and_emit
    for i in range(10):
        client.emit("op.shell", None, i, time.time_ns(), {})
    client._cycle(False)
    assert [len(b["events"]) for b in ingest.batches] == [5, 5]
    assert len(client.queue) == 2 * context.RECORD  # the two emitted meanwhile
    client.close()

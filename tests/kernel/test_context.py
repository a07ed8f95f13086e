"""Operations carry the msg_id of the cell that caused them, whichever thread or asyncio
task runs them."""

import time


def ops_of(kernel, msg_id):
    return [e for e in kernel.ingest.cell(msg_id) if e["kind"].startswith("op.")]


def test_thread_started_by_a_cell(audited):
    msg_id = audited.run(
        """
import sqlite3, threading
def work():
    sqlite3.connect(":memory:").execute("select 'from a thread'")
t = threading.Thread(target=work)
t.start(); t.join()
"""
    )
    ops = ops_of(audited, msg_id)
    assert [o["payload"]["statement"] for o in ops] == ["select 'from a thread'"]


def test_asyncio_task_started_by_a_cell(audited):
    msg_id = audited.run(
        """
import asyncio, sqlite3
async def work():
    await asyncio.sleep(0)
    sqlite3.connect(":memory:").execute("select 'from a task'")
await asyncio.gather(asyncio.create_task(work()), asyncio.to_thread(lambda: sqlite3.connect(":memory:").execute("select 'to_thread'")))
"""
    )
    statements = sorted(o["payload"]["statement"] for o in ops_of(audited, msg_id))
    assert statements == ["select 'from a task'", "select 'to_thread'"]


def test_thread_pool_created_earlier_reports_under_the_submitting_cell(audited):
    first = audited.run(
        """
import sqlite3
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(max_workers=1)
pool.submit(lambda: sqlite3.connect(":memory:").execute("select 'first'")).result()
"""
    )
    second = audited.run(
        """pool.submit(lambda: sqlite3.connect(":memory:").execute("select 'second'")).result()"""
    )
    assert [o["payload"]["statement"] for o in ops_of(audited, first)] == ["select 'first'"]
    assert [o["payload"]["statement"] for o in ops_of(audited, second)] == ["select 'second'"]


def test_background_thread_keeps_its_cell_after_the_cell_ends(audited):
    first = audited.run(
        """
import sqlite3, threading
go = threading.Event()
def later():
    go.wait(10)
    sqlite3.connect(":memory:").execute("select 'late'")
bg = threading.Thread(target=later, daemon=True)
bg.start()
"""
    )
    second = audited.run("go.set(); bg.join()")
    audited.ingest.wait_for(
        lambda evs: [e for e in evs if e["payload"].get("statement") == "select 'late'"]
    )
    late = [e for e in audited.ingest.events() if e["payload"].get("statement") == "select 'late'"]
    assert late[0]["msg_id"] == first != second
    second_events = audited.ingest.cell(second)
    # it happened during the second cell: op_index places it between that cell's events
    idx = {e["kind"]: e["op_index"] for e in second_events}
    assert idx["cell.started"] < late[0]["op_index"] < idx["cell.finished"]


def test_ops_outside_any_cell_have_no_msg_id(audited):
    audited.run(
        """
import threading, sqlite3
_outside = threading.Timer(0.2, lambda: sqlite3.connect(":memory:").execute("select 'timer'"))
"""
    )
    # a thread whose start we make look unrelated to any cell: cleared explicitly
    audited.run(
        "_outside._jupyter_audit_msg_id = None\nimport contextvars\ncontextvars.Context().run(_outside.start)"
    )
    time.sleep(0.3)
    found = audited.ingest.wait_for(
        lambda evs: [e for e in evs if e["payload"].get("statement") == "select 'timer'"]
    )
    assert found[0]["msg_id"] is None

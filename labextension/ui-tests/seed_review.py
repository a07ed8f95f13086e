"""Traces the reviewer UI tests need beyond the demo trail (test use only).

- `long-run.ipynb`: one trace of 20,004 events (3,334 cells, each with three distinct
  queries), to page through to its end;
- `customers-cleanup.ipynb`: a failed cell, a `DELETE FROM customers` that removed 50 rows
  (no WHERE), one cell that ran `SELECT ? + 1` 2,000 times (folded into one row), the
  session's environment and a saved notebook version.

`tamper()` edits one stored record in place with DuckDB, the way tests/test_tamper.py
does, for the server that shows a tampered copy (jupyter_server_tampered_config.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from jupyter_audit.masking import MaskingEngine, load_or_create_key
from jupyter_audit.store.signing import SigningKey
from jupyter_audit.store.writer import Writer

LONG_NOTEBOOK = "long-run.ipynb"
LONG_CELLS = 3334  # x 6 records = 20,004 events
CLEANUP_NOTEBOOK = "customers-cleanup.ipynb"
REPEATS = 2000

DANA = {
    "username": "dana",
    "display_name": "Dana Analyst",
    "email": "dana@example.org",
    "subject": "sub-dana",
    "issuer": "https://idp.example.org",
    "groups": ["data-science"],
    "auth_method": "oidc",
}


def _cell(base: dict, n: int, code: str, ops=(), status="ok", error=None) -> list[dict]:
    cell = {**base, "msg_id": uuid.uuid4().hex}
    events = [
        {**cell, "kind": "cell.requested", "payload": {"code": code, "cell_id": f"c{n}"}},
        {**cell, "kind": "cell.started", "payload": {"execution_count": n}},
    ]
    for i, (kind, payload) in enumerate(ops):
        events.append({**cell, "kind": kind, "payload": payload, "op_index": i})
    finished = {"execution_count": n, "status": status, "duration_us": 900 + n}
    if error is not None:
        finished["error"] = error
    events.append({**cell, "kind": "cell.finished", "payload": finished})
    return events


def _sql(statement: str, rows: int, kind: str = "SELECT", tables=("orders",)) -> tuple:
    payload = {
        "driver": "sqlite3",
        "database": "shop.db",
        "statement": statement,
        "statement_type": kind,
        "tables": list(tables),
        "rowcount": rows,
        "duration_us": 250,
    }
    return ("op.sql", payload)


def long_trace() -> list[dict]:
    trace = "trace-long-" + uuid.uuid4().hex[:8]
    base = {
        "trace_id": trace,
        "kernel_id": uuid.uuid4().hex,
        "notebook": LONG_NOTEBOOK,
        "identity": DANA,
    }
    events = []
    for n in range(1, LONG_CELLS + 1):
        ops = [_sql(f"SELECT * FROM orders WHERE batch = {n} AND part = {p}", p) for p in range(3)]
        events += _cell(base, n, f"batch_{n} = load({n})", ops)
    return events


def cleanup_trace() -> list[dict]:
    trace = "trace-cleanup-" + uuid.uuid4().hex[:8]
    base = {
        "trace_id": trace,
        "kernel_id": uuid.uuid4().hex,
        "notebook": CLEANUP_NOTEBOOK,
        "identity": DANA,
    }
    events = [
        {
            **base,
            "kind": "session.started",
            "payload": {"reason": "start", "kernel_name": "python3"},
        },
        {
            **base,
            "kind": "session.environment",
            "payload": {
                "python_version": "3.11.2",
                "kernelspec": "python3",
                "packages": ["pandas==2.2.2", "sqlalchemy==2.0.30"],
                "packages_hash": "ab" * 32,
            },
        },
    ]
    events += _cell(
        base,
        1,
        "con = sqlite3.connect('shop.db')\nrows = con.execute("
        "'SELECT count(*) FROM customers').fetchall()",
        [_sql("SELECT count(*) FROM customers", 1, tables=("customers",))],
    )
    events += _cell(
        base,
        2,
        "for i in range(2000):\n    con.execute('SELECT ? + 1', (i,))",
        [_sql("SELECT ? + 1", 1, tables=()) for _ in range(REPEATS)],
    )
    events += _cell(
        base,
        3,
        "churn = model.predict(customers)",
        status="error",
        error={"ename": "NameError", "evalue": "name 'model' is not defined"},
    )
    events += _cell(
        base,
        4,
        "con.execute('DELETE FROM customers')",
        [_sql("DELETE FROM customers", 50, kind="DELETE", tables=("customers",))],
    )
    events.append(
        {
            **base,
            "kind": "file.saved",
            "payload": {"path": CLEANUP_NOTEBOOK, "sha256": "cd" * 32, "size": 2048},
        }
    )
    return events


def seed_review_trail(db_path: str, *, long: bool = True) -> int:
    """Append the review traces to the trail at `db_path` (after `seed_demo_trail`)."""
    db = Path(db_path)
    masker = MaskingEngine(load_or_create_key(db.parent / "masking.key"))
    key = SigningKey.load_or_create(db.parent / "signing-key.pem")
    events = cleanup_trace() + (long_trace() if long else [])
    with Writer(db, masker, key) as writer:
        futures = [writer.submit_batch(events[i : i + 2000]) for i in range(0, len(events), 2000)]
        for future in futures:
            future.result()
    return len(events)


def tamper(db_path: str, old: str, new: str) -> int:
    """Replace `old` by `new` inside the first stored record holding it; its seq."""
    con = duckdb.connect(db_path)
    try:
        seq = con.execute(
            "SELECT min(seq) FROM events WHERE contains(decode(record), ?)", [old]
        ).fetchone()[0]
        if seq is None:
            raise ValueError(f"no record holds {old!r}")
        con.execute(
            "UPDATE events SET record = encode(replace(decode(record), ?, ?)) WHERE seq = ?",
            [old, new, seq],
        )
        return seq
    finally:
        con.close()

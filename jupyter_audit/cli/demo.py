"""A small demo trail: a few traces with cells, SQL, HTTP and shell steps, two users, the
server ending a kernel at shutdown, and hostile strings (HTML in a notebook name, PII and
secrets in code) to show masking and escaping. Used by `jupyter audit demo`, the UI tests
and the README screenshots."""

from __future__ import annotations

import uuid
from pathlib import Path

from ..identity import system_identity
from ..masking import MaskingEngine, load_or_create_key
from ..store.signing import SigningKey
from ..store.writer import Writer


def _ident(name: str, groups=(), method="oidc") -> dict:
    return {
        "username": name,
        "display_name": name.title(),
        "email": f"{name}@example.org",
        "subject": f"sub-{name}",
        "issuer": "https://idp.example.org",
        "groups": list(groups),
        "auth_method": method,
    }


def _cell(trace, kernel, nb, who, code, n, ops=(), status="ok"):
    msg = uuid.uuid4().hex
    base = {"trace_id": trace, "kernel_id": kernel, "notebook": nb, "identity": who, "msg_id": msg}
    events = [
        {**base, "kind": "cell.requested", "payload": {"code": code, "cell_id": f"cell-{n}"}},
        {**base, "kind": "cell.started", "payload": {"execution_count": n}},
    ]
    for i, (kind, payload) in enumerate(ops):
        events.append({**base, "kind": kind, "payload": payload, "op_index": n * 100 + i})
    events.append(
        {
            **base,
            "kind": "cell.finished",
            "payload": {"execution_count": n, "status": status, "duration_us": 1200 * n},
        }
    )
    return events


def demo_events() -> list[dict]:
    alice = _ident("alice", ["data-science"])
    bob = _ident("bob", ["data-science", "audit-reviewers"])
    events: list[dict] = []

    t1, k1, nb1 = "trace-" + uuid.uuid4().hex[:12], uuid.uuid4().hex, "credit/model-review.ipynb"
    base = {"trace_id": t1, "kernel_id": k1, "notebook": nb1}
    events.append(
        {
            **base,
            "kind": "session.started",
            "identity": alice,
            "payload": {"reason": "start", "kernel_name": "python3"},
        }
    )
    events += _cell(t1, k1, nb1, alice, "import sqlite3\ncon = sqlite3.connect('loans.db')", 1)
    events += _cell(
        t1,
        k1,
        nb1,
        alice,
        "df = pd.read_sql('SELECT * FROM applicants WHERE email = ?', con,\n"
        "                 params=['jane.doe@example.com'])",
        2,
        [
            (
                "op.sql",
                {
                    "driver": "sqlite3",
                    "database": "loans.db",
                    "statement": "SELECT * FROM applicants WHERE email = ?",
                    "params": ["jane.doe@example.com"],
                    "statement_type": "SELECT",
                    "tables": ["applicants"],
                    "rowcount": 42,
                    "duration_us": 812,
                },
            )
        ],
    )
    events += _cell(
        t1,
        k1,
        nb1,
        bob,
        "r = requests.post('https://api.example.org/score',\n"
        "    headers={'Authorization': 'Bearer sk-live-abcdefghijklmnopqrstuvwxyz'})",
        3,
        [
            (
                "op.http",
                {
                    "method": "POST",
                    "url": "https://api.example.org/score?api_key=abc123secret",
                    "status": 200,
                    "duration_us": 35120,
                },
            )
        ],
    )
    events += _cell(
        t1,
        k1,
        nb1,
        alice,
        "!ls -l data/",
        4,
        [("op.shell", {"command": "ls -l data/", "exit_code": 0, "duration_us": 4100})],
    )
    events += _cell(t1, k1, nb1, alice, "1 / 0", 5, status="error")
    # the server ends the kernel when it shuts down: its own event, no participant's
    events.append(
        {
            **base,
            "kind": "session.ended",
            "identity": system_identity(),
            "payload": {"reason": "server shutdown"},
        }
    )

    t2, k2 = "trace-" + uuid.uuid4().hex[:12], uuid.uuid4().hex
    nb2 = "<img src=x onerror=alert(1)>.ipynb"
    base2 = {"trace_id": t2, "kernel_id": k2, "notebook": nb2}
    events.append(
        {
            **base2,
            "kind": "session.started",
            "identity": bob,
            "payload": {"reason": "start", "kernel_name": "python3"},
        }
    )
    events += _cell(
        t2,
        k2,
        nb2,
        bob,
        "<script>alert('x')</script>",
        1,
        [
            (
                "op.sql",
                {
                    "driver": "duckdb",
                    "database": ":memory:",
                    "statement": "DELETE FROM payments WHERE card = '4111 1111 1111 1111'",
                    "statement_type": "DELETE",
                    "rowcount": 3,
                    "duration_us": 90,
                },
            )
        ],
    )
    events.append(
        {**base2, "kind": "session.ended", "identity": bob, "payload": {"reason": "shutdown"}}
    )
    return events


def seed_demo_trail(db_path: str) -> int:
    """Append the demo events to the trail at `db_path` (created if missing)."""
    db = Path(db_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    masker = MaskingEngine(load_or_create_key(db.parent / "masking.key"))
    key = SigningKey.load_or_create(db.parent / "signing-key.pem")
    events = demo_events()
    with Writer(db, masker, key) as writer:
        writer.append_many(events)
    return len(events)

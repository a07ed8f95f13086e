"""`statement_type` and `tables` of op.sql records: read by the server from the masked
statement (policy/describe.py), whatever the kernel sent."""

import pytest
from helpers.trail import ALICE

from jupyter_audit.policy.describe import MAX_TABLES, describe_sql


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("SELECT * FROM loans WHERE id = 3", ("SELECT", ("loans",))),
        ("select a from x join y on x.id = y.id", ("SELECT", ("x", "y"))),
        ("SELECT * FROM a, b.c", ("SELECT", ("a", "b.c"))),
        ("WITH c AS (SELECT 1 FROM base) SELECT * FROM c", ("SELECT", ("base",))),
        ("DELETE FROM customers", ("DELETE", ("customers",))),
        ("INSERT INTO t (a, b) VALUES (1, 2)", ("INSERT", ("t",))),
        ("SELECT * FROM read_csv('a.csv')", ("SELECT", ())),
        ('UPDATE "My T" SET a = 1 WHERE b = 2', ("UPDATE", ("My T",))),
        ("SELECT 'FROM fake' -- FROM c\n FROM real_t", ("SELECT", ("real_t",))),
        ("SELECT extract(year FROM d) FROM s.t", ("SELECT", ("s.t",))),
        ("DROP TABLE IF EXISTS old; SELECT 1", ("MULTIPLE", ("old",))),
        ("SHOW TABLES", ("SHOW", ())),
        ("CREATE TABLE loans (id INTEGER, email TEXT)", ("CREATE", ("loans",))),
        ("CREATE TABLE n AS SELECT * FROM o", ("CREATE", ("n", "o"))),
        ("SELECT * FROM (SELECT * FROM inner_t) q", ("SELECT", ("inner_t",))),
        ("/* DELETE */ SELECT 1", ("SELECT", ())),
        ("", ("UNKNOWN", ())),
    ],
)
def test_a_statement_is_described(statement, expected):
    assert describe_sql(statement) == expected


def test_many_tables_are_capped():
    sql = "SELECT * FROM " + ", ".join(f"t{i}" for i in range(100))
    assert len(describe_sql(sql)[1]) == MAX_TABLES


def test_the_server_replaces_what_the_kernel_says(make_writer):
    """A kernel (a user's code) that calls a DELETE a SELECT on no table is corrected."""
    w = make_writer()
    w.append(
        {
            "kind": "op.sql",
            "identity": ALICE,
            "trace_id": "t",
            "payload": {
                "driver": "sqlite3",
                "statement": "DELETE FROM customers",
                "statement_type": "SELECT",
                "tables": ["nothing"],
                "rowcount": 50,
            },
        }
    )
    w.flush()
    from helpers.trail import writer_events

    (ev,) = [e for e in writer_events(w) if e["kind"] == "op.sql"]
    assert (ev["payload"]["statement_type"], ev["payload"]["tables"]) == ("DELETE", ["customers"])

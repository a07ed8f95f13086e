"""An insider with a notebook account (or write access to the trail file, but not the
signing key) against the archive, on real trail files and real archive directories: a
forged `trail.archived` event, edits made after archiving, live rows that differ from the
archived ones. Each attack found by review is kept closed here."""

import duckdb
import test_archive
from helpers.trail import sql_event
from test_archive import archive

from jupyter_audit.masking import MaskingEngine, load_or_create_key
from jupyter_audit.store.signing import SigningKey
from jupyter_audit.store.writer import Writer

base_trail = test_archive.base_trail  # the fixtures: a real 300-record trail, copied per test
trail = test_archive.trail


def writer(d, key_path, **kw):
    return Writer(
        d / "trail.duckdb",
        MaskingEngine(load_or_create_key(d / "masking.key")),
        SigningKey.load_or_create(key_path),
        **kw,
    ).open()


def forge_archived(d, tmp_path, cut: int) -> None:
    """Append a `trail.archived` event claiming records #1..#cut were archived, through a
    Writer holding a key of the attacker's own; the server then runs on with the real key
    (its checkpoints cover the forged record)."""
    con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
    last_hash = bytes(
        con.execute("SELECT hash FROM events WHERE seq = ?", [cut]).fetchone()[0]
    ).hex()
    con.close()
    w = writer(d, tmp_path / "attacker.pem", checkpoint_every=10**9, checkpoint_interval=0)
    w.append(
        {
            "kind": "trail.archived",
            "identity": {"username": "jupyter-audit", "auth_method": "system"},
            "payload": {
                "first_seq": 1,
                "last_seq": cut,
                "last_hash": last_hash,
                "checkpoint_seq": cut,
                "file": f"segment-000000000001-{cut:012d}.parquet",
                "sha256": "0" * 64,
                "bytes": 1,
                "archive": "/nonexistent",
                "frontier": "",
            },
        }
    )
    w.flush()
    w.close(checkpoint=False)
    w = writer(d, d / "signing-key.pem", checkpoint_every=100)
    w.append_many([sql_event(i) for i in range(1000, 1100)])
    w.close()


def live_range(d):
    con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
    try:
        return con.execute("SELECT min(seq), max(seq), count(*) FROM events").fetchone()
    finally:
        con.close()


def test_a_forged_trail_archived_never_makes_the_archiver_drop_records(trail, capsys, tmp_path):
    forge_archived(trail, tmp_path, 202)
    before = live_range(trail)
    code, _out, err = archive(trail, capsys, "--after", "3650d", "--retention", "3650d")
    assert code != 0 and "segment-000000000001-000000000202.parquet" in err, err
    assert "nothing removed" in err or "nothing archived" in err, err
    first, last, count = live_range(trail)
    assert first == 1 and count == last >= before[1], (before, first, last, count)

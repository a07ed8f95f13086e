"""An insider with a notebook account (or write access to the trail file, but not the
signing key) against the archive, on real trail files and real archive directories: a
forged `trail.archived` event, edits made after archiving, live rows that differ from the
archived ones. Each attack found by review is kept closed here."""

import duckdb
import pytest
import test_archive
from helpers.trail import ALICE, BOB, sql_event
from test_archive import archive, verify_json

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


def archived_payload(d, cut: int) -> dict:
    """A `trail.archived` payload claiming records #1..#cut went to an archive that holds
    nothing."""
    con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
    last_hash = bytes(
        con.execute("SELECT hash FROM events WHERE seq = ?", [cut]).fetchone()[0]
    ).hex()
    con.close()
    return {
        "first_seq": 1,
        "last_seq": cut,
        "last_hash": last_hash,
        "checkpoint_seq": cut,
        "file": f"segment-000000000001-{cut:012d}.parquet",
        "sha256": "0" * 64,
        "bytes": 1,
        "archive": "/nonexistent",
        "frontier": "",
        "traces": {},
        "tokens": {},
    }


SYSTEM = {"username": "jupyter-audit", "auth_method": "system"}


def forge_archived(d, tmp_path, cut: int) -> None:
    """Append a `trail.archived` event claiming records #1..#cut were archived, signed by a
    key of the attacker's own (no access to the trail's); the server then runs on with the
    real key (its checkpoints cover the forged record)."""
    payload = archived_payload(d, cut)
    w = writer(d, tmp_path / "attacker.pem", checkpoint_every=10**9, checkpoint_interval=0)
    w.record_archived(payload, SYSTEM)
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


def test_the_archiver_removes_nothing_a_trail_archived_names_outside_its_archive(trail, capsys):
    # signed with the trail's own key (a stale record, or one naming another archive): the
    # archiver still compacts only over segments it read back from the configured archive
    payload = archived_payload(trail, 202)
    w = writer(trail, trail / "signing-key.pem", checkpoint_every=100)
    w.record_archived(payload, SYSTEM)
    w.append_many([sql_event(i) for i in range(1000, 1100)])
    w.close()
    before = live_range(trail)
    code, _out, err = archive(trail, capsys, "--after", "3650d", "--retention", "3650d")
    assert code != 0 and "segment-000000000001-000000000202.parquet" in err, err
    assert "nothing removed" in err, err
    first, last, count = live_range(trail)
    assert first == 1 and count == last >= before[1], (before, first, last, count)


def test_a_forged_trail_archived_is_reported_and_never_compacts(trail, capsys, tmp_path):
    forge_archived(trail, tmp_path, 202)
    code, r = verify_json(capsys, "--db", str(trail / "trail.duckdb"))
    assert code == 1 and r["problems"][0]["problem"] == "archived_unsigned", r
    before = live_range(trail)
    code, _out, err = archive(trail, capsys, "--after", "3650d", "--retention", "3650d")
    assert code != 0 and "nothing archived" in err, err
    first, last, count = live_range(trail)
    assert first == 1 and count == last >= before[1]


def cut_head(d, cut: int) -> None:
    con = duckdb.connect(str(d / "trail.duckdb"))
    con.execute("DELETE FROM events WHERE seq <= ?", [cut])
    con.execute("CHECKPOINT")
    con.close()


def test_a_head_cut_behind_a_forged_trail_archived_is_caught(trail, capsys, tmp_path):
    mirror = tmp_path / "mirror.checkpoints"  # an auditor's copy, taken before the attack
    mirror.write_bytes((trail / "trail.duckdb.checkpoints").read_bytes())
    forge_archived(trail, tmp_path, 202)
    cut_head(trail, 202)
    db = str(trail / "trail.duckdb")
    pub = str(trail / "signing-key.pem.pub")
    for extra in ([], ["--pubkey", pub], ["--pubkey", pub, "--checkpoints", str(mirror)]):
        code, r = verify_json(capsys, "--db", db, *extra)
        assert code == 1 and r["first_bad_seq"] == 1, r
        problems = {(p["problem"], p["seq"]) for p in r["problems"]}
        assert ("record_missing", 1) in problems, r["problems"]
        # the signed checkpoints over the cut records name them
        assert ("record_missing", 101) in problems and ("record_missing", 202) in problems
        assert any(p == "archived_unsigned" for p, _ in problems), r["problems"]
    w = writer(trail, trail / "signing-key.pem", checkpoint_every=100)
    try:
        assert not w.integrity.ok and "no signed trail.archived" in w.integrity.detail
    finally:
        w.close()


def test_checkpoints_below_the_head_are_reported_without_any_trail_archived(trail, capsys):
    cut_head(trail, 150)
    code, r = verify_json(capsys, "--db", str(trail / "trail.duckdb"))
    assert code == 1, r
    assert any(
        p["problem"] == "record_missing" and p["seq"] == 101 and "checkpoint" in p["detail"]
        for p in r["problems"]
    ), r["problems"]


archived = test_archive.archived  # the copy, archived with records leaving the live trail


def trace_users(d):
    con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
    try:
        return sorted(con.execute("SELECT trace_id, username FROM trace_users").fetchall())
    finally:
        con.close()


def test_derived_edits_after_archiving_are_reported_and_repaired(archived, capsys):
    w = writer(archived, archived / "signing-key.pem", checkpoint_every=100)
    w.append_many([sql_event(i, trace="trace-live", who=BOB) for i in range(2000, 2010)])
    w.close()
    db = str(archived / "trail.duckdb")
    before = trace_users(archived)
    # participants of archived traces (from the signed trail.archived) and of the live one
    assert ("trace-0", "bob") in before and ("trace-live", "bob") in before, before
    code, r = verify_json(capsys, "--db", db)
    assert code == 0, r
    con = duckdb.connect(db)
    con.execute("INSERT INTO trace_users SELECT trace_id, 'mallory' FROM traces")
    con.close()
    code, r = verify_json(capsys, "--db", db)
    assert code == 1 and "trace_users" in r["detail"], r
    w = writer(archived, archived / "signing-key.pem", checkpoint_every=100)
    try:
        assert not w.integrity.ok  # recorded as trail.integrity, then rebuilt
    finally:
        w.close()
    assert trace_users(archived) == before  # mallory gone, archived participants kept
    code, r = verify_json(capsys, "--db", db)
    assert code == 0, r
    # a trace entirely in the live part: its row is checked too
    con = duckdb.connect(db)
    con.execute("UPDATE traces SET cells = 0, operations = 0 WHERE trace_id = 'trace-live'")
    con.close()
    code, r = verify_json(capsys, "--db", db)
    assert code == 1 and "trace-live" in r["detail"], r


def test_edits_to_live_rows_the_archive_also_holds_are_reported(trail, capsys):
    code, _out, err = archive(trail, capsys, "--retention", "3650d")  # archived, not removed
    assert code == 0 and live_range(trail)[0] == 1, err
    db = str(trail / "trail.duckdb")
    con = duckdb.connect(db)
    con.execute("UPDATE events SET trace_id = 'trace-9' WHERE seq = 50")  # what listings read
    rec = con.execute("SELECT record FROM events WHERE seq = 61").fetchone()[0]
    con.execute("UPDATE events SET record = ? WHERE seq = 60", [rec])
    con.close()
    code, r = verify_json(capsys, "--archive", str(trail / "archive"), "--db", db)
    assert code == 1, r
    problems = {(p["problem"], p["seq"]) for p in r["problems"]}
    assert ("column_mismatch", 50) in problems, r["problems"]
    assert any(
        p in ("record_changed", "records_reordered") and s in (60, 61) for p, s in problems
    ), r["problems"]


def test_an_emptied_archive_is_reported_not_a_crash(archived, capsys):
    for f in (archived / "archive").iterdir():
        f.chmod(0o644)
        f.unlink()
    for extra in ([], ["--db", str(archived / "trail.duckdb")]):
        code, r = verify_json(capsys, "--archive", str(archived / "archive"), *extra)
        assert code == 1 and r["problems"][0]["problem"] == "segment_missing", r


@pytest.fixture
def tokens_archived(tmp_path, capsys):
    """A trail whose two service tokens (one revoked) were created in records archived
    away: (trail dir, live token, revoked token)."""
    from jupyter_audit.identity.tokens import TokenStore

    d = tmp_path / "tokens"
    d.mkdir()
    w = writer(d, d / "signing-key.pem", checkpoint_every=100)
    store = TokenStore(w)
    live, _ = store.create("etl-job", "alice@example.org", "30d", ALICE)
    revoked, pub = store.create("old-job", "alice@example.org", "30d", ALICE)
    store.revoke(pub["id"], ALICE)
    w.append_many([sql_event(i) for i in range(250)])
    w.close()
    code, _out, err = archive(d, capsys)
    assert code == 0 and live_range(d)[0] > 10, err
    return d, live, revoked


def token_check(d, secret):
    from jupyter_audit.identity.tokens import TokenStore

    w = writer(d, d / "signing-key.pem", checkpoint_every=100)
    try:
        return TokenStore(w).check(secret)
    finally:
        w.close()


def test_a_token_created_in_archived_records_still_works(tokens_archived, capsys):
    d, live, revoked = tokens_archived
    who, why = token_check(d, live)
    assert who is not None and who["username"] == "etl-job", why
    assert token_check(d, revoked)[0] is None
    code, r = verify_json(capsys, "--db", str(d / "trail.duckdb"))
    assert code == 0, r


def test_tokens_revived_or_backdated_after_archiving_are_refused(tokens_archived, capsys):
    d, _live, revoked = tokens_archived
    con = duckdb.connect(str(d / "trail.duckdb"))
    con.execute("UPDATE service_tokens SET revoked_at = NULL, revoked_by = NULL")
    planted = con.execute("SELECT secret_hash FROM service_tokens LIMIT 1").fetchone()[0]
    con.execute(
        "INSERT INTO service_tokens (token_id, secret_hash, service_account, owner, "
        "created_at, created_by) VALUES ('deadbeefdeadbeef', ?, 'mallory-bot', "
        "'m@example.org', TIMESTAMP '2020-01-01', 'alice')",
        [planted],
    )
    con.close()
    code, r = verify_json(capsys, "--db", str(d / "trail.duckdb"))
    details = " ".join(p["detail"] for p in r["problems"])
    assert code == 1 and "deadbeefdeadbeef" in details and "revoked in the log" in details, r
    assert token_check(d, revoked)[0] is None


def test_segments_deleted_at_the_archive_tail_show_with_expect_last_seq(archived, capsys):
    names = sorted((archived / "archive").glob("segment-*"))
    last = max(int(p.name.split("-")[2].split(".")[0]) for p in names)
    cut = [p for p in names if p.name.startswith(names[-1].name.rsplit(".", 1)[0])]
    for p in cut:  # the last segment and its manifest
        p.chmod(0o644)
        p.unlink()
    where = str(archived / "archive")
    code, r = verify_json(capsys, "--archive", where)
    assert code == 0, r  # alone, a shorter archive still verifies: the limit documented
    code, r = verify_json(capsys, "--archive", where, "--expect-last-seq", str(last))
    assert code == 1 and r["problems"][0]["problem"] == "segment_missing", r
    assert f"..#{last} are missing" in r["problems"][0]["detail"], r

"""The tamper suite: real trail files altered with duckdb itself; `jupyter audit verify` must
exit 1 and name the first damaged record and the kind of damage (exit 2 for unusable input)."""

import json
import shutil

import duckdb
import pytest
from helpers.servers import run_cli
from helpers.trail import BOB, sql_event

from jupyter_audit.cli import main as cli_main
from jupyter_audit.store.chain import chain_rows

N = 300


@pytest.fixture(scope="module")
def base_trail(tmp_path_factory):
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    d = tmp_path_factory.mktemp("base")
    masker = MaskingEngine(load_or_create_key(d / "masking.key"))
    key = SigningKey.load_or_create(d / "signing-key.pem")
    with Writer(d / "trail.duckdb", masker, key, checkpoint_every=100) as w:
        w.append_many([sql_event(i, who=BOB if i % 10 == 0 else None) for i in range(N)])
    return d


@pytest.fixture
def trail(base_trail, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(base_trail, d)
    return d


def verify(trail, *extra):
    code = cli_main(["verify", "--db", str(trail / "trail.duckdb"), "--json", *extra])
    return code


def verify_json(trail, capsys, *extra):
    capsys.readouterr()
    code = verify(trail, *extra)
    out = capsys.readouterr().out
    return code, json.loads(out)


def sql(trail, *statements):
    con = duckdb.connect(str(trail / "trail.duckdb"))
    for s in statements:
        con.execute(s)
    con.close()


def test_intact_trail_verifies(trail, capsys):
    code, r = verify_json(trail, capsys, "--pubkey", str(trail / "signing-key.pem.pub"))
    assert code == 0, r
    assert r["ok"] and r["first_bad_seq"] is None
    assert r["checkpoint"]["seq"] >= N
    assert r["key_source"] == "pinned"


def seq_of(trail, text: str) -> int:
    """Where the writer put a record (checkpoint events shift positions between runs)."""
    con = duckdb.connect(str(trail / "trail.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT min(seq) FROM events WHERE contains(decode(record), ?)", [text]
        ).fetchone()[0]
    finally:
        con.close()


def change_text(trail, old: str, new: str) -> int:
    seq = seq_of(trail, old)
    sql(
        trail,
        f"UPDATE events SET record = encode(replace(decode(record), '{old}', '{new}')) "
        f"WHERE seq = {seq}",
    )
    return seq


def test_changed_payload_byte(trail, capsys):
    seq = change_text(trail, 'id = 50"', 'id = 51"')
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["first_bad_seq"] == seq
    assert r["problem"] == "record changed"


def test_changed_identity_snapshot(trail, capsys):
    con = duckdb.connect(str(trail / "trail.duckdb"))
    first = con.execute(
        "SELECT min(e.seq) FROM events e JOIN identities i USING (identity_id) "
        "WHERE i.username = 'bob'"
    ).fetchone()[0]
    con.execute("UPDATE identities SET snapshot = replace(snapshot, '\"bob\"', '\"eve\"')")
    con.close()
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["problem"] == "identity snapshot changed"
    assert r["first_bad_seq"] == first


def test_deleted_row(trail, capsys):
    sql(trail, "DELETE FROM events WHERE seq = 77")
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert (r["first_bad_seq"], r["problem"]) == (77, "record missing")


def test_swapped_rows(trail, capsys):
    cols = "kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, event_id, "
    cols += "hash, leaf, record"
    sql(
        trail,
        f"CREATE TEMP TABLE a AS SELECT {cols} FROM events WHERE seq = 120",
        f"CREATE TEMP TABLE b AS SELECT {cols} FROM events WHERE seq = 130",
        "UPDATE events SET "
        + ", ".join(f"{c} = (SELECT {c} FROM b)" for c in cols.split(", "))
        + " WHERE seq = 120",
        "UPDATE events SET "
        + ", ".join(f"{c} = (SELECT {c} FROM a)" for c in cols.split(", "))
        + " WHERE seq = 130",
    )
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert (r["first_bad_seq"], r["problem"]) == (120, "records reordered")


def test_swapped_record_bytes_only(trail, capsys):
    sql(
        trail,
        "CREATE TEMP TABLE a AS SELECT record FROM events WHERE seq = 10",
        "UPDATE events SET record = (SELECT record FROM events WHERE seq = 11) WHERE seq = 10",
        "UPDATE events SET record = (SELECT record FROM a) WHERE seq = 11",
    )
    code, r = verify_json(trail, capsys)
    assert (code, r["first_bad_seq"], r["problem"]) == (1, 10, "records reordered")


def test_truncated_tail_with_checkpoint_file(trail, capsys):
    # a tamperer who also repairs the writer's high-water mark: the signed file still tells
    sql(
        trail,
        "DELETE FROM events WHERE seq > 250",
        "UPDATE meta SET value = '250' WHERE key = 'last_seq'",
    )
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["problem"] == "tail truncated below a signed checkpoint"
    assert r["first_bad_seq"] == 251


def test_truncated_tail_without_checkpoint_file(trail, capsys):
    sql(trail, "DELETE FROM events WHERE seq > 250")
    (trail / "trail.duckdb.checkpoints").unlink()
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["problem"] == "tail truncated below a signed checkpoint"
    assert r["first_bad_seq"] == 251
    assert any("checkpoint file missing" in w for w in r["warnings"])


def test_truncated_tail_caught_by_checkpoint_copy(trail, capsys, tmp_path):
    copy = tmp_path / "offsite.checkpoints"
    shutil.copy(trail / "trail.duckdb.checkpoints", copy)
    sql(
        trail,
        "DELETE FROM events WHERE seq > 250",
        "UPDATE meta SET value = '250' WHERE key = 'last_seq'",
    )
    (trail / "trail.duckdb.checkpoints").unlink()
    code, r = verify_json(trail, capsys, "--checkpoints", str(copy))
    assert (code, r["first_bad_seq"]) == (1, 251)
    assert r["problem"] == "tail truncated below a signed checkpoint"


def _rewrite_checkpoints(trail, change):
    path = trail / "trail.duckdb.checkpoints"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_altered_checkpoint(trail, capsys):
    def change(lines):
        lines[0]["hash"] = "00" * 32

    _rewrite_checkpoints(trail, change)
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["problem"] == "checkpoint signature invalid"


def test_forged_checkpoint_with_other_key(trail, capsys):
    from jupyter_audit.store.checkpoints import checkpoint_message
    from jupyter_audit.store.signing import SigningKey, public_b64

    mallory = SigningKey.generate()

    def change(lines):
        forged = dict(lines[-1])
        forged.update(
            seq=forged["seq"] + 50, key_id=mallory.key_id, public_key=public_b64(mallory.public)
        )
        forged["signature"] = mallory.sign(checkpoint_message(forged))
        lines.append(forged)

    _rewrite_checkpoints(trail, change)
    code, r = verify_json(trail, capsys, "--pubkey", str(trail / "signing-key.pem.pub"))
    assert code == 1
    assert r["problem"] == "checkpoint signature invalid"
    assert "untrusted key" in r["detail"]


def test_rewritten_chain_caught_by_signed_checkpoint(trail, capsys):
    """Change a record and recompute every later hash: only the signatures can tell."""
    from hashlib import sha256

    con = duckdb.connect(str(trail / "trail.duckdb"))
    rows = [(r.seq, r.prev_hash, r.record) for r in chain_rows(con)]
    prev = None
    for seq, old_prev, rec in rows:
        if seq == 40:
            rec = rec.replace(b"id = 38", b"id = 99")
        if seq >= 40:
            p = prev if prev is not None else bytes(old_prev)
            rec = rec.replace(bytes(old_prev).hex().encode(), p.hex().encode())
            h = sha256(p + rec).digest()
            leaf = sha256(b"\x00" + rec).digest()
            con.execute(
                "UPDATE events SET record = ?, hash = ?, leaf = ? WHERE seq = ?",
                [rec, h, leaf, seq],
            )
            prev = h
    con.close()
    code, r = verify_json(trail, capsys)
    assert code == 1
    assert r["problem"] in (
        "chain rewritten before a signed checkpoint",
        "checkpoint signature invalid",  # the signed hash inside a rewritten checkpoint record
    )
    assert r["first_bad_seq"] is not None and r["first_bad_seq"] >= 40


def test_edited_index_column(trail, capsys):
    sql(trail, "UPDATE events SET trace_id = 'other' WHERE seq = 90")
    for args in ((), ("--deep",)):
        code, r = verify_json(trail, capsys, *args)
        assert code == 1
        assert r["first_bad_seq"] == 90
        assert "a stored column differs from the signed record" in r["problem"]


def test_human_output_names_record_and_damage(trail):
    sql(trail, "DELETE FROM events WHERE seq = 33")
    code, out, err = run_cli("verify", "--db", str(trail / "trail.duckdb"))
    assert code == 1, err
    assert "record #33: record missing" in out


# ----------------------------------------------------------------- unusable input: exit 2
def test_missing_file(tmp_path):
    code, out, err = run_cli("verify", "--db", str(tmp_path / "nope.duckdb"))
    assert code == 2
    assert "does not exist" in err


def test_not_a_trail(tmp_path):
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE x (a INT)").close()
    code, _, err = run_cli("verify", "--db", str(other))
    assert code == 2 and "not a jupyter-audit trail" in err
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database at all" * 100)
    code, _, err = run_cli("verify", "--db", str(junk))
    assert code == 2 and "junk.duckdb" in err


def test_unknown_format_version(trail):
    sql(trail, "UPDATE meta SET value = '99' WHERE key = 'format_version'")
    code, _, err = run_cli("verify", "--db", str(trail / "trail.duckdb"))
    assert code == 2
    assert "unknown trail format version 99" in err


def test_locked_by_running_server(trail):
    con = duckdb.connect(str(trail / "trail.duckdb"))  # a writer holds the file
    try:
        code, _, err = run_cli("verify", "--db", str(trail / "trail.duckdb"))
    finally:
        con.close()
    assert code == 2
    assert "--url" in err


def test_usage_errors():
    code, _, err = run_cli("verify", "--url", "http://127.0.0.1:1")
    assert code == 2 and "--token" in err
    code, _, err = run_cli("verify", "--no-such-flag")
    assert code == 2


# ------------------------------------------- the same checks split over worker processes
@pytest.fixture
def parallel(monkeypatch):
    from jupyter_audit.store import verify as verify_mod

    monkeypatch.setattr(verify_mod, "PARALLEL_MIN", 1)


@pytest.mark.parametrize(
    "statements, seq, problem",
    [
        ([], None, None),
        (["DELETE FROM events WHERE seq = 152"], 152, "record missing"),
        (["DELETE FROM events WHERE seq = 151"], 151, "record missing"),
        ("change", None, "record changed"),
        (
            [
                "CREATE TEMP TABLE a AS SELECT record FROM events WHERE seq = 200",
                "UPDATE events SET record = (SELECT record FROM events WHERE seq = 201) "
                "WHERE seq = 200",
                "UPDATE events SET record = (SELECT record FROM a) WHERE seq = 201",
            ],
            200,
            "records reordered",
        ),
    ],
)
def test_parallel_verification_finds_the_same_damage(
    trail, capsys, parallel, statements, seq, problem
):
    if statements == "change":
        seq = change_text(trail, 'id = 150"', 'id = 15"')
    elif statements:
        sql(trail, *statements)
    code, r = verify_json(trail, capsys, "--deep")
    assert (r["first_bad_seq"], r["problem"]) == (seq, problem), r
    assert code == (1 if statements else 0)
    if not statements:
        assert r["checkpoint"]["seq"] >= N


# One edit per stored column of every table a query, a filter, an export or a decision on
# who may see a trace reads: the default `verify` (no --deep) catches each.
COLUMN_EDITS = {
    "events.kind": ["UPDATE events SET kind = 'op.http' WHERE seq = 90"],
    "events.time": ["UPDATE events SET time = time - INTERVAL 3 DAY WHERE seq = 90"],
    "events.trace_id": ["UPDATE events SET trace_id = 'other' WHERE seq = 90"],
    "events.kernel_id": ["UPDATE events SET kernel_id = 'kernel-2' WHERE seq = 90"],
    "events.notebook": ["UPDATE events SET notebook = 'innocent.ipynb' WHERE seq = 90"],
    "events.notebook (to NULL)": ["UPDATE events SET notebook = NULL WHERE seq = 90"],
    "events.msg_id": ["UPDATE events SET msg_id = 'msg-0' WHERE seq = 90"],
    "events.event_id": ["UPDATE events SET event_id = 'forged' WHERE seq = 90"],
    "events.hash": [
        "UPDATE events SET hash = (SELECT hash FROM events WHERE seq = 50) WHERE seq = 90"
    ],
    "events.leaf": [
        "UPDATE events SET leaf = (SELECT leaf FROM events WHERE seq = 50) WHERE seq = 90"
    ],
    "events.identity_id": [
        "UPDATE events SET identity_id = (SELECT min(identity_id) FROM identities WHERE "
        "identity_id <> (SELECT identity_id FROM events WHERE seq = 90)) WHERE seq = 90"
    ],
}


@pytest.mark.parametrize("edit", list(COLUMN_EDITS))
def test_an_edit_to_any_column_of_events_is_caught_by_the_default_verify(trail, capsys, edit):
    sql(trail, *COLUMN_EDITS[edit])
    code, r = verify_json(trail, capsys)
    assert code == 1, edit
    assert r["first_bad_seq"] == 90, (edit, r["problems"])
    assert r["problem"] in (
        "record changed (a stored column differs from the signed record)",
        "record changed",  # the Merkle leaf, found by the chain scan hashing each record
    )


OTHER_TABLES = {
    "identities.username": (
        ["UPDATE identities SET username = 'mallory' WHERE username = 'bob'"],
        "identity snapshot changed",
    ),
    "identities.snapshot and its id": (
        [
            "UPDATE identities SET snapshot = replace(snapshot, '\"bob\"', '\"mallory\"'), "
            "identity_id = sha256(replace(snapshot, '\"bob\"', '\"mallory\"')) "
            "WHERE username = 'bob'"
        ],
        "identity snapshot missing",
    ),
    "trace_users: someone added": (
        ["INSERT INTO trace_users VALUES ('trace-1', 'mallory')"],
        "derived table changed (differs from what the log says)",
    ),
    "trace_users: someone removed": (
        ["DELETE FROM trace_users WHERE username = 'bob'"],
        "derived table changed (differs from what the log says)",
    ),
    "traces: a count": (
        ["UPDATE traces SET operations = operations - 1"],
        "derived table changed (differs from what the log says)",
    ),
    "traces: the notebook": (
        ["UPDATE traces SET notebook = 'innocent.ipynb'"],
        "derived table changed (differs from what the log says)",
    ),
    "traces: a row removed": (
        ["DELETE FROM traces"],
        "derived table changed (differs from what the log says)",
    ),
    "meta.last_seq lowered": (
        ["UPDATE meta SET value = '299' WHERE key = 'last_seq'"],
        "the writer's high-water mark was edited",
    ),
    "meta.last_hash": (
        [
            "UPDATE meta SET value = (SELECT hex(hash) FROM events WHERE seq = 5) "
            "WHERE key = 'last_hash'"
        ],
        "the writer's high-water mark was edited",
    ),
}


@pytest.mark.parametrize("edit", list(OTHER_TABLES))
def test_an_edit_to_any_other_table_is_caught_by_the_default_verify(trail, capsys, edit):
    statements, problem = OTHER_TABLES[edit]
    sql(trail, *statements)
    code, r = verify_json(trail, capsys)
    assert code == 1, edit
    assert problem in [p_text(p) for p in r["problems"]], (edit, r["problems"])


def p_text(problem: dict) -> str:
    from jupyter_audit.store.verify import PROBLEMS

    return PROBLEMS[problem["problem"]]


def test_a_server_opening_a_trail_with_edited_participants_recounts_them(trail):
    """Who may open a trace is decided on trace_users: a server that finds them edited
    records the damage and rebuilds them from the log before anyone asks."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.queries import trace_users
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    sql(trail, "INSERT INTO trace_users VALUES ('trace-1', 'mallory')")
    masker = MaskingEngine(load_or_create_key(trail / "masking.key"))
    key = SigningKey.load_or_create(trail / "signing-key.pem")
    with Writer(trail / "trail.duckdb", masker, key) as w:
        assert not w.integrity.ok
        assert "mallory" not in trace_users(w.cursor(), "trace-1")
        assert "bob" in trace_users(w.cursor(), "trace-1")


def test_verify_names_the_last_signed_checkpoint_it_checked(trail):
    """A chain broken early: the checkpoints still verify as signed, and verify says so
    instead of 'no signed checkpoint yet'."""
    sql(trail, "UPDATE events SET record = record || ' ' WHERE seq = 5")
    code, out, err = run_cli("verify", "--db", str(trail / "trail.duckdb"))
    assert code == 1, err
    assert "no signed checkpoint yet" not in out
    assert "last signed checkpoint checked: #" in out
    assert "the chain holds up to #4" in out


def test_verify_says_what_its_result_covers(trail, tmp_path):
    """Without a checkpoint copy kept elsewhere, a tail cut together with its checkpoint
    lines and the high-water mark cannot show: verify says so plainly."""
    code, out, err = run_cli("verify", "--db", str(trail / "trail.duckdb"))
    assert code == 0, err
    assert "no independent copy given" in out and "checkpoint_mirror_path" in out
    copy = tmp_path / "offsite.checkpoints"
    shutil.copy(trail / "trail.duckdb.checkpoints", copy)
    code, out, err = run_cli(
        "verify", "--db", str(trail / "trail.duckdb"), "--checkpoints", str(copy)
    )
    assert code == 0, err
    assert "no independent copy given" not in out and str(copy) in out


@pytest.mark.parametrize("damage", ["cut in half", "bits flipped", "a checkpoint line 100k deep"])
def test_a_damaged_file_gets_one_clear_line_not_a_traceback(trail, damage):
    db = trail / "trail.duckdb"
    if damage == "cut in half":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    elif damage == "bits flipped":
        data = bytearray(db.read_bytes())
        for i in range(4096, len(data), 8192):
            data[i] ^= 0xFF
        db.write_bytes(bytes(data))
    else:
        with open(trail / "trail.duckdb.checkpoints", "a") as f:
            f.write("[" * 100_000 + "]" * 100_000 + "\n")
    code, out, err = run_cli("verify", "--db", str(db))
    assert "Traceback" not in out + err
    if damage == "a checkpoint line 100k deep":
        assert code == 1 and "unreadable checkpoint line" in out
    else:
        assert code in (1, 2), (code, out, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and "error:" in err


def test_a_macro_planted_in_the_file_cannot_make_a_check_pass(trail, capsys):
    """DuckDB keeps macros in the file, and a macro can shadow a built-in function that a
    check uses: the trail never holds any, and a check that fails is a finding."""
    sql(
        trail,
        "UPDATE events SET time = TIMESTAMP '1999-01-01' WHERE seq = 3",
        "CREATE MACRO strftime(t, f) AS CAST(f AS INTEGER)::VARCHAR",
    )
    code, r = verify_json(trail, capsys)
    assert code == 1
    found = {p_text(p) for p in r["problems"]}
    assert "the trail file holds functions or views of its own" in found
    assert "a check could not run on this trail (it may have been altered)" in found or (
        r["first_bad_seq"] == 3
    )


def test_a_missing_high_water_mark_is_tampering(trail, capsys):
    sql(trail, "DELETE FROM meta WHERE key = 'last_hash'")
    code, r = verify_json(trail, capsys)
    assert code == 1 and "the writer's high-water mark was edited" in [
        p_text(p) for p in r["problems"]
    ]

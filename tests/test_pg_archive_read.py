"""`jupyter audit export` and `show` with `--archive DIR --pg DSN` (docs/archive.md): the
archive and the collector's live PostgreSQL trail read as one, as the auditor's read-only
role, by the CLI as a real process: the archive verified against the live trail first
(an edited segment, an archive short of the live trail, a live row that differs from its
archived copy: refused), nothing doubled, the export's bundle verifying. Real PostgreSQL
(JUPYTER_AUDIT_TEST_PG_DSN, a database and roles per test); skipped without it."""

from __future__ import annotations

import json
import shutil
import threading

import psycopg
import pytest
from helpers.pg_archive import SIZE, archive, edit_segment, open_store, setup_trail
from helpers.servers import run_cli
from helpers.stores import dsn_for, role_dsn
from helpers.trail import sql_event
from psycopg.conninfo import conninfo_to_dict, make_conninfo

FIRST = "segment-000000000001-000000000100.parquet"


@pytest.fixture
def trail(pg, pg_role_names, tmp_path):
    """An archived trail: trace `old-trace` wholly in the first partition, `trace-1` in both
    partitions and on in the live trail after the first was archived and dropped."""
    pg = setup_trail(pg, pg_role_names, tmp_path)
    store = open_store(pg)
    store.append_many([sql_event(i, trace="old-trace") for i in range(60)])
    store.append_many([sql_event(i, trace="trace-1") for i in range(60, 130)])
    archive(store, pg)
    store.append_many([sql_event(i, trace="trace-1") for i in range(130, 150)])
    store.close()
    assert pg.sql("SELECT min(seq) FROM events") == [(SIZE + 1,)]
    return pg


def exported(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_reads_archive_and_live_trail_as_one_and_its_bundle_verifies(trail, tmp_path):
    pg = trail
    out = tmp_path / "trace.jsonl"
    rc, stdout, stderr = run_cli(
        "export", "--archive", str(pg.archive), "--pg", pg.reader, "--trace", "trace-1",
        "-o", str(out),
    )  # fmt: skip
    assert rc == 0, stdout + stderr
    records = exported(out)
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))  # in trail order, none doubled
    assert {r["trace_id"] for r in records} == {"trace-1"}
    ops = [r["payload"]["statement"] for r in records if r["kind"] == "op.sql"]
    assert ops == [f"SELECT * FROM loans WHERE id = {i}" for i in range(60, 150)]
    assert min(seqs) <= SIZE < max(seqs)  # archived records and live ones
    rc, stdout, stderr = run_cli("verify", "--bundle", str(out))
    assert rc == 0, stdout + stderr
    # the whole trail: every record from #1, each once, and the bundle verifies
    whole = tmp_path / "all.jsonl"
    rc, stdout, stderr = run_cli(
        "export", "--archive", str(pg.archive), "--pg", pg.reader, "-o", str(whole)
    )
    assert rc == 0, stdout + stderr
    seqs = [r["seq"] for r in exported(whole)]
    (last,) = pg.sql("SELECT max(seq) FROM events")[0]
    assert seqs == list(range(1, last + 1))
    rc, stdout, stderr = run_cli("verify", "--bundle", str(whole))
    assert rc == 0, stdout + stderr
    # filters as with --db: a time window before anything was written holds nothing
    none = tmp_path / "none.jsonl"
    rc, stdout, stderr = run_cli(
        "export", "--archive", str(pg.archive), "--pg", pg.reader,
        "--until", "2000-01-01T00:00:00Z", "-o", str(none),
    )  # fmt: skip
    assert rc == 0, stdout + stderr
    assert exported(none) == []
    # by user: the identities of archived records are the live trail's and the archive's
    for user, want in (("alice", 150), ("bob", 0)):
        rc, stdout, stderr = run_cli(
            "export", "--archive", str(pg.archive), "--pg", pg.reader, "--user", user,
            "-o", str(none),
        )  # fmt: skip
        assert rc == 0, stdout + stderr
        assert sum(r["kind"] == "op.sql" for r in exported(none)) == want


def test_show_lists_and_shows_archived_traces(trail):
    pg = trail
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader)
    assert rc == 0, stdout + stderr
    assert "old-trace" in stdout and "trace-1" in stdout
    # a trace whose records are all archived: every event, by a prefix of its id
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader, "old-tra")
    assert rc == 0, stdout + stderr
    assert stdout.startswith("trace old-trace")
    for i in (0, 59):
        assert f"id = {i}" in stdout
    # one that runs on in the live trail: archived and live events, each once
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader, "trace-1")
    assert rc == 0, stdout + stderr
    for i in range(60, 150):
        assert stdout.count(f"id = {i} ") + stdout.count(f"id = {i}\n") == 1, i
    # by user and by notebook, as with --db
    rc, stdout, stderr = run_cli(
        "show", "--archive", str(pg.archive), "--pg", pg.reader, "--notebook", "analysis",
        "--user", "alice",
    )  # fmt: skip
    assert rc == 0, stdout + stderr
    assert "old-trace" in stdout and "trace-1" in stdout
    rc, stdout, stderr = run_cli(
        "show", "--archive", str(pg.archive), "--pg", pg.reader, "--user", "bob"
    )
    assert rc == 0 and "no traces" in stdout, stdout + stderr
    # --pg alone shows the live part only
    rc, stdout, stderr = run_cli("show", "--pg", pg.reader, "trace-1")
    assert rc == 0, stdout + stderr
    assert "id = 60" not in stdout and "id = 149" in stdout


def test_an_edited_segment_is_refused(trail, tmp_path):
    pg = trail
    edit_segment(pg.archive / FIRST, 5)
    out = tmp_path / "x.jsonl"
    for args in (
        ("export", "--archive", str(pg.archive), "--pg", pg.reader, "-o", str(out)),
        ("show", "--archive", str(pg.archive), "--pg", pg.reader),
        ("show", "--archive", str(pg.archive), "--pg", pg.reader, "old-trace"),
    ):
        rc, stdout, stderr = run_cli(*args)
        assert rc == 2, stdout + stderr
        assert "does not verify" in stderr and FIRST in stderr
        assert "Traceback" not in stderr and "old-trace" not in stdout
    assert not out.exists()


def test_an_archive_short_of_the_live_trail_is_refused(trail, tmp_path):
    pg = trail
    # the archive as it was before its last segment: it ends before the live trail begins
    short = tmp_path / "short"
    short.mkdir()
    rc, stdout, stderr = run_cli(
        "export", "--archive", str(short), "--pg", pg.reader, "-o", str(tmp_path / "x.jsonl")
    )
    assert rc == 2, stdout + stderr
    assert "holds no segment" in stderr
    pg2 = setup_second_partition_archived(pg)
    for name in (FIRST, FIRST.replace(".parquet", ".json")):
        shutil.copy(pg2.archive / name, short / name)
    rc, stdout, stderr = run_cli("show", "--archive", str(short), "--pg", pg.reader)
    assert rc == 2, stdout + stderr
    assert "missing from the archive" in stderr
    assert "#101..#200" in stderr


def setup_second_partition_archived(pg):
    """`pg` with its second partition archived and dropped too."""
    store = open_store(pg)
    store.append_many([sql_event(i, trace="trace-1") for i in range(150, 260)])
    archive(store, pg)
    store.close()
    assert pg.sql("SELECT min(seq) FROM events") == [(2 * SIZE + 1,)]
    return pg


def test_a_live_row_that_differs_from_its_archived_copy_is_refused(pg, pg_role_names, tmp_path):
    pg = setup_trail(pg, pg_role_names, tmp_path)
    store = open_store(pg)
    store.append_many([sql_event(i) for i in range(130)])
    archive(store, pg, retention=None)  # archived, kept in the live trail
    store.close()
    assert pg.sql("SELECT min(seq) FROM events") == [(1,)]
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader, "trace-1")
    assert rc == 0, stdout + stderr
    assert stdout.count("id = 7\n") + stdout.count("id = 7 ") == 1  # not doubled
    # a superuser rewrites a row the archive holds too (trigger off): refused, named
    pg.tamper("UPDATE events SET hash = sha256(hash) WHERE seq = 7")
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader, "trace-1")
    assert rc == 2, stdout + stderr
    assert "record #7" in stderr and "differs from the archived one" in stderr


def test_source_options_with_archive(trail, tmp_path):
    pg = trail
    out = str(tmp_path / "x.jsonl")
    for cmd in (("export", "-o", out), ("show",)):
        rc, stdout, stderr = run_cli(
            *cmd, "--archive", str(pg.archive), "--pg", pg.reader, "--db", str(tmp_path / "t")
        )
        assert rc == 2 and "give one of" in stderr, stdout + stderr
        rc, stdout, stderr = run_cli(
            *cmd, "--archive", str(pg.archive), "--url", "http://127.0.0.1:9", "--token", "t"
        )
        assert rc == 2 and "not --url" in stderr, stdout + stderr


def test_errors_name_no_password_and_a_role_without_grants_is_told(trail, tmp_path):
    pg = trail
    # no server there: the DSN's password is never printed
    params = conninfo_to_dict(pg.reader)
    params.update(password="s3cret-pw-x", port="1")
    rc, stdout, stderr = run_cli(
        "show", "--archive", str(pg.archive), "--pg", make_conninfo(**params)
    )
    assert rc == 2, stdout + stderr
    assert "s3cret-pw-x" not in stdout + stderr and "cannot connect" in stderr
    # a role that may log in but not read the trail: a clear error, no traceback
    name = "ja_nobody_" + tmp_path.name[-8:].replace("-", "_")
    pg.sql(f'CREATE ROLE "{name}" LOGIN')
    try:
        params = conninfo_to_dict(role_dsn(pg, name))
        params["password"] = "s3cret-pw-y"
        rc, stdout, stderr = run_cli(
            "export", "--archive", str(pg.archive), "--pg", make_conninfo(**params),
            "-o", str(tmp_path / "x.jsonl"),
        )  # fmt: skip
        assert rc == 2, stdout + stderr
        assert "permission denied" in stderr and "Traceback" not in stderr
        assert "s3cret-pw-y" not in stdout + stderr
    finally:
        pg.sql(f'DROP OWNED BY "{name}"')
        with psycopg.connect(dsn_for(pg.admin, "postgres"), autocommit=True) as con:
            con.execute(f'DROP ROLE "{name}"')


def test_an_edited_identity_snapshot_or_another_trails_archive_is_refused(trail, tmp_path):
    pg = trail
    out = str(tmp_path / "x.jsonl")
    # a superuser renames who ran the live records (trigger off): refused, not shown
    pg.tamper("UPDATE identities SET snapshot = replace(snapshot, 'alice', 'mallory')")
    rc, stdout, stderr = run_cli(
        "export", "--archive", str(pg.archive), "--pg", pg.reader, "-o", out
    )
    assert rc == 2, stdout + stderr
    assert "identity snapshot" in stderr and "was edited" in stderr
    assert "mallory" not in stdout + stderr
    pg.tamper("UPDATE identities SET snapshot = replace(snapshot, 'mallory', 'alice')")
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader)
    assert rc == 0, stdout + stderr
    # the archive of another trail (this trail's id changed under it): refused
    pg.sql("UPDATE meta SET value = 'another-trail' WHERE key = 'trail_id'")
    rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader)
    assert rc == 2, stdout + stderr
    assert "a segment of another trail" in stderr


def test_an_export_while_the_collector_appends_is_one_moment(trail, tmp_path):
    """The writer appends all along: the export holds every record from #1 to the last of
    one snapshot, each once, and its bundle verifies."""
    pg = trail
    store = open_store(pg)
    done, started = threading.Event(), threading.Event()
    appended = []

    def append() -> None:
        i = 1000
        while not done.is_set():
            store.append_many([sql_event(j, trace="trace-2") for j in range(i, i + 10)])
            store.flush()
            appended.append(i)
            started.set()
            i += 10

    writer = threading.Thread(target=append)
    writer.start()
    try:
        assert started.wait(60)
        out = tmp_path / "busy.jsonl"
        rc, stdout, stderr = run_cli(
            "export", "--archive", str(pg.archive), "--pg", pg.reader, "-o", str(out)
        )
    finally:
        done.set()
        writer.join()
        store.close()
    assert rc == 0, stdout + stderr
    seqs = [r["seq"] for r in exported(out)]
    assert seqs == list(range(1, seqs[-1] + 1))
    assert len(appended) > 1  # the writer was at work meanwhile
    rc, stdout, stderr = run_cli("verify", "--bundle", str(out))
    assert rc == 0, stdout + stderr


def test_odd_trace_references_get_a_clear_error(trail, tmp_path):
    pg = trail
    for ref in ("no-such-trace", "trace\x1b[2J-1", "tr\udcffce-1", "%", "' OR 1=1 --"):
        rc, stdout, stderr = run_cli("show", "--archive", str(pg.archive), "--pg", pg.reader, ref)
        assert rc == 2, (ref, stdout + stderr)
        assert "Traceback" not in stderr and "\x1b" not in stdout + stderr

"""Retention and archive on real trail files: segments to Parquet in a directory and in a real
S3-compatible server with Object Lock (moto's server mode), read back, verified, removed from
the live trail; archive + live trail verified, exported and shown as one; an edited, deleted
or reordered segment caught and named; an archiver killed -9 at each step loses nothing."""

import json
import shutil
import socket

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.servers import run_cli
from helpers.trail import BOB, sql_event

from jupyter_audit.cli import main as cli_main

N = 300  # records before the archive run; checkpoints every 100


@pytest.fixture(scope="module")
def base_trail(tmp_path_factory):
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    d = tmp_path_factory.mktemp("base")
    masker = MaskingEngine(load_or_create_key(d / "masking.key"))
    key = SigningKey.load_or_create(d / "signing-key.pem")
    with Writer(d / "trail.duckdb", masker, key, checkpoint_every=100) as w:
        for start in range(0, N, 50):  # several traces, one of them by BOB
            trace = f"trace-{start // 100}"
            w.append_many(
                [
                    sql_event(i, trace=trace, who=BOB if i % 10 == 0 else None)
                    for i in range(start, start + 50)
                ]
            )
    return d


@pytest.fixture
def trail(base_trail, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(base_trail, d)
    return d


def cli(capsys, *args):
    capsys.readouterr()
    code = cli_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def archive(trail, capsys, *extra):
    return cli(
        capsys,
        "archive",
        "--db",
        str(trail / "trail.duckdb"),
        "--to",
        str(trail / "archive"),
        "--after",
        "0d",
        "--segment-rows",
        "100",
        *extra,
    )


def verify_json(capsys, *args):
    code, out, err = cli(capsys, "verify", "--json", *args)
    assert out, err
    return code, json.loads(out)


def live_seqs(trail):
    con = duckdb.connect(str(trail / "trail.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    finally:
        con.close()


def all_records(trail, capsys, tmp_path):
    out = tmp_path / "all.jsonl"
    code, _, err = cli(
        capsys,
        "export",
        "--db",
        str(trail / "trail.duckdb"),
        "--archive",
        str(trail / "archive"),
        "-o",
        str(out),
    )
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_archive_verify_remove_and_read_across(trail, capsys, tmp_path):
    db = str(trail / "trail.duckdb")
    inode_before = (trail / "trail.duckdb").stat().st_ino
    before = live_seqs(trail)
    code, out, err = archive(trail, capsys)
    assert code == 0, err
    names = sorted(p.name for p in (trail / "archive").glob("*.parquet"))
    assert len(names) >= 3 and "removed from the live trail" in out
    # the live trail lost exactly the archived records, recorded as trail.archived
    after = live_seqs(trail)
    archived_upto = after[0] - 1
    assert archived_upto >= 300 and after == [s for s in range(after[0], after[-1] + 1)]
    con = duckdb.connect(db, read_only=True)
    recorded = [
        json.loads(r)["payload"]
        for (r,) in con.execute(
            "SELECT record FROM events WHERE kind = 'trail.archived' ORDER BY seq"
        ).fetchall()
    ]
    con.close()
    assert [p["file"] for p in recorded] == names
    assert recorded[-1]["last_seq"] == archived_upto
    # a fresh file was swapped in (rows deleted in place would not shrink it; the sizes
    # are measured by benchmarks/bench_storage.py)
    assert (trail / "trail.duckdb").stat().st_ino != inode_before
    # the live trail alone, the archive alone, and both as one chain
    code, r = verify_json(capsys, "--db", db)
    assert code == 0 and r["ok"], r
    code, r = verify_json(capsys, "--archive", str(trail / "archive"))
    assert code == 0 and r["ok"] and r["last_seq"] == archived_upto, r
    code, r = verify_json(capsys, "--archive", str(trail / "archive"), "--db", db, "--deep")
    assert code == 0 and r["ok"], r
    assert r["events"] == after[-1] and r["checkpoint"]["seq"] > archived_upto
    # export and show read across archive and live trail
    records = all_records(trail, capsys, tmp_path)
    assert [rec["seq"] for rec in records] == list(range(1, after[-1] + 1))
    new_kinds = {"trail.archived", "trail.integrity", "checkpoint"}
    assert all(rec["seq"] in before or rec["kind"] in new_kinds for rec in records)
    bob = [rec for rec in records if rec["identity"] and rec["identity"]["username"] == "bob"]
    assert bob and all(rec["seq"] <= archived_upto for rec in bob)
    code, out, err = cli(capsys, "show", "--db", db, "--archive", str(trail / "archive"), "trace-0")
    assert code == 0, err
    assert "SELECT * FROM loans WHERE id = 1" in out
    # the export bundle proves archived records against the signed checkpoint
    code, out, err = cli(capsys, "verify", "--bundle", str(tmp_path / "all.jsonl"))
    assert code == 0, out + err
    # the live trail alone still proves its records (the archived part's Merkle subtrees are
    # in its trail.archived events)
    live_out = tmp_path / "live.jsonl"
    code, _, err = cli(capsys, "export", "--db", db, "-o", str(live_out))
    assert code == 0, err
    assert json.loads(live_out.read_text().splitlines()[0])["seq"] == after[0]
    code, out, err = cli(capsys, "verify", "--bundle", str(live_out))
    assert code == 0, out + err
    # a second run finds nothing new to remove and leaves the trail verifiable
    code, out, err = archive(trail, capsys)
    assert code == 0, err
    code, r = verify_json(capsys, "--archive", str(trail / "archive"), "--db", db)
    assert code == 0 and r["ok"], r


@pytest.mark.parametrize("archived", [1, 5, 6, 8, 13, 64, 100])
def test_proofs_after_an_archived_prefix_equal_the_full_trees(archived):
    from hashlib import sha256

    from jupyter_audit.store.merkle import MerkleFrontier, inclusion_proofs

    leaves = [sha256(bytes([i])).digest() for i in range(130)]
    frontier = MerkleFrontier()
    for leaf in leaves[:archived]:
        frontier.append(leaf)

    class After:
        def __len__(self):
            return len(leaves)

        def __getitem__(self, i):
            if i < archived:
                raise IndexError(i)
            return leaves[i]

    wanted = list(range(archived, len(leaves)))
    assert inclusion_proofs(After(), wanted, frontier.blocks()) == inclusion_proofs(leaves, wanted)


def test_retention_keeps_archived_segments_in_the_live_trail_until_due(trail, capsys):
    code, out, err = archive(trail, capsys, "--retention", "3650d", "--now")
    assert code == 0, err
    assert list((trail / "archive").glob("*.parquet")) and "removed" not in out
    assert live_seqs(trail)[0] == 1
    # ten years on, the same segments leave the live trail (nothing archived twice)
    names = sorted(p.name for p in (trail / "archive").iterdir())
    code, out, err = archive(trail, capsys, "--retention", "3650d", "--now", "2040-01-01")
    assert code == 0, err
    assert "removed from the live trail" in out and live_seqs(trail)[0] > 1
    kept = sorted(p.name for p in (trail / "archive").iterdir())
    assert kept[: len(names)] == names
    code, r = verify_json(
        capsys, "--archive", str(trail / "archive"), "--db", str(trail / "trail.duckdb")
    )
    assert code == 0 and r["ok"], r


def test_bad_archive_settings_are_refused_clearly(trail, capsys):
    code, _, err = archive(trail, capsys, "--retention", "soon")
    assert code == 2 and "not an age" in err
    code, _, err = cli(capsys, "verify", "--archive", str(trail / "nowhere"))
    assert code == 2 and "no archive directory" in err
    code, _, err = cli(capsys, "verify", "--archive", "ftp://x/y")
    assert code == 2 and "s3://bucket/prefix" in err


@pytest.fixture
def archived(trail, capsys):
    code, _, err = archive(trail, capsys)
    assert code == 0, err
    return trail


def segments(trail):
    return sorted((trail / "archive").glob("*.parquet"))


def test_an_edited_segment_is_named(archived, capsys):
    seg = segments(archived)[1]
    table = pq.read_table(seg)
    records = table.column("record").to_pylist()
    records[5] = records[5].replace(b"SELECT * FROM loans", b"SELECT * FROM leans")
    col = table.column_names.index("record")
    edited = table.set_column(col, "record", pa.array(records, pa.binary()))
    pq.write_table(edited, seg, compression="zstd")
    for extra in ([], ["--db", str(archived / "trail.duckdb")]):
        code, r = verify_json(capsys, "--archive", str(archived / "archive"), *extra)
        assert code == 1, r
        assert seg.name in r["detail"] and r["problem"] == "an archived segment was edited"
        first = int(seg.name.split("-")[1])
        assert f"#{first}.." in r["detail"]
        assert any(f"record #{first + 5} or" in p["detail"] for p in r["problems"]), r["problems"]


def test_a_deleted_segment_is_named(archived, capsys):
    gone = segments(archived)[1]
    gone.unlink()
    lo, hi = (int(x) for x in gone.name.removesuffix(".parquet").split("-")[1:])
    code, r = verify_json(capsys, "--archive", str(archived / "archive"))
    assert code == 1 and r["first_bad_seq"] == lo, r
    assert f"records #{lo}..#{hi} are missing" in r["detail"]
    code, r = verify_json(
        capsys, "--archive", str(archived / "archive"), "--db", str(archived / "trail.duckdb")
    )
    assert code == 1 and any(gone.name in p["detail"] for p in r["problems"]), r


def test_two_reordered_segments_are_named(archived, capsys):
    a, b = segments(archived)[0:2]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    code, r = verify_json(capsys, "--archive", str(archived / "archive"))
    assert code == 1, r
    assert r["problem"] in (
        "archived segments renamed or reordered",
        "an archived segment was edited",
    )
    details = " ".join(p["detail"] for p in r["problems"])
    assert "renamed or reordered" in details and a.name in details and b.name in details


def test_a_token_planted_after_archiving_is_caught_in_the_live_trail_alone(archived, capsys):
    con = duckdb.connect(str(archived / "trail.duckdb"))
    con.execute(
        "INSERT INTO service_tokens (token_id, secret_hash, service_account, owner, created_at, "
        "created_by) VALUES ('tok1', 'x', 'etl', 'mallory', now()::TIMESTAMP, 'mallory')"
    )
    con.close()
    code, r = verify_json(capsys, "--db", str(archived / "trail.duckdb"))
    assert code == 1 and "service token tok1" in r["detail"], r


def test_a_live_trail_cut_at_its_head_without_an_archive_record_is_caught(trail, capsys):
    con = duckdb.connect(str(trail / "trail.duckdb"))
    con.execute("DELETE FROM events WHERE seq <= 100")
    con.close()
    code, r = verify_json(capsys, "--db", str(trail / "trail.duckdb"))
    assert code == 1 and r["first_bad_seq"] == 1 and "no signed trail.archived" in r["detail"], r


# ---------------------------------------------------------------------------- S3 + Object Lock
@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)


def test_s3_archive_with_object_lock(trail, capsys, s3, aws_env, tmp_path):
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="audit-archive", ObjectLockEnabledForBucket=True)
    cfg = tmp_path / "jupyter_server_config.json"
    cfg.write_text(
        json.dumps(
            {
                "AuditApp": {
                    "archive_path": "s3://audit-archive/team-a",
                    "archive_endpoint_url": s3,
                    "archive_after": "0d",
                    "archive_lock_for": "30d",
                }
            }
        )
    )
    db = str(trail / "trail.duckdb")
    code, out, err = cli(
        capsys, "archive", "--db", db, "--config", str(cfg), "--segment-rows", "100"
    )
    assert code == 0, err
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="audit-archive")["Contents"]]
    parquet = [k for k in keys if k.endswith(".parquet")]
    assert parquet and all(k.startswith("team-a/segment-") for k in keys)
    head = client.head_object(Bucket="audit-archive", Key=parquet[0])
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]
    # compliance mode: the archived version cannot be deleted before its date
    version = head["VersionId"]
    with pytest.raises(client.exceptions.ClientError):
        client.delete_object(Bucket="audit-archive", Key=parquet[0], VersionId=version)
    assert live_seqs(trail)[0] > 1
    url = ["--archive", "s3://audit-archive/team-a", "--endpoint-url", s3]
    code, r = verify_json(capsys, *url)
    assert code == 0 and r["ok"], r
    code, r = verify_json(capsys, *url, "--db", db)
    assert code == 0 and r["ok"], r
    out_file = tmp_path / "all.jsonl"
    code, _, err = cli(capsys, "export", "--db", db, *url, "-o", str(out_file))
    assert code == 0, err
    seqs = [json.loads(line)["seq"] for line in out_file.read_text().splitlines()]
    assert seqs == list(range(1, seqs[-1] + 1))
    # the archiver never replaces an object: a second write of other bytes is refused
    from jupyter_audit.store.archive_target import ArchiveError, S3Target

    target = S3Target("s3://audit-archive/team-a", s3)
    with pytest.raises(ArchiveError, match="never replaced"):
        target.put(parquet[0].split("/")[1], b"other bytes")
    # an edited object (a new version over the locked one, by someone else) is named
    data = client.get_object(Bucket="audit-archive", Key=parquet[0])["Body"].read()
    client.put_object(Bucket="audit-archive", Key=parquet[0], Body=data + b"\0")
    code, r = verify_json(capsys, *url, "--db", db)
    assert code == 1 and parquet[0].split("/")[1] in r["detail"], r


# ---------------------------------------------------------------------------- kill -9
KILL_POINTS = ("segment_written", "manifest_written", "recorded", "fresh_written")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_an_archiver_killed_mid_way_loses_nothing(trail, capsys, tmp_path, point):
    import subprocess
    import sys

    from helpers.servers import REPO

    db = trail / "trail.duckdb"
    before = live_seqs(trail)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "helpers" / "archive_stop.py"),
            point,
            str(db),
            str(trail / "archive"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    line = proc.stdout.readline()  # the helper stops at `point` and says so
    assert line.strip() == f"stopped at {point}", line
    proc.kill()
    proc.wait()
    # nothing lost: the live trail verifies and still holds every record it held
    code, r = verify_json(capsys, "--db", str(db))
    assert code == 0 and r["ok"], r
    assert live_seqs(trail)[: len(before)] == before
    # the next run finishes the job: archive + live trail are one intact chain
    code, _, err = archive(trail, capsys)
    assert code == 0, err
    code, r = verify_json(capsys, "--archive", str(trail / "archive"), "--db", str(db))
    assert code == 0 and r["ok"], r
    assert live_seqs(trail)[0] > 1
    records = all_records(trail, capsys, tmp_path)
    assert [rec["seq"] for rec in records] == list(range(1, records[-1]["seq"] + 1))
    assert not (trail / "trail.duckdb.compact").exists()


def test_archive_cli_as_a_process(trail):
    code, out, err = run_cli(
        "archive",
        "--db",
        str(trail / "trail.duckdb"),
        "--to",
        str(trail / "archive"),
        "--after",
        "0d",
    )
    assert code == 0, err
    code, out, err = run_cli(
        "verify", "--archive", str(trail / "archive"), "--db", str(trail / "trail.duckdb")
    )
    assert code == 0 and out.startswith("OK"), out + err


def test_compaction_refuses_to_drop_records_no_archive_record_covers(make_writer, trail_dir):
    from jupyter_audit.store.errors import TrailError

    w = make_writer(checkpoint_every=100)
    w.append_many([sql_event(i) for i in range(150)])
    with pytest.raises(TrailError, match="does not verify"):
        w.compact(100)  # nothing says records #1..#100 are archived
    count, first, last = (
        w.cursor().execute("SELECT count(*), min(seq), max(seq) FROM events").fetchone()
    )
    assert first == 1 and count == last >= 150
    assert not (trail_dir / "trail.duckdb.compact").exists()
    w.append_many([sql_event(i) for i in range(150, 160)])  # the writer goes on
    assert w.verify().ok

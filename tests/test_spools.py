"""Spool files kernels left behind: ingested in bounded chunks, exactly once, and kept for a
later attempt (never forgotten) when the trail cannot take them now."""

import json
import os

import pytest

from jupyter_audit.server.ingest.spools import CHUNK, ingest_spools
from jupyter_audit.server.recorder import Recorder


def write_spool(path, n, start=0):
    with open(path, "w") as f:
        for i in range(start, start + n):
            event = {
                "kind": "op.shell",
                "event_id": f"k1-{i}",
                "op_index": i,
                "payload": {"command": f"echo {i}", "exit_code": 0},
            }
            f.write(json.dumps(event) + "\n")
        f.write("not json\n")


@pytest.fixture
def runtime(tmp_path):
    d = tmp_path / "runtime"
    d.mkdir()
    return d


def stored(writer) -> int:
    """Spooled operations of no known cell are stored as op.unattributed."""
    writer.flush()
    return (
        writer.cursor()
        .execute("SELECT count(*) FROM events WHERE kind = 'op.unattributed'")
        .fetchone()[0]
    )


def test_a_big_backlog_is_ingested_in_chunks_exactly_once(make_writer, runtime):
    w = make_writer()
    audit = Recorder(w)
    n = 2 * CHUNK + 7
    write_spool(runtime / "audit-spool-k1.jsonl", n)
    assert ingest_spools(audit, runtime, managed=set()) == n
    assert stored(w) == n and not list(runtime.iterdir())
    rejected = w.cursor().execute("SELECT count(*) FROM events WHERE kind = 'security.rejected'")
    assert rejected.fetchone()[0] == 1  # the malformed line, said once
    # the same events again (a retried file): nothing stored twice
    write_spool(runtime / "audit-spool-k1.jsonl", 10)
    assert ingest_spools(audit, runtime, managed=set()) == 10
    assert stored(w) == n


def test_a_spool_that_cannot_be_stored_now_is_kept_and_retried(make_writer, runtime):
    w = make_writer()
    w.close()  # the trail cannot accept events
    write_spool(runtime / "audit-spool-k1.jsonl", 100)
    audit = Recorder(w)
    assert ingest_spools(audit, runtime, managed=set()) == 0
    kept = list(runtime.iterdir())
    assert len(kept) == 1 and ".retry-" in kept[0].name
    w2 = make_writer()
    audit.writer = w2
    assert ingest_spools(audit, runtime, managed=set()) == 100
    assert stored(w2) == 100 and not list(runtime.iterdir())


def test_a_spool_left_mid_ingest_by_a_dead_server_is_taken_over(make_writer, runtime):
    w = make_writer()
    dead = 2**22 + 12345  # above this machine's pid range: no such process
    write_spool(runtime / f"audit-spool-k1.jsonl.ingesting-{dead}-0", 50)
    write_spool(runtime / f"audit-spool-k2.jsonl.ingesting-{os.getppid()}-0", 5)  # alive
    audit = Recorder(w)
    assert ingest_spools(audit, runtime, managed=set()) == 50
    assert [p.name for p in runtime.iterdir()] == [
        f"audit-spool-k2.jsonl.ingesting-{os.getppid()}-0"
    ]

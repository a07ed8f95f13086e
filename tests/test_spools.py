"""Spool files kernels left behind: ingested in bounded chunks, exactly once, and kept for a
later attempt (never forgotten) when the trail cannot take them now."""

import json
import os

import pytest

from jupyter_audit.kernel.client import spool_line
from jupyter_audit.server.ingest.secrets import KernelSecrets
from jupyter_audit.server.ingest.spools import CHUNK, ingest_spools
from jupyter_audit.server.recorder import Recorder

KEY = bytes(range(32))  # the server's kernel key (kernel.key beside the trail)


def write_spool(path, n, start=0, key=KEY):
    """What the kernel `kernel_id` (from the file name) spools: each line with the HMAC its
    secret gives it; and one line of garbage, with a valid HMAC."""
    kernel_id = path.name.removeprefix("audit-spool-").partition(".jsonl")[0]
    secret = KernelSecrets(key).secret_of(kernel_id)
    with open(path, "wb") as f:
        for i in range(start, start + n):
            event = {
                "kind": "op.shell",
                "event_id": f"{kernel_id}-{i}",
                "op_index": i,
                "payload": {"command": f"echo {i}", "exit_code": 0},
            }
            f.write(spool_line(json.dumps(event), secret))
        f.write(spool_line("not json", secret))


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
    audit = Recorder(w, kernel_key=KEY)
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
    audit = Recorder(w, kernel_key=KEY)
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
    audit = Recorder(w, kernel_key=KEY)
    assert ingest_spools(audit, runtime, managed=set()) == 50
    assert [p.name for p in runtime.iterdir()] == [
        f"audit-spool-k2.jsonl.ingesting-{os.getppid()}-0"
    ]


def rejections(writer) -> list[str]:
    writer.flush()
    rows = writer.cursor().execute(
        "SELECT record FROM events WHERE kind = 'security.rejected' ORDER BY seq"
    )
    return [json.loads(r)["payload"]["reason"] for (r,) in rows.fetchall()]


def test_a_spool_file_not_written_by_its_kernel_is_refused_and_recorded(make_writer, runtime):
    """Anyone with the OS account can drop a file named like a kernel's spool into the
    runtime directory: only lines with that kernel's HMAC are taken."""
    w = make_writer()
    audit = Recorder(w, kernel_key=KEY)
    # no HMAC at all (what a spool looked like before), a wrong key, another kernel's lines
    events = [
        json.dumps({"kind": "op.shell", "event_id": f"x-{i}", "payload": {}}) for i in range(3)
    ]
    (runtime / "audit-spool-k1.jsonl").write_text(events[0] + "\n")
    write_spool(runtime / "audit-spool-k2.jsonl", 4, key=bytes(32))
    write_spool(runtime / "audit-spool-k3.jsonl", 2)
    k3 = (runtime / "audit-spool-k3.jsonl").read_bytes()
    (runtime / "audit-spool-k4.jsonl").write_bytes(k3)  # k3's lines under k4's name
    # a file mixing this kernel's lines with others: its own taken, the rest refused
    mixed = (runtime / "audit-spool-k3.jsonl").read_bytes() + events[1].encode() + b"\n"
    (runtime / "audit-spool-k3.jsonl").write_bytes(mixed)
    assert ingest_spools(audit, runtime, managed=set()) == 2  # k3's own two
    assert stored(w) == 2
    reasons = rejections(w)
    assert [r.split()[0] for r in reasons if "not written by that kernel" in r] == ["1"]
    # files with no line this server can check (forged, or another server's kernel, whose
    # key is not ours) are said once and left in place, never deleted
    left = sorted(p.name for p in runtime.iterdir())
    assert left == ["audit-spool-k1.jsonl", "audit-spool-k2.jsonl", "audit-spool-k4.jsonl"]
    assert sum("no line this server can check" in r for r in reasons) == 3
    assert ingest_spools(audit, runtime, managed=set()) == 0  # looked at again: said once
    assert sum("no line this server can check" in r for r in rejections(w)) == 3

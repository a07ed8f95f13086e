"""Prepare workers: big batches are validated and masked in worker processes, with the same
records, errors and order as in-process, and a dying worker costs speed, never events."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
from helpers.servers import REPO
from helpers.trail import ALICE, sql_event

from jupyter_audit.events import EventValidationError
from jupyter_audit.store.pool import MIN_BATCH, PreparePool
from jupyter_audit.store.records import Prepared, prepare
from jupyter_audit.store.verify import verify_path


def mixed_batch(n: int) -> list:
    """Valid events of several kinds, with PII to mask, and malformed ones between them."""
    out = []
    for i in range(n):
        if i % 17 == 5:
            out.append({"kind": "op.nope", "payload": {}})
        elif i % 17 == 11:
            out.append({"kind": "op.sql", "payload": {"driver": "x", "statement": 5}})
        elif i % 3 == 0:
            out.append(
                {
                    "kind": "op.http",
                    "identity": ALICE,
                    "trace_id": "trace-1",
                    "event_id": f"ev-{i}",
                    "payload": {
                        "method": "POST",
                        "url": f"https://api.example.org/v1/u/{i}?email=carol{i}@example.org",
                        "status": 200,
                        "request_body": '{"card": "4111 1111 1111 1111", "password": "hunter2"}',
                    },
                }
            )
        else:
            out.append({**sql_event(i), "event_id": f"ev-{i}"})
    return out


def _worker_pids(pool: PreparePool) -> list[int]:
    return list(pool._executor._processes) if pool._executor else []


def test_workers_prepare_exactly_what_the_server_would(make_writer):
    w = make_writer(prepare_workers=1)
    events = mixed_batch(3 * MIN_BATCH)
    pooled = w.prepare_many(events)
    assert _worker_pids(w.pool), "a batch this size goes to a worker"
    assert len(pooled) == len(events)
    for event, got in zip(events, pooled, strict=True):
        try:
            want = prepare(event, w.masker, w.max_field_bytes)
        except EventValidationError as e:
            assert isinstance(got, EventValidationError) and str(got) == str(e)
            continue
        assert got.to_wire() == want.to_wire()
        assert want.to_wire() == tuple(getattr(want, name) for name in Prepared._WIRE)
        assert "carol" not in repr(got.parts) and "hunter2" not in repr(got.parts)
    # submitted, they are stored, chained and verifiable like any other records
    ok = [p for p in pooled if not isinstance(p, EventValidationError)]
    results = w.submit_batch(ok).result(timeout=60)
    assert [r.seq for r in results] == list(range(results[0].seq, results[0].seq + len(ok)))
    w.close()
    assert verify_path(w.db_path).ok


def test_small_batches_stay_in_process(make_writer):
    w = make_writer(prepare_workers=1)
    assert len(w.prepare_many([sql_event(i) for i in range(MIN_BATCH - 1)])) == MIN_BATCH - 1
    assert w.pool._executor is None


def test_submit_batch_of_raw_events_is_all_or_none(make_writer):
    w = make_writer(prepare_workers=1)
    events = [sql_event(i) for i in range(2 * MIN_BATCH)]
    events[100] = {"kind": "op.sql", "payload": {"driver": "x"}}
    try:
        w.submit_batch(events)
    except EventValidationError as e:
        assert "payload.statement is required" in str(e)
    else:
        raise AssertionError("a malformed event must refuse the batch")
    del events[100]
    assert len(w.submit_batch(events).result(timeout=60)) == len(events)


def test_a_dying_worker_costs_speed_not_events(make_writer, caplog):
    w = make_writer(prepare_workers=1)
    events = [sql_event(i) for i in range(4 * MIN_BATCH)]
    w.prepare_many(events)
    (pid,) = _worker_pids(w.pool)
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.pool"):
        again = w.prepare_many(events)  # the broken pool: prepared in-process instead
    assert "prepared in-process" in caplog.text
    assert all(not isinstance(p, EventValidationError) for p in again) and len(again) == len(events)
    later = w.prepare_many(events)  # and the next big batch gets a fresh worker
    assert _worker_pids(w.pool) and _worker_pids(w.pool) != [pid]
    results = w.submit_batch(again + later).result(timeout=60)
    assert len(results) == 2 * len(events)
    w.close()
    con = duckdb.connect(str(w.db_path), read_only=True)
    stored = con.execute("SELECT count(*) FROM events WHERE kind = 'op.sql'").fetchone()[0]
    con.close()
    assert stored == 2 * len(events)
    assert verify_path(w.db_path).ok


def test_closing_the_writer_stops_its_workers(make_writer):
    w = make_writer(prepare_workers=2)
    w.prepare_many([sql_event(i) for i in range(4 * MIN_BATCH)])
    pids = _worker_pids(w.pool)
    assert len(pids) == 2
    w.close()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # reaped by the executor at shutdown; a zombie would still answer kill(0)
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split()[2] == "Z", f"worker {pid} still running"


def test_workers_end_with_a_server_killed_outright(tmp_path):
    """kill -9 of the server process leaves no prepare worker behind, waiting forever."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from helpers.trail import sql_event
        from jupyter_audit.masking import MaskingEngine, load_or_create_key
        from jupyter_audit.store.signing import SigningKey
        from jupyter_audit.store.pool import MIN_BATCH
        from jupyter_audit.store.writer import Writer

        d = Path({str(tmp_path)!r})
        masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        w = Writer(d / "trail.duckdb", masker, SigningKey.load_or_create(d / "k.pem"),
                   prepare_workers=2).open()
        w.prepare_many([sql_event(i) for i in range(4 * MIN_BATCH)])
        print(" ".join(map(str, w.pool._executor._processes)), flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=str(REPO / "tests"),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"},
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _running(pid)]
    assert not alive, f"prepare workers {alive} outlived their server"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_masking_key_travels_but_no_cache_does(make_writer):
    import pickle

    w = make_writer(prepare_workers=0)
    w.masker.mask_text("mail carol@example.org please")
    state = pickle.loads(pickle.dumps(w.masker))
    assert len(state._results) == len(state._probation) == 0 and not state._keys
    assert len(state._pseudonyms) == 0
    assert state.mask_text("mail carol@example.org please") == w.masker.mask_text(
        "mail carol@example.org please"
    )


def test_ids_chosen_ahead_are_kept_by_workers_and_in_process(make_writer):
    """`prepare_many(events, event_ids)`: each event gets the id the server chose for it (the
    gateway stamps it on the cell's message), whichever side prepares it; not a client id."""
    w = make_writer(prepare_workers=1)
    for n in (MIN_BATCH - 1, 2 * MIN_BATCH):
        ids = [os.urandom(16).hex() for _ in range(n)]
        got = w.prepare_many([sql_event(i) for i in range(n)], ids)
        assert [p.event_id for p in got] == ids
        assert not any(p.client_event for p in got)
    assert _worker_pids(w.pool), "the bigger batch went to a worker"

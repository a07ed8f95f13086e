"""The kernel's transport: batching to a real HTTP endpoint, the 0600 spool while the
server is away, exactly-once delivery by event id, and fail_mode=closed."""

import json
import stat
import time

from jupyter_audit.kernel import context
from jupyter_audit.kernel.client import AuditClient, KernelConfig


def make_client(url, spool_dir, **kw) -> AuditClient:
    config = KernelConfig(
        ingest_url=url,
        kernel_id="kt-1",
        secret="s3",
        spool_dir=spool_dir,
        retry_max=kw.pop("retry_max", 0.3),
    )
    return AuditClient(config, retry_min=0.05, **kw).start()


def emit_n(client, start, n, kind="op.sql"):
    for i in range(start, start + n):
        client.emit(kind, f"msg-{i}", i, time.time_ns(), {"statement": f"select {i}"})


def spooled(client) -> list[dict]:
    if not client.spool_path.exists():
        return []
    # each line: the event, a tab, its HMAC under the kernel's secret
    return [
        json.loads(line.rpartition("\t")[0]) for line in client.spool_path.read_text().splitlines()
    ]


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_batches_are_delivered(ingest_factory, tmp_path):
    ingest = ingest_factory()
    client = make_client(ingest.url, tmp_path)
    try:
        emit_n(client, 1, 1200)
        assert client.flush(10)
        events = ingest.events()
        assert [e["op_index"] for e in events] == list(range(1, 1201))
        assert max(len(b["events"]) for b in ingest.batches) <= 500
        assert len({e["event_id"] for e in events}) == 1200
        assert not client.spool_path.exists()
    finally:
        client.close()


def test_a_closed_keepalive_connection_is_not_an_outage(ingest_factory, tmp_path):
    ingest = ingest_factory(stale_keepalive=True)
    client = make_client(ingest.url, tmp_path)
    try:
        for round_ in range(3):
            emit_n(client, 1 + 10 * round_, 10)
            assert client.flush(5)
            assert client.healthy, client.last_error
        assert [e["op_index"] for e in ingest.events()] == list(range(1, 31))
        assert client.spooled == 0
    finally:
        client.close()


def test_server_down_then_back_exactly_once(ingest_factory, tmp_path, port):
    client = make_client(f"http://127.0.0.1:{port}/jupyter-audit/api/kernel/events", tmp_path)
    try:
        emit_n(client, 1, 50)
        wait_until(lambda: len(spooled(client)) == 50)
        assert not client.healthy and "unreachable" in client.last_error
        mode = stat.S_IMODE(client.spool_path.stat().st_mode)
        assert mode == 0o600
        assert client.spool_path.name == "audit-spool-kt-1.jsonl"
        first_ids = [e["event_id"] for e in spooled(client)]
        emit_n(client, 51, 10)  # more while it is still down: appended in order
        wait_until(lambda: len(spooled(client)) == 60)

        ingest = ingest_factory(port)  # the server comes back on the same address
        wait_until(lambda: len(ingest.events()) >= 60)
        emit_n(client, 61, 5)
        assert client.flush(10)
        events = ingest.events()
        assert [e["op_index"] for e in events] == list(range(1, 66))
        assert [e["event_id"] for e in events[:50]] == first_ids  # same ids as spooled
        assert len({e["event_id"] for e in events}) == 65  # each delivered once
        assert not client.spool_path.exists() and client.healthy
    finally:
        client.close()


def test_unauthorized_is_not_lost(ingest_factory, tmp_path):
    ingest = ingest_factory()
    ingest.status = 401
    client = make_client(ingest.url, tmp_path, retry_max=0.5)
    try:
        emit_n(client, 1, 20)
        wait_until(lambda: len(spooled(client)) == 20)
        assert "401" in client.last_error
        n_requests = len(ingest.requests)
        time.sleep(0.2)
        # it backs off to the slow retry interval instead of hammering the server
        assert len(ingest.requests) <= n_requests + 1
        ingest.status = 200
        wait_until(lambda: len(ingest.events()) == 20)
        assert client.flush(5)
        assert [e["op_index"] for e in ingest.events()] == list(range(1, 21))
    finally:
        client.close()


def test_rejected_events_are_not_retried(ingest_factory, tmp_path):
    ingest = ingest_factory()
    client = make_client(ingest.url, tmp_path)
    try:
        client._id_prefix = "0" * 16
        ingest.reject = {f"{'0' * 16}{2:016x}"}
        emit_n(client, 1, 3)
        assert client.flush(5)
        time.sleep(0.2)
        assert [e["op_index"] for e in ingest.events()] == [1, 2, 3]  # sent once each
        assert client.rejected == 1 and not client.spool_path.exists()
    finally:
        client.close()


def test_queue_overflow_goes_to_the_spool(ingest_factory, tmp_path, port):
    client = make_client(
        f"http://127.0.0.1:{port}/x", tmp_path, queue_max=100, batch_max=50, flush_interval=10
    )
    context.set_cell_running(True)  # as in a cell: the sender is not woken below the bound
    try:
        emit_n(client, 1, 101)  # the sender sleeps 10 s: the 101st event overflows
        assert len(spooled(client)) >= 100
    finally:
        context.set_cell_running(False)
        client.close(timeout=0.5)
    assert sorted(e["op_index"] for e in spooled(client)) == list(range(1, 102))


def test_close_spools_what_it_cannot_send(tmp_path, port):
    client = make_client(f"http://127.0.0.1:{port}/x", tmp_path, flush_interval=10)
    emit_n(client, 1, 3)
    client.close(timeout=1)
    assert [e["op_index"] for e in spooled(client)] == [1, 2, 3]


def test_kernel_spools_while_server_down_then_delivers(
    kernel_factory, ingest_factory, make_env, tmp_path, port
):
    url = f"http://127.0.0.1:{port}/jupyter-audit/api/kernel/events"
    env = make_env(None, tmp_path, kernel_id="spooler")
    env["JUPYTER_AUDIT_INGEST_URL"] = url
    kernel = kernel_factory(env)
    msg_id = kernel.run("import sqlite3; sqlite3.connect(':memory:').execute('select 1')")
    spool = tmp_path / "audit-spool-spooler.jsonl"
    wait_until(
        lambda: (
            spool.exists() and msg_id in spool.read_text() and "cell.finished" in spool.read_text()
        )
    )
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    ingest = ingest_factory(port)
    events = ingest.cell(msg_id)
    assert sorted(e["kind"] for e in events) == ["cell.finished", "cell.started", "op.sql"]
    kernel.run("1")
    wait_until(lambda: not spool.exists())
    ids = [e["event_id"] for e in ingest.events()]
    assert len(ids) == len(set(ids))


def test_fail_mode_closed_refuses_cells_while_the_trail_is_away(
    kernel_factory, ingest_factory, make_env, tmp_path, port
):
    url = f"http://127.0.0.1:{port}/jupyter-audit/api/kernel/events"
    env = make_env(None, tmp_path, kernel_id="closed", JUPYTER_AUDIT_FAIL_MODE="closed")
    env["JUPYTER_AUDIT_INGEST_URL"] = url
    kernel = kernel_factory(env)
    # the first cells may run before the transport has noticed (on a loaded machine, before
    # it has had anything to send); then it must refuse. Each attempt marks itself.
    deadline = time.monotonic() + 15
    attempt = 0
    while True:
        attempt += 1
        msg_id, reply = kernel.execute(f"ran_{attempt} = True")
        if reply["status"] == "error":
            break
        assert time.monotonic() < deadline, "cells were never refused"
        time.sleep(0.2)
    assert reply["ename"] == "AuditTrailUnavailable"
    assert reply["evalue"].startswith("jupyter-audit: the audit trail cannot accept events (")
    assert reply["evalue"].endswith(
        "this server is configured to refuse cells until it can (fail_mode=closed)"
    )
    assert "server unreachable" in reply["evalue"]

    ingest = ingest_factory(port)
    msg_id, reply = kernel.execute(f"assert 'ran_{attempt}' not in globals(), 'a refused cell ran'")
    assert reply["status"] == "ok", reply
    # everything, the refusals included, reached the trail
    ingest.cell(msg_id)
    refused = ingest.wait_for(
        lambda evs: [e for e in evs if e["kind"] == "cell.finished" and e["payload"].get("refused")]
    )
    assert refused[0]["payload"]["error"]["ename"] == "AuditTrailUnavailable"
    assert refused[0]["payload"]["status"] == "error"

"""The collector on each trail store it runs on: the DuckDB Writer (`--db`) and, once its
backend is there and a server is given (JUPYTER_AUDIT_TEST_PG_DSN), PostgreSQL's PgStore
(`--pg`): forwarded records stored once with their origin, the chain verifying, and the
per-server stream rebuilt from the store (`forward_heads`) when the collector restarts."""

from __future__ import annotations

import contextlib
import json

import pytest
from helpers.stores import fresh_database
from helpers.trail import sql_event

from jupyter_audit.collector.protocol import parse_batch, trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder

SERVER = "alice/"


@pytest.fixture(params=["duckdb", "postgresql"])
def open_store(request, tmp_path):
    """open_store() -> the collector's store, opened (again) on the same trail."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey

    state = tmp_path / "state"
    state.mkdir()
    masker = MaskingEngine(load_or_create_key(state / "masking.key"))
    key = SigningKey.load_or_create(state / "signing-key.pem")
    opened = []
    stack = contextlib.ExitStack()
    if request.param == "duckdb":
        from jupyter_audit.store.writer import Writer

        def make():
            return Writer(tmp_path / "collector.duckdb", masker, key)
    else:
        target = stack.enter_context(fresh_database())
        from jupyter_audit.store import pg

        def make():
            return pg.PgStore(target, masker, key, checkpoint_path=state / "collector.checkpoints")

    def open_():
        store = make().open()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - closed by the test already
            pass
    stack.close()


def batch(local, first: int):
    recs = Forwarder(local, "http://unused/", None).read_after(first)
    body = {"server": SERVER, "trail": local.trail_id, "records": recs}
    return parse_batch(json.dumps(body).encode()), recs


def test_forwarded_records_survive_a_collector_restart_once_each(writer_at, open_store):
    local = writer_at("local")
    local.append_many([sql_event(i) for i in range(6)])
    store = open_store()
    collector = Collector(store, Recorder(store))
    b, recs = batch(local, 1)
    assert collector.ingest(SERVER, "alice", b)["acked"] == recs[-1]["seq"]
    store.close()

    store = open_store()  # the collector starts again: where each server stands
    assert store.forward_heads() == {
        SERVER: {"trail": local.trail_id, "seq": recs[-1]["seq"], "hash": recs[-1]["hash"]}
    }
    collector = Collector(store, Recorder(store))
    assert collector.state(SERVER)["seq"] == recs[-1]["seq"]
    local.append_many([sql_event(i) for i in range(6, 9)])
    b2, more = batch(local, recs[-1]["seq"] + 1)
    assert collector.ingest(SERVER, "alice", b2) == {"acked": more[-1]["seq"], "duplicates": 0}
    again, _ = batch(local, 1)  # everything again: all duplicates, nothing stored twice
    assert collector.ingest(SERVER, "alice", again)["duplicates"] == more[-1]["seq"]
    store.flush()
    assert store.trail_stats()["events"] >= more[-1]["seq"]
    kinds = [e["kind"] for e in store.get_trace_events(trace_in_collector(SERVER, "trace-1"))]
    assert kinds.count("op.sql") == 9
    assert store.verify().ok

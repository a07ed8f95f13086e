"""`jupyter audit verify --url <collector> --token <Hub token>`: the collector answers the
verify a server answers (`collector/reading.py` `VerifyHandler`), for auditors only, over its
real web app and trail store; the CLI runs as a real process. Only the Hub's token check
stands in (helpers.collector)."""

from __future__ import annotations

import json

from helpers.collector import CollectorWeb, HubStandIn
from helpers.servers import run_cli
from helpers.trail import sql_event, writer_events

from jupyter_audit.collector.handlers import handlers
from jupyter_audit.collector.protocol import parse_batch
from jupyter_audit.collector.reading import read_handlers
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder

USERS = {
    "carol-token": {"kind": "user", "name": "carol", "groups": ["auditors"], "scopes": []},
    "alice-token": {"kind": "user", "name": "alice", "groups": [], "scopes": []},
}


def collector_with_records(store, local) -> Collector:
    collector = Collector(store, Recorder(store))
    local.append_many([sql_event(i, trace="alice-1") for i in range(6)])
    local.flush()
    recs = Forwarder(local, "http://unused/", None).read_after(1)
    body = {"server": "alice/", "trail": local.trail_id, "records": recs}
    collector.ingest("alice/", "alice", parse_batch(json.dumps(body).encode()))
    store.flush()
    return collector


def serve(collector) -> CollectorWeb:
    web_ = CollectorWeb(collector, HubStandIn(USERS), handlers("/") + read_handlers("/"))
    web_.start()
    return web_


def test_an_auditor_verifies_the_collectors_trail_and_no_one_else_may(writer_at):
    store = writer_at("collector")
    collector = collector_with_records(store, writer_at("alice"))
    web_ = serve(collector)
    try:
        code, out, err = run_cli("verify", "--url", web_.url, "--token", "carol-token")
        assert code == 0, err
        assert "intact" in out.lower()
        code, out, err = run_cli("verify", "--url", web_.url, "--token", "carol-token", "--json")
        assert code == 0 and json.loads(out)["ok"] is True
        for token in ("alice-token", "nobody"):
            code, out, err = run_cli("verify", "--url", web_.url, "--token", token)
            assert code == 2 and "403" in err, (code, out, err)
        assert "only auditors may verify" in err or "does not know" in err
        store.flush()
        refused = [e for e in writer_events(store) if e["kind"] == "security.rejected"]
        assert any("only auditors may verify" in json.dumps(e["payload"]) for e in refused)
    finally:
        web_.close()


def test_verify_url_reports_the_first_edited_record_of_a_collectors_trail(pg, writer_at):
    store = pg.make()
    collector = collector_with_records(store, writer_at("alice"))
    web_ = serve(collector)
    try:
        rec = bytes(pg.sql("SELECT record FROM events WHERE seq = 3")[0][0])
        assert b"loans" in rec
        pg.tamper(
            "UPDATE events SET record = %s WHERE seq = 3",
            [rec.replace(b"loans", b"LOANS")],
        )
        code, out, err = run_cli("verify", "--url", web_.url, "--token", "carol-token", "--json")
        assert code == 1, (code, out, err)
        result = json.loads(out)
        assert result["ok"] is False and result["first_bad_seq"] == 3
    finally:
        web_.close()

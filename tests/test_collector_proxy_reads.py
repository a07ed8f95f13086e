"""A reader's own single-user server answers `me`, `traces`, `traces/{id}` and `export` from
the Hub's collector when `collector_url` is set (server/collector_proxy.py): a real
jupyter_server forwarding to the collector's real web app on a real DuckDB trail, the
owner named as jupyterhub's identity provider names people (helpers.identity
HubHeaderIdentityProvider) and only the Hub's token check standing in (helpers.collector).
Only the owner is served; the collector's refusals pass on; a collector away is a 503;
`verify` stays the local trail's."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from helpers.collector import (
    ALICE_SERVER,
    ALICE_SERVER_TOKEN,
    CollectorWeb,
    HubStandIn,
    owners_server_config,
)
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import sql_event
from tornado.httpclient import HTTPClientError

from jupyter_audit.collector.protocol import parse_batch, trace_in_collector
from jupyter_audit.collector.service import Collector
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder

BOB_ID = {"username": "bob", "auth_method": "jupyterhub", "groups": []}
BOBS = trace_in_collector("bob/", "bob-1")
AS_ALICE = {"X-Test-User": "alice"}  # the server's owner
AS_BOB = {"X-Test-User": "bob"}  # another Hub user this server lets in (sharing)


@pytest.fixture
def collector_web(writer_at):
    """The Hub's collector, holding a trace of bob's server already."""
    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    local = writer_at("bob")
    local.append_many([sql_event(i, trace="bob-1", who=BOB_ID) for i in range(3)])
    local.flush()
    recs = Forwarder(local, "http://unused/", None).read_after(1)
    body = {"server": "bob/", "trail": local.trail_id, "records": recs}
    collector.ingest("bob/", "bob", parse_batch(json.dumps(body).encode()))
    store.flush()
    web_ = CollectorWeb(collector, HubStandIn({ALICE_SERVER_TOKEN: ALICE_SERVER}))
    web_.start()
    web_.store = store
    yield web_
    web_.close()


@pytest.fixture
def jp_server_config(trail_dir, collector_web, monkeypatch):
    # alice's server, as the Hub's spawner starts it
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", ALICE_SERVER_TOKEN)
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": "helpers.identity.HubHeaderIdentityProvider"},
        collector_url=collector_web.url,
        collector_heartbeat=1,
    )


async def call(jp_fetch, path: str, headers, **params):
    r = await jp_fetch("jupyter-audit", "api", *path.split("/"), headers=headers, params=params)
    return json.loads(r.body)


async def refused(jp_fetch, path: str, headers, **params) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as e:
        await call(jp_fetch, path, headers, **params)
    return e.value.code, json.loads(e.value.response.body)["message"]


async def forwarded(jp_fetch, path: str, text: str, timeout: float = 60) -> dict:
    """The collector's answer to `path` through the server, once it holds `text` (the
    forwarder sends the server's records about every half second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = await call(jp_fetch, path, AS_ALICE)
        except HTTPClientError as e:
            if e.code != 404:
                raise
            answer = {}
        if text in json.dumps(answer):
            return answer
        assert time.monotonic() < deadline, f"{text!r} never reached the collector"
        await asyncio.sleep(0.2)


async def test_the_owner_reads_the_hubs_trail_through_their_own_server(
    jp_serverapp, jp_fetch, jp_ws_fetch, collector_web
):
    # started by the server itself (a POST from this header-only login would need XSRF)
    kernel_id = await jp_serverapp.kernel_manager.start_kernel(kernel_name="python3")
    _, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=AS_ALICE, kernel_id=kernel_id)
    assert (await client.run("print(6 * 7)"))[0] == "ok"
    client.ws.close()
    mine = trace_in_collector("alice/", kernel_id)
    page = await forwarded(jp_fetch, f"traces/{mine[:-4]}", "print(6 * 7)")
    assert page["trace"]["trace_id"] == mine and page["trace"]["owner"] == "alice"
    listed = await call(jp_fetch, "traces", AS_ALICE)
    assert [t["trace_id"] for t in listed["traces"]] == [mine]
    me = await call(jp_fetch, "me", AS_ALICE)
    assert me["source"] == "collector" and me["username"] == "alice"
    assert me["roles"] == ["user"]  # the collector's roles, from the Hub's groups
    assert me["trail"]["events"] > 0
    # alice's own server forwards its trail; her traces come back from the collector
    listed = await call(jp_fetch, "traces", AS_ALICE)
    assert BOBS not in {t["trace_id"] for t in listed["traces"]}
    assert set(listed) >= {"traces", "next", "integrity"}
    for t in listed["traces"]:
        assert t["owner"] == "alice" and t["trace_id"].startswith("fw.")
    # another's trace: the collector's refusal, passed on with its status and message
    code, message = await refused(jp_fetch, f"traces/{BOBS}", AS_ALICE)
    assert code == 403 and "another user's server" in message
    code, message = await refused(jp_fetch, "traces", AS_ALICE, user="bob")
    assert code == 403 and "only auditors" in message
    # bad input is the collector's 400, named
    code, message = await refused(jp_fetch, "traces", AS_ALICE, limit="many")
    assert code == 400 and "limit" in message
    # the export is hers only
    r = await jp_fetch("jupyter-audit", "api", "export", headers=AS_ALICE)
    bundle = json.loads(r.body)
    assert all(rec["trace_id"] != BOBS for rec in bundle["records"])
    code, _ = await refused(jp_fetch, "export", AS_ALICE, trace=BOBS)
    assert code == 403


async def test_only_the_owner_is_served_and_an_absent_collector_is_a_503(jp_fetch, collector_web):
    for path in ("me", "traces", f"traces/{BOBS}", "export"):
        code, message = await refused(jp_fetch, path, AS_BOB)
        assert code == 403 and "owner only" in message, (path, message)
    collector_web.stop()
    try:
        for path in ("me", "traces", "export"):
            code, message = await refused(jp_fetch, path, AS_ALICE)
            assert code == 503 and "cannot be reached" in message
    finally:
        collector_web.start()
    assert (await call(jp_fetch, "me", AS_ALICE))["source"] == "collector"


async def test_verify_stays_the_local_trails(jp_fetch):
    # alice is no auditor on her own server: verify is the local trail's, decided locally
    code, message = await refused(jp_fetch, "verify", AS_ALICE)
    assert code == 403 and "auditor" in message


class TestACollectorThatHangsUp:
    """A collector that takes the connection and closes it without an answer (tornado's
    599, as for a time-out): a 503 that says so, never a 599 passed on."""

    @pytest.fixture
    def jp_server_config(self, trail_dir, monkeypatch):
        import socket
        import threading

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        yield owners_server_config(
            trail_dir, monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}/"
        )
        listener.close()

    async def test_the_owner_gets_a_503(self, jp_fetch):
        for path in ("me", "traces"):
            code, message = await refused(jp_fetch, path, AS_ALICE)
            assert code == 503 and "cannot be reached" in message

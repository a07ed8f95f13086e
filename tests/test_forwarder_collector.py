"""The forwarder (server/forwarding.py) against a real collector web app in this process
(collector/handlers.py + service.py on a real DuckDB Writer), its local trail a real Writer
too. Only the Hub's token check stands in (`HubStandIn`: the Hub itself is
tests/e2e/test_collector_hub.py): the forwarder catches up after the collector was away,
stores nothing twice, and resends its trail when the collector's head is not its record."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from helpers.collector import ALICE_SERVER_TOKEN, CollectorWeb
from helpers.trail import sql_event, writer_events

from jupyter_audit.collector.continuity import Head
from jupyter_audit.collector.handlers import handlers
from jupyter_audit.collector.hubauth import Refused
from jupyter_audit.collector.service import Collector
from jupyter_audit.server import forwarding
from jupyter_audit.server.forwarding import Forwarder
from jupyter_audit.server.recorder import Recorder

TOKEN = ALICE_SERVER_TOKEN


@pytest.fixture
def setup(writer_at):
    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    web_ = CollectorWeb(collector)
    web_.start()
    local = writer_at("local")
    fw = Forwarder(local, web_.url, TOKEN, server="alice/", heartbeat=0.2, poll=0.05).start()
    yield collector, web_, local, fw
    fw.stop(timeout=2)
    web_.close()


def wait(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def forwarded(collector) -> list[dict]:
    collector.store.flush()
    return [e for e in writer_events(collector.store) if "origin" in e]


def test_the_forwarder_catches_up_after_the_collector_was_away(setup):
    collector, web_, local, fw = setup
    local.append_many([sql_event(i) for i in range(5)])
    last = local.trail_stats()["last_seq"]
    wait(lambda: fw.acked == last)
    web_.stop()  # the collector goes away; the server keeps recording
    local.append_many([sql_event(i) for i in range(5, 12)])
    last = local.trail_stats()["last_seq"]
    wait(lambda: fw.backlog == 7 and not fw.connected)
    web_.start()
    wait(lambda: fw.acked == last)
    seqs = [e["origin"]["seq"] for e in forwarded(collector)]
    assert seqs == list(range(1, last + 1))  # all of it, once, in order
    assert not [
        e for e in writer_events(collector.store) if e["kind"].startswith(("forward.", "security."))
    ]


def test_a_local_trail_changed_behind_the_collectors_head_shows_as_a_rewrite(setup):
    collector, web_, local, fw = setup
    local.append_many([sql_event(i) for i in range(4)])
    last = local.trail_stats()["last_seq"]
    wait(lambda: fw.acked == last)
    stored = len(forwarded(collector))
    # the collector's head names another record at that place (as after a local rewrite)
    collector.heads["alice/"] = Head(local.trail_id, last, "00" * 32)
    web_.stop()
    wait(lambda: not fw.connected)
    web_.start()
    local.append(sql_event(99))
    wait(lambda: fw.acked == last + 1)
    assert len(forwarded(collector)) == stored + 1  # only what was new was sent
    [rewrite] = [e for e in writer_events(collector.store) if e["kind"] == "forward.rewrite"]
    assert rewrite["payload"]["seq"] == last + 1
    assert rewrite["payload"]["expected_hash"] == "00" * 32
    kinds = [e["kind"] for e in writer_events(collector.store)]
    assert "security.rejected" not in kinds


def test_the_last_batch_says_stopping_and_silence_is_not_recorded_then(setup):
    collector, web_, local, fw = setup
    local.append(sql_event(1))
    fw.stop(timeout=5)
    assert "alice/" in collector.stopping
    collector.last_seen["alice/"] -= 3600
    collector.tick()
    assert not [e for e in writer_events(collector.store) if e["kind"] == "forward.silent"]


def test_a_hole_in_the_local_trail_does_not_stop_forwarding(setup, monkeypatch):
    """Rows cut from the local trail beyond a batch's width (by its user, or archived before
    a collector knew the server) must not leave the forwarder asking for the hole for ever
    while heartbeats keep it from looking silent: what follows is forwarded, the gap
    recorded."""
    collector, web_, local, fw = setup
    monkeypatch.setattr(forwarding, "BATCH_RECORDS", 3)
    local.append_many([sql_event(i) for i in range(4)])
    head = local.trail_stats()["last_seq"]
    wait(lambda: fw.acked == head)
    web_.stop()
    wait(lambda: not fw.connected)
    local.append_many([sql_event(i) for i in range(10)])
    cur = local.cursor()
    cur.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", [head + 2, head + 8])
    cur.close()
    web_.start()
    local.append(sql_event(99))
    last = local.trail_stats()["last_seq"]
    wait(lambda: fw.acked == last)
    seqs = [e["origin"]["seq"] for e in forwarded(collector)]
    assert seqs == [*range(1, head + 2), *range(head + 9, last + 1)]
    [gap] = [e for e in writer_events(collector.store) if e["kind"] == "forward.gap"]
    assert gap["payload"]["expected_seq"] == head + 2
    assert gap["payload"]["got_seq"] == head + 9


def test_a_redirecting_collector_url_never_gets_the_hub_token_elsewhere(writer_at):
    """A collector URL that redirects (a hostile or misrouted address) must not carry the
    server's Hub token to where it points: the redirect is a failure, nothing is sent on."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"seq": 0}')

        do_POST = do_GET

        def log_message(self, *args):
            pass

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/"

    class Redirect(Elsewhere):
        def do_GET(self):
            self.send_response(307)
            self.send_header("Location", target + self.path.lstrip("/"))
            self.end_headers()

        do_POST = do_GET

    redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for s in (elsewhere, redirecting):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        local = writer_at("local")
        url = f"http://127.0.0.1:{redirecting.server_address[1]}/"
        fw = Forwarder(local, url, TOKEN, server="alice/")
        with pytest.raises(forwarding.CollectorUnavailable, match="307"):
            fw._request("GET", "api/forward/state", None)
        with pytest.raises(forwarding.CollectorUnavailable, match="307"):
            fw._post([], stopping=False)
        assert seen == []
    finally:
        for s in (elsewhere, redirecting):
            s.shutdown()
            s.server_close()


class HubUsersStandIn:
    """The Hub's answer for each user's own token (the token is the user's name)."""

    def __init__(self):
        self.answered: list[str] = []

    async def user(self, token):
        self.answered.append(token)
        if token not in ("alice", "bob", "carol"):
            raise Refused(403, "the Hub does not know this token")
        groups = ["auditors"] if token == "carol" else []
        return {"kind": "user", "name": token, "groups": groups, "scopes": []}


def get(url: str, token: str):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_users_traces_are_listed_however_many_others_record(writer_at, monkeypatch):
    """The read API's list is capped; a user's own traces must not fall out of it because
    other users' servers recorded more traces since (nor be hidden by flooding it)."""
    from jupyter_audit.collector import reading
    from jupyter_audit.collector.protocol import parse_batch
    from jupyter_audit.collector.reading import read_handlers

    monkeypatch.setattr(reading, "MAX_TRACES", 3)
    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    for owner, n in (("alice", 2), ("bob", 5)):
        local = writer_at(owner)
        local.append_many([sql_event(i, trace=f"{owner}-{i}") for i in range(n)])
        local.flush()
        recs = Forwarder(local, "http://unused/", None).read_after(1)
        body = {"server": f"{owner}/", "trail": local.trail_id, "records": recs}
        collector.ingest(f"{owner}/", owner, parse_batch(json.dumps(body).encode()))
    store.flush()
    web_ = CollectorWeb(collector, HubUsersStandIn(), handlers("/") + read_handlers("/"))
    web_.start()
    try:
        status, mine = get(web_.url + "api/traces", "alice")
        assert status == 200
        assert sorted(t["trace_id"].rpartition(".")[2] for t in mine["traces"]) == [
            "alice-0",
            "alice-1",
        ]
        status, bobs = get(web_.url + "api/traces", "bob")
        assert len(bobs["traces"]) == 3
        assert all(
            t["trace_id"].endswith(tuple(f"bob-{i}" for i in range(5))) for t in bobs["traces"]
        )
        status, everyone = get(web_.url + "api/traces", "carol")
        assert len(everyone["traces"]) == 3  # an auditor: the newest of all
        one = mine["traces"][0]["trace_id"]
        assert get(web_.url + f"api/traces/{one}", "bob")[0] == 403
        assert get(web_.url + f"api/traces/{one}", "alice")[0] == 200
    finally:
        web_.close()


def test_a_flood_from_a_shared_address_does_not_hide_a_users_forgery(setup):
    """Servers reach the collector from one address (the Hub's proxy, or 127.0.0.1): a flood
    of anonymous refusals from it must not turn a Hub user's forgery into a mere count."""
    collector, web_, _local, _fw = setup
    for _ in range(25):
        assert get(web_.url + "api/forward/state", "nobody-knows-this")[0] == 403
    status, _ = get(web_.url + "api/forward/state?server=bob/", TOKEN)
    assert status == 403
    collector.store.flush()
    rejected = [e for e in writer_events(collector.store) if e["kind"] == "security.rejected"]
    [forgery] = [e for e in rejected if "bob/" in e["payload"]["reason"]]
    assert forgery["identity"]["username"] == "alice"


def test_a_big_body_is_refused_before_it_is_read_unless_the_hub_knows_the_caller(setup):
    """No one without a Hub token may make the collector hold a body in memory: the
    refusal comes after the headers, the body is never waited for."""
    import socket

    _collector, web_, _local, _fw = setup
    with socket.create_connection(("127.0.0.1", web_.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 16000000\r\n\r\n" + b"[" * 1000
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403")  # the stand-in Hub's word for no token
    # with a token the Hub knows, a body past the cap is read, dropped and refused (413)
    with socket.create_connection(("127.0.0.1", web_.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: token " + TOKEN.encode() + b"\r\n"
            b"Content-Length: " + str((1 << 24) + 1).encode() + b"\r\n\r\n"
        )
        sock.sendall(b" " * ((1 << 24) + 1))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_a_collector_that_never_answers_does_not_let_cells_past_the_bound(writer_at):
    """fail_mode=closed: while the forwarder waits on a collector that accepted the
    connection and says nothing (slow, wedged, or held up on purpose), what the server
    records still counts against collector_max_backlog."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held = []

    def accept():
        conn, _ = listener.accept()
        held.append(conn)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    local = writer_at("local")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    fw = Forwarder(local, url, TOKEN, server="alice/", max_backlog=2, fail_mode="closed").start()
    try:
        assert accepted.wait(30)
        local.append_many([sql_event(i) for i in range(5)])
        local.flush()
        last = local.trail_stats()["last_seq"]
        assert f"has not acknowledged {last} events" in (fw.refusal() or "")
    finally:
        for conn in held:
            conn.close()
        listener.close()
        fw.stop(timeout=1)


def test_one_users_batches_cannot_take_every_worker_from_the_others(writer_at):
    """A user names up to 100 servers of theirs and can post for each at once: batches
    held up in the collector (here: behind their servers' own locks) must leave workers for
    the other users' servers."""
    from concurrent.futures import ThreadPoolExecutor

    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    hub = HubUsersStandIn()
    web_ = CollectorWeb(collector, hub)
    web_.start()
    names = [f"alice/s{i}" for i in range(40)]
    for name in names:
        collector.lock(name).acquire()

    def post(token, server, timeout=120):
        body = json.dumps({"server": server, "trail": "t-1", "records": []}).encode()
        req = urllib.request.Request(web_.url + "api/forward", data=body, method="POST")
        req.add_header("Authorization", f"token {token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status

    pool = ThreadPoolExecutor(len(names))
    try:
        held = [pool.submit(post, "alice", name) for name in names]
        wait(lambda: hub.answered.count("alice") == len(names))  # all of them in the collector
        assert post("bob", "bob/", timeout=60) == 200  # not queued behind alice's
        for name in names:
            collector.lock(name).release()
        assert [f.result(timeout=120) for f in held] == [200] * len(names)
    finally:
        pool.shutdown(wait=False)
        web_.close()


def test_a_client_that_sends_slowly_holds_no_connection(writer_at):
    """Slowloris: headers that never end, or a body that never comes, are dropped after
    `connection_timeout` instead of holding a connection for an hour."""
    import socket

    from jupyter_audit.collector.app import CollectorApp, http_server

    store = writer_at("collector")
    collector = Collector(store, Recorder(store))
    web_ = CollectorWeb(collector)
    app = CollectorApp(connection_timeout=0.5)

    def listen():
        web_.server = http_server(app, web_.app)
        web_.server.listen(web_.port, "127.0.0.1")

    web_._call(listen)
    try:
        for start in (b"POST /api/forward HTTP/1.1\r\nHost: x\r\n", b""):
            with socket.create_connection(("127.0.0.1", web_.port), timeout=30) as sock:
                sock.sendall(start)
                assert sock.recv(4096) == b""  # closed by the collector
        with socket.create_connection(("127.0.0.1", web_.port), timeout=30) as sock:
            sock.sendall(
                b"POST /api/forward HTTP/1.1\r\nHost: x\r\nAuthorization: token "
                + TOKEN.encode()
                + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            assert sock.recv(4096) == b""
    finally:
        web_.close()

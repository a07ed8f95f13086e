"""Review of the reader's own server answering from the Hub's collector (issue 18, part B;
server/collector_proxy.py): a real jupyter_server with `collector_url`, the owner named as
jupyterhub's identity provider names people (helpers.identity), and a collector that notes
the requests it receives (the thing under test is what the server sends it)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.collector import owners_server_config
from test_collector_proxy_reads import AS_ALICE, call, refused

ANSWER = json.dumps({"traces": [], "next": None, "integrity": {"ok": True}}).encode()


class TestWhatTheServerSendsTheCollector:
    @pytest.fixture
    def received(self):
        return []

    @pytest.fixture
    def jp_server_config(self, trail_dir, monkeypatch, received):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    received.append(head.decode("latin-1"))
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                    )

        threading.Thread(target=serve, daemon=True).start()
        yield owners_server_config(
            trail_dir, monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}/"
        )
        listener.close()

    async def test_a_credential_in_the_query_never_travels_to_the_collector(
        self, jp_fetch, received
    ):
        # a client may sign in to its server with `?token=` (jupyter_server takes it);
        # the server's proxy sent its whole query on, credential and all
        secret = "server-login-token-5ecret"
        params = {"token": secret, "_xsrf": "xsrf-5ecret", "notebook": "a b&c=d\r\nX: y"}
        answer = await call(jp_fetch, "traces", AS_ALICE, **params)
        assert answer["traces"] == []
        (request,) = [r for r in received if "/jupyter-audit/api/traces" in r]
        line, _, headers = request.partition("\r\n")
        assert "5ecret" not in request
        # what the collector needs still goes, each value encoded: no header of its own
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(line.split(" ")[1]).query)
        assert query == {"notebook": ["a b&c=d\r\nX: y"]}
        assert "\r\nX: y" not in headers


class TestACollectorThatRedirects:
    """A collector URL that redirects (a hostile or misrouted address): the owner's read is
    a 502 and the server's Hub token never reaches where it points."""

    @pytest.fixture
    def elsewhere(self):
        seen: list[dict] = []

        class Elsewhere(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(ANSWER)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        server.seen = seen  # type: ignore[attr-defined]
        yield server
        server.shutdown()
        server.server_close()

    @pytest.fixture
    def jp_server_config(self, trail_dir, monkeypatch, elsewhere):
        target = f"http://127.0.0.1:{elsewhere.server_address[1]}"

        class Redirect(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(307)
                self.send_header("Location", target + self.path)
                self.end_headers()

        redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=redirecting.serve_forever, daemon=True).start()
        yield owners_server_config(
            trail_dir, monkeypatch, f"http://127.0.0.1:{redirecting.server_address[1]}/"
        )
        redirecting.shutdown()
        redirecting.server_close()

    async def test_the_owner_gets_a_502_and_the_token_goes_nowhere(self, jp_fetch, elsewhere):
        for path in ("me", "traces", "export"):
            code, _ = await refused(jp_fetch, path, AS_ALICE)
            assert code == 502, path
        assert elsewhere.seen == []

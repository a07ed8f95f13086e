"""The demo world's HTTP API: a stand-in for a risk-scoring service, on loopback, in a
thread of the demo process (standard library only).

`GET /risk-score?customer_id=N` answers a fixed score for the customer; `POST /scores` takes
a JSON list of scores (the contractor's job posts there) and answers how many it took.
Bad input gets a 400 with a JSON message; nothing is stored.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MAX_BODY = 1_000_000


def risk_score(customer_id: int) -> dict:
    score = round(((customer_id * 37) % 100) / 100, 2)
    band = "high" if score >= 0.7 else "medium" if score >= 0.4 else "low"
    return {"customer_id": customer_id, "score": score, "band": band}


class _Handler(BaseHTTPRequestHandler):
    server_version = "jupyter-audit-demo-api/1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        if url.path != "/risk-score":
            self._send(404, {"message": f"no such endpoint: {url.path}"})
            return
        raw = parse_qs(url.query).get("customer_id", [""])[0]
        if not raw.isdigit():
            self._send(400, {"message": "customer_id must be a number"})
            return
        self._send(200, risk_score(int(raw)))

    def do_POST(self):  # noqa: N802
        if urlparse(self.path).path != "/scores":
            self._send(404, {"message": "no such endpoint"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._send(400, {"message": f"a body of 0 to {MAX_BODY} bytes is expected"})
            return
        try:
            scores = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._send(400, {"message": "the body is not JSON"})
            return
        if not isinstance(scores, list):
            self._send(400, {"message": "a JSON list of scores is expected"})
            return
        self._send(200, {"accepted": len(scores)})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # the demo's console is for its instructions
        pass


class ApiStub:
    """The stub listening on 127.0.0.1:`port` (0: any free port) in a daemon thread."""

    def __init__(self, port: int = 0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="demo-api-stub", daemon=True
        )

    def start(self) -> ApiStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

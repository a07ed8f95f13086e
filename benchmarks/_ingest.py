"""A stand-in ingest endpoint for the kernel benchmarks: a separate process that accepts
every event (as the server's kernel/events does) and counts them by kind."""

from __future__ import annotations

import json
import multiprocessing
import threading
import urllib.request


def serve_ingest(port_pipe) -> None:
    """Accept every event, count them by kind; GET answers the counts."""
    from collections import Counter
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    counts: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # buffered: the status line, headers and body leave in one write, as the Jupyter
        # server's replies do (two writes meet the client's delayed ACK: ~40 ms a request)
        wbufsize = 1 << 16

        def _answer(self, obj) -> None:
            out = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self):  # noqa: N802 - http.server's naming
            batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            events = batch["events"]
            with lock:
                counts.update(e["kind"] for e in events)
            self._answer({"accepted": [e["event_id"] for e in events], "rejected": []})

        def do_GET(self):  # noqa: N802
            with lock:
                self._answer(dict(counts))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_pipe.send(server.server_port)
    port_pipe.close()
    server.serve_forever()


def start_ingest():
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_ingest, args=(child,), daemon=True, name="bench-ingest")
    proc.start()
    if not parent.poll(30):
        proc.terminate()
        raise RuntimeError("the ingest endpoint did not start")
    return proc, parent.recv()


def ingest_counts(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        return json.loads(r.read())

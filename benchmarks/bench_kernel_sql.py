"""Kernel capture overhead per SQL statement: sqlite3 in-memory ``select 1``, audited vs
plain, interleaved in the same run, with the real extension loaded into an IPython shell and
its transport sending to a real ingest endpoint (a separate process, as the server is).
Printed beside it: what opentelemetry-instrumentation-dbapi adds on the same workload.

    pip install -e ".[bench]"     # opentelemetry-instrumentation-dbapi, opentelemetry-sdk
    python benchmarks/bench_kernel_sql.py [ROUNDS] [STATEMENTS_PER_ROUND]

Two workloads, each block of statements timed alone (after a ``gc.collect()``, so that a
block pays for its own garbage only), the connections rotating within a round:

- ``con.execute("select 1")``, sqlite3's connection shortcut: plain vs jupyter-audit (the
  headline figure);
- ``cur.execute("select 1")`` on a cursor: plain vs jupyter-audit vs OpenTelemetry, whose
  DB-API integration traces cursors only (its connection proxy leaves the shortcut alone).
  OpenTelemetry instruments a connection of its own through ``wrap_connect`` with a real
  ``TracerProvider`` (default sampler: every span is recorded) and ``capture_parameters``
  (jupyter-audit records parameters too); its span processor counts ended spans and exports
  nothing, so its figure leaves out any exporter, while jupyter-audit's includes its
  transport whenever the sender runs during a block. Without the packages, the
  comparison is skipped with the reason.

Target: <= 15 us added (median) per statement.
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SINK = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # the reply in one write, as the Jupyter server's
        def do_POST(self):
            batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = json.dumps({"accepted": [e["event_id"] for e in batch["events"]], "rejected": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        def log_message(self, *a):
            pass
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(s.server_port, flush=True)
    s.serve_forever()
    """
)


def otel_connection(sqlite3):
    """(an OpenTelemetry-instrumented sqlite3 connection, its span counter) or (None, why)."""
    try:
        from opentelemetry.instrumentation.dbapi import unwrap_connect, wrap_connect
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    except ImportError as e:
        return None, f"not installed ({e.name}); pip install -e '.[bench]'"

    class CountingProcessor(SpanProcessor):
        """Records nothing anywhere: counts the spans that ended (they were recorded)."""

        def __init__(self) -> None:
            self.ended = 0

        def on_end(self, span) -> None:
            self.ended += 1

    counter = CountingProcessor()
    provider = TracerProvider()
    provider.add_span_processor(counter)
    wrap_connect(
        "bench_kernel_sql",
        sqlite3,
        "connect",
        "sqlite",
        tracer_provider=provider,
        capture_parameters=True,
    )
    try:
        con = sqlite3.connect(":memory:")
    finally:
        unwrap_connect(sqlite3, "connect")
    if type(con) is sqlite3.Connection:
        return None, "wrap_connect did not instrument the connection"
    return con, counter


def main(rounds: int = 100, n: int = 1000) -> None:
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    spool = tempfile.mkdtemp(prefix="bench-kernel-")
    os.environ.update(
        JUPYTER_AUDIT_INGEST_URL=f"http://127.0.0.1:{port}/jupyter-audit/api/kernel/events",
        JUPYTER_AUDIT_KERNEL_ID="bench",
        JUPYTER_AUDIT_KERNEL_SECRET="bench",
        JUPYTER_AUDIT_SPOOL_DIR=spool,
        # approvals enforced (read-only statements never ask: what this measures);
        # a kernel of a code base without approvals ignores it
        JUPYTER_AUDIT_APPROVALS_URL=f"http://127.0.0.1:{port}/jupyter-audit/api/kernel/approvals",
    )
    import sqlite3

    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_audit.kernel import context, load_ipython_extension, unload_ipython_extension

    # made before load: not audited. The cursors get connections of their own: a cursor left
    # on an unfinished 'select 1' holds sqlite3's cached statement, and the shortcut on the
    # same connection would then prepare the statement anew every time.
    plain, plain2 = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    otel, otel_info = otel_connection(sqlite3)  # before load too: OpenTelemetry's alone
    ip = InteractiveShell.instance()
    load_ipython_extension(ip)
    capture = ip._jupyter_audit_kernel_capture
    audited, audited2 = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    assert type(audited) is not sqlite3.Connection, "capture not installed"
    cursors = {"plain": plain2.cursor(), "audited": audited2.cursor()}
    if otel is not None:
        cursors["otel"] = otel.cursor()
    token = context.enter_cell("bench-cell-msg-id")  # as inside a cell
    try:

        def block(execute) -> float:
            gc.collect()  # each block pays for its own garbage, not for an earlier block's
            t0 = time.perf_counter_ns()
            for _ in range(n):
                execute("select 1")
            return (time.perf_counter_ns() - t0) / n / 1000  # us per statement

        shortcut = {"plain": plain.execute, "audited": audited.execute}
        on_cursor = {name: cur.execute for name, cur in cursors.items()}
        for execute in (*shortcut.values(), *on_cursor.values()):  # warm up
            block(execute)
        spans_before = otel_info.ended if otel is not None else 0
        times: dict[str, dict[str, list[float]]] = {
            "shortcut": {k: [] for k in shortcut},
            "cursor": {k: [] for k in on_cursor},
        }
        for r in range(rounds):
            for workload, fns in (("shortcut", shortcut), ("cursor", on_cursor)):
                names = list(fns)
                k = r % len(names)
                for name in names[k:] + names[:k]:  # rotate which goes first
                    times[workload][name].append(block(fns[name]))
    finally:
        context.exit_cell(token)
    delivered = capture.client.flush(60)
    sent = capture.client.sent
    spooled = capture.client.spooled
    unload_ipython_extension(ip)
    sink.terminate()
    sink.wait()

    def added(workload: str, name: str) -> list[float]:
        t = times[workload]
        return [x - p for x, p in zip(t[name], t["plain"], strict=True)]

    def med(xs):
        return statistics.median(xs)

    sc = times["shortcut"]
    d = added("shortcut", "audited")
    print(f"sqlite3 in-memory 'select 1', {rounds} interleaved rounds x {n} statements")
    print("con.execute (sqlite3's connection shortcut):")
    print(f"  plain   median: {med(sc['plain']):6.2f} us/statement")
    print(f"  audited median: {med(sc['audited']):6.2f} us/statement")
    p90 = statistics.quantiles(d, n=10)[-1]
    print(
        f"  added   median: {med(d):6.2f} us/statement  (mean {statistics.fmean(d):.2f}, "
        f"p90 {p90:.2f})"
    )
    print("  (mean and p90 include the rounds where the background sender held the GIL")
    print("   encoding and posting the previous rounds' events)")
    cu = times["cursor"]
    da = added("cursor", "audited")
    print("cur.execute on a cursor, the same statement:")
    print(f"  plain median {med(cu['plain']):.2f} us/statement")
    print(
        f"  jupyter-audit added:                       median {med(da):6.2f} us/statement "
        f"(p90 {statistics.quantiles(da, n=10)[-1]:.2f})"
    )
    result = {
        "plain_us": round(med(sc["plain"]), 3),
        "audited_us": round(med(sc["audited"]), 3),
        "added_us": round(med(d), 3),
        "cursor_added_us": round(med(da), 3),
    }
    if otel is not None:
        do = added("cursor", "otel")
        spans = otel_info.ended - spans_before
        print(
            f"  opentelemetry-instrumentation-dbapi added: median {med(do):6.2f} us/statement "
            f"(p90 {statistics.quantiles(do, n=10)[-1]:.2f}; {spans:,} spans recorded, "
            f"{rounds * n:,} expected; no exporter)"
        )
        result["otel_cursor_added_us"] = round(med(do), 3)
    else:
        print(f"  opentelemetry-instrumentation-dbapi: not measured: {otel_info}")
    print(f"events delivered to the ingest endpoint: {sent} (all flushed: {delivered})")
    print(f"events that went through the spool on the way (queue overflow): {spooled}")
    print("target: <= 15 us added per statement")
    print(json.dumps(result))


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))

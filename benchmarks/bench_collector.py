"""The collector on PostgreSQL under a Hub's load: 50 simulated single-user servers forward a
realistic mix to a real `jupyter audit collector --pg` process, as the server's forwarder does
(`server/forwarding.py`: poll every 0.5 s, batches of at most 1,000 records, the next batch
right after an acknowledgement).

    JUPYTER_AUDIT_BENCH_PG_DSN=postgresql://postgres@127.0.0.1:55432/postgres \\
        python benchmarks/bench_collector.py [--servers 50] [--rate 5000] [--seconds 30] \\
            [--total 2000000]

Prints, in one run and on one machine:
1. sustained ingest: every server pushes a backlog as fast as the collector acknowledges
   (events/s into PostgreSQL, each acknowledged only after the collector's commit), beside
   PostgreSQL's own binary COPY of the very rows the collector wrote (the database alone);
2. delay under load: the servers commit locally at `--rate` events/s in all (open loop, each
   at its own pace) for `--seconds`; p50/p99/max delay from a record's local commit to the
   collector's acknowledgement of it;
3. the reviewer's two commonest reads at `--total` events (the trail is topped up directly
   through `PgStore`): the newest 100 traces, and one trace of ~500 events.

Each server's records are a real local chain (`records.prepare` with that server's own
pseudonym key, canonical bytes, sha256 chain), built before the clock starts. The Hub is a
stand-in answering `/hub/api/user` for 50 tokens (the collector caches its answers; the real
Hub is what tests/e2e/test_collector_hub.py runs). A database of its own is created for the run
and dropped after it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _events import make_events  # noqa: E402
from _pg import copy_alone, reads, search_reads  # noqa: E402

from jupyter_audit.masking import MaskingEngine  # noqa: E402
from jupyter_audit.store.canonical import GENESIS_HASH, iso_time  # noqa: E402
from jupyter_audit.store.records import encode_record, prepare  # noqa: E402

SERVICE_TOKEN = "bench-collector-service-token"
POLL = 0.5  # the forwarder's poll interval (server/forwarding.py)
MAX_BATCH = 1000  # records in one batch (collector/protocol.py MAX_RECORDS)


def token(i: int) -> str:
    return f"bench-server-token-{i:03d}"


class _Hub(BaseHTTPRequestHandler):
    """`/hub/api/user` for the 50 servers' tokens."""

    def do_GET(self):  # noqa: N802
        auth = self.headers.get("Authorization", "")
        i = auth.rpartition("-")[2]
        if (
            self.path.rstrip("/") != "/hub/api/user"
            or not i.isdigit()
            or auth != (f"token {token(int(i))}")
        ):
            self.send_response(403)
            self.end_headers()
            return
        user = f"bench{int(i):03d}"
        body = json.dumps(
            {
                "kind": "user",
                "name": user,
                "groups": [],
                "scopes": [f"access:servers!server={user}/", "access:services"],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stream:
    """One simulated server: its local chain, pre-encoded as the wire's record items."""

    def __init__(self, i: int, n: int, masker):
        self.i = i
        self.server = f"bench{i:03d}/"
        self.trail = f"bench-trail-{i:03d}"
        self.items: list[bytes] = []
        prev = GENESIS_HASH
        t = 1_780_000_000_000_000 + i
        for seq, ev in enumerate(make_events(n, traces=8, seed=i + 1), 1):
            p = prepare(ev, masker, 1 << 20)
            rec = encode_record(p, seq, prev.hex(), iso_time(t + seq * 1000), 1)
            h = hashlib.sha256(prev + rec).digest()
            item = {"seq": seq, "record": rec.decode(), "hash": h.hex()}
            item["identity"] = p.identity_json
            self.items.append(json.dumps(item, ensure_ascii=False).encode())
            prev = h
        self.sent = 0  # records acknowledged so far

    def body(self, upto: int) -> tuple[bytes, int]:
        """The next batch: records sent..min(upto, sent + MAX_BATCH)."""
        end = min(upto, self.sent + MAX_BATCH)
        head = json.dumps({"server": self.server, "trail": self.trail, "backlog": upto - end})
        return (
            head[:-1].encode() + b',"records":[' + b",".join(self.items[self.sent : end]) + b"]}",
            end,
        )


class Client:
    def __init__(self, port: int, i: int):
        self.con = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers = {"Authorization": f"token {token(i)}", "Content-Type": "application/json"}

    def post(self, body: bytes) -> dict:
        self.con.request("POST", "/api/forward", body=body, headers=self.headers)
        resp = self.con.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"collector answered {resp.status}: {data[:300]!r}")
        return json.loads(data)


def saturate(streams: list[Stream], port: int, per_server: int) -> tuple[float, int]:
    """Every server pushes `per_server` records as fast as the collector acknowledges them:
    (wall seconds, records acknowledged)."""
    errors: list[BaseException] = []

    def push(s: Stream) -> None:
        try:
            c = Client(port, s.i)
            upto = s.sent + per_server
            while s.sent < upto:
                body, end = s.body(upto)
                ack = c.post(body)
                assert ack["acked"] == end, ack
                s.sent = end
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=push, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0, per_server * len(streams)


def open_loop(streams: list[Stream], port: int, rate: float, seconds: float) -> list[float]:
    """The servers commit locally at `rate` events/s in all for `seconds` and forward as
    the forwarder does; the delay of every record from its local commit to its
    acknowledgement."""
    per = rate / len(streams)
    delays: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    t0 = time.perf_counter() + 0.5

    def run(s: Stream) -> None:
        try:
            c = Client(port, s.i)
            base = s.sent
            phase = (s.i / len(streams)) / per  # servers' commits are spread, not in step
            total = int(per * seconds)
            commit = [t0 + phase + k / per for k in range(total)]
            time.sleep(max(0.0, t0 + (s.i / len(streams)) * POLL - time.perf_counter()))
            done = 0
            while done < total:
                now = time.perf_counter()
                ready = done
                while ready < total and commit[ready] <= now:
                    ready += 1
                if ready == done:
                    time.sleep(POLL)
                    continue
                while done < ready:
                    body, end = s.body(base + ready)
                    c.post(body)
                    acked = time.perf_counter()
                    n = end - base
                    with lock:
                        delays.extend(acked - commit[k] for k in range(done, n))
                    s.sent, done = end, n
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return delays


def top_up(dsn: str, state: Path, total: int) -> None:
    """Fill the collector's trail to `total` events through PgStore itself (the collector
    stopped), in traces of ~500 events."""
    from jupyter_audit.masking import load_or_create_key
    from jupyter_audit.store.pg import PgStore
    from jupyter_audit.store.signing import SigningKey

    masker = MaskingEngine(load_or_create_key(state / "masking.key"))
    key = SigningKey.load_or_create(state / "signing-key.pem")
    store = PgStore(dsn, masker, key, checkpoint_path=state / "topup.checkpoints").open()
    try:
        have = store.trail_stats()["events"]
        todo = total - have
        chunk = 50_000
        t0 = time.perf_counter()
        k = 0
        while todo > 0:
            n = min(chunk, todo)
            events = make_events(n, traces=max(1, n // 500), seed=1000 + k)
            for e in events:  # fresh traces for each chunk
                e["trace_id"] = f"topup-{k}-{e['trace_id']}"
            futs = [store.submit_batch(events[i : i + 1000]) for i in range(0, n, 1000)]
            for f in futs:
                f.result()
            todo -= n
            k += 1
            print(f"  … {total - todo:,} events ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        store.close()


def start_collector(d: Path, dsn: str, hub_port: int, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
        "JUPYTERHUB_SERVICE_NAME": "jupyter-audit",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
    }
    log = open(d / "collector.log", "w")  # noqa: SIM115 - the process keeps it
    cmd = [sys.executable, "-m", "jupyter_audit.cli", "collector", "--pg", dsn]
    proc = subprocess.Popen(
        [*cmd, "--state-dir", str(d / "state")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/forward/state")
            c.getresponse().read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit((d / "collector.log").read_text()[-3000:])
            time.sleep(0.2)


def main() -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--burst", type=int, default=2000, help="records a server in phase 1")
    ap.add_argument("--total", type=int, default=2_000_000)
    args = ap.parse_args()
    admin = os.environ.get("JUPYTER_AUDIT_BENCH_PG_DSN") or os.environ.get(
        "JUPYTER_AUDIT_TEST_PG_DSN"
    )
    if not admin:
        sys.exit("set JUPYTER_AUDIT_BENCH_PG_DSN to a PostgreSQL superuser DSN")
    d = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    name = "ja_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(**{**conninfo_to_dict(admin), "dbname": name})
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    proc = None
    try:
        per_server = args.burst + int(args.rate / args.servers * args.seconds) + 1
        print(
            f"servers: {args.servers}; cores: {os.cpu_count()}; building "
            f"{per_server * args.servers:,} local records …",
            flush=True,
        )
        t0 = time.perf_counter()
        streams = [
            Stream(i, per_server, MaskingEngine(hashlib.sha256(b"%d" % i).digest()))
            for i in range(args.servers)
        ]
        print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
        gc.freeze()
        port = _port()
        proc = start_collector(d, dsn, hub.server_address[1], port)

        wall, n = saturate(streams, port, args.burst)
        print(
            f"1. sustained ingest, {args.servers} servers pushing backlogs: "
            f"{n / wall:,.0f} events/s ({n:,} records in {wall:.1f} s; target ≥ 5,000)",
            flush=True,
        )
        delays = open_loop(streams, port, args.rate, args.seconds)
        delays.sort()
        q = statistics.quantiles(delays, n=100)
        print(
            f"2. delay from local commit to the collector's commit at {args.rate:,.0f} "
            f"events/s offered ({len(delays):,} records, poll {POLL} s): p50 {q[49]:.2f} s, "
            f"p99 {q[98]:.2f} s, max {delays[-1]:.2f} s (target p99 ≤ 2 s)",
            flush=True,
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc = None
        cwall, rows = copy_alone(dsn)
        print(
            f"   PostgreSQL's own binary COPY of the same {rows:,} rows: "
            f"{rows / cwall:,.0f} rows/s → the collector runs at "
            f"{(n / wall) / (rows / cwall):.2f}x the database alone",
            flush=True,
        )
        if args.total:
            top_up(dsn, d / "state", args.total)
            reads(dsn)
            search_reads(dsn)
    finally:
        if proc is not None:
            proc.kill()
        hub.shutdown()
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

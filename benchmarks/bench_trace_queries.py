"""The trace panel's requests, server side, over HTTP to a real jupyter_server holding a trail
of 2,000,000 events: the first page of `GET traces`, a 500-step trace, a search, and the last
page of a 100,000-event trace (targets 1 s / 300 ms / 500 ms / 1 s; the browser side is
measured by the panel's own benchmark). Printed beside the same requests' floor: `GET me`,
which reads one row, in the same run.

    python benchmarks/bench_trace_queries.py [N] [DIR]

The trail is seeded once through the real Writer (`_seed.seed`, minutes for 2,000,000
events) and kept in DIR (default: the temp dir). The first server start on it rebuilds the
derived tables and the search index (printed: the one-time cost of an upgrade), later starts
only verify it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _seed import seed  # noqa: E402
from bench_roundtrip import Server  # noqa: E402

API = "jupyter-audit/api/"


def timed(server: Server, path: str, runs: int = 7) -> tuple[float, float, dict]:
    """(median ms, max ms, last answer) of GET `path`, after one unmeasured call."""
    out = []
    answer = server.api(API + path, timeout=600)
    for _ in range(runs):
        t0 = time.perf_counter()
        answer = server.api(API + path, timeout=600)
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out), max(out), answer


def wait_for_index(server: Server) -> float:
    """Seconds until a search is answered (the index catching up after a start)."""
    t0 = time.perf_counter()
    while True:
        try:
            server.api(API + "traces?limit=1&q=zzzz", timeout=600)
            return time.perf_counter() - t0
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise


def main(n: int, d: Path) -> None:
    db = seed(d, n, huge_trace_events=100_000)
    root = Path(tempfile.mkdtemp(prefix="bench-trace-queries-"))
    server = Server("audited", root, audited=True, db_path=db)
    t0 = time.perf_counter()
    server.start()
    try:
        server.wait_ready(timeout=1800)
        print(f"server ready after {time.perf_counter() - t0:.1f} s (verify at open included)")
        print(f"search index up to date after {wait_for_index(server):.1f} s more")
        rows = [
            ("floor: GET me", "me", None),
            ("first page of GET traces (50)", "traces?limit=50", 1000),
            ("a 500-step trace", "traces/trace-long?limit=500", 300),
            ("search, a word in 500,000 records", "traces?limit=50&q=churn", 500),
            ("search, two words and a prefix", "traces?limit=50&q=enterprise+smb+ord", 500),
            ("search, a rare word", "traces?limit=50&q=nosuchword", 500),
            ("last page of a 100,000-event trace", "traces/trace-huge?page=last&limit=500", 1000),
            ("first page of it, folded", "traces/trace-huge?limit=500", 1000),
        ]
        for label, path, target in rows:
            med, worst, answer = timed(server, path)
            extra = ""
            if "events" in answer:
                extra = f"; {len(answer['events'])} events of {answer['total']:,}"
            elif "traces" in answer:
                extra = f"; {len(answer['traces'])} traces"
            goal = f"; target <= {target} ms" if target else ""
            print(f"{label}: median {med:.0f} ms (max {worst:.0f}){extra}{goal}")
    finally:
        server.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    default = Path(tempfile.gettempdir()) / f"bench-trace-queries-{n}"
    main(n, Path(sys.argv[2]) if len(sys.argv) > 2 else default)

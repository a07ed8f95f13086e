"""Panel queries on a 2,000,000-event trail, server side: the newest 100 traces and one
500-step trace (target: each <= 30 ms median), beside a full scan of the events table.

    python benchmarks/bench_queries.py [N] [DIR]
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _seed import seed  # noqa: E402

from jupyter_audit.store import queries  # noqa: E402
from jupyter_audit.store.schema import open_readable  # noqa: E402


def timed(fn, runs=30):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out), max(out)


def main(n: int, d: Path) -> None:
    db = seed(d, n)
    con, _ = open_readable(db)
    cur = con.cursor()
    summary = queries.get_trace_summary(cur, "trace-long")
    assert summary is not None
    steps = len(queries.get_trace_events(cur, "trace-long", summary))
    med, worst = timed(lambda: queries.list_traces(cur, limit=100))
    print(f"newest 100 traces: median {med:.1f} ms (max {worst:.1f}); target <= 30 ms")
    med2, worst2 = timed(lambda: queries.get_trace_events(cur, "trace-long", summary))
    print(f"one {steps}-step trace: median {med2:.1f} ms (max {worst2:.1f}); target <= 30 ms")
    user = timed(lambda: queries.list_traces(cur, username="user3", limit=100))
    print(f"newest 100 traces of one user: median {user[0]:.1f} ms")
    base = timed(
        lambda: cur.execute("SELECT count(*) FROM events WHERE kind = 'op.sql'").fetchone(), 5
    )
    print(f"baseline full scan of {n:,} events (count by kind): median {base[0]:.1f} ms")
    con.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    d = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.gettempdir()) / f"bench-trail-{n}"
    main(n, d)

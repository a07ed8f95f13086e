"""Writer ingest: validation + masking + chain + Merkle + batched insert, events/s, printed
beside naive row-at-a-time inserts of the same records measured in the same run.

    python benchmarks/bench_writer.py [N]
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _events import make_events  # noqa: E402

from jupyter_audit.masking import MaskingEngine, load_or_create_key  # noqa: E402
from jupyter_audit.store.signing import SigningKey  # noqa: E402
from jupyter_audit.store.writer import Writer  # noqa: E402


def main(n: int = 200_000) -> None:
    events = make_events(n)
    size = sum(len(str(e["payload"])) for e in events) / n
    d = Path(tempfile.mkdtemp(prefix="bench-writer-"))
    try:
        masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        key = SigningKey.load_or_create(d / "signing-key.pem")
        w = Writer(d / "trail.duckdb", masker, key).open()
        t0 = time.perf_counter()
        futs = [w.submit_batch(events[i : i + 1000]) for i in range(0, n, 1000)]
        for f in futs:
            f.result()
        dt = time.perf_counter() - t0
        w.close()
        rate = n / dt
        print(f"events: {n}, mean payload ~{size:.0f} bytes")
        print(f"writer (mask+chain+merkle+batch insert): {rate:,.0f} events/s")

        # baseline: the same canonical records inserted one row per statement
        import duckdb

        con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
        rows = con.execute(
            "SELECT seq, kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, "
            "event_id, prev_hash, hash, leaf, record FROM events ORDER BY seq LIMIT 20000"
        ).fetchall()
        con.close()
        naive = duckdb.connect(str(d / "naive.duckdb"))
        naive.execute(
            "CREATE TABLE events AS SELECT * FROM (VALUES (1::BIGINT, ''::VARCHAR, now()::TIMESTAMP, "
            "''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::BLOB, "
            "''::BLOB, ''::BLOB, ''::BLOB)) WHERE false"
        )
        t0 = time.perf_counter()
        for row in rows:
            naive.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        naive_rate = len(rows) / (time.perf_counter() - t0)
        naive.close()
        print(f"naive row-at-a-time insert (no masking, no hashing): {naive_rate:,.0f} rows/s")
        print(f"ratio writer / naive: {rate / naive_rate:.1f}x   (target: >= 50,000 events/s)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)

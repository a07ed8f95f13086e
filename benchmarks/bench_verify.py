"""`jupyter audit verify` of a 1,000,000-event trail (target <= 4 s), printed beside the
time to merely read every record's bytes from the same file (the floor).

    python benchmarks/bench_verify.py [N] [DIR]
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _seed import seed  # noqa: E402


def main(n: int, d: Path) -> None:
    db = seed(d, n)
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect(str(db), read_only=True)
    total = 0
    for batch in con.sql("SELECT record FROM events ORDER BY seq").to_arrow_reader(65536):
        total += batch.num_rows
    con.close()
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t0
    print(p.stdout.strip())
    print(f"verify of {total:,} events: {dt:.2f} s (exit {p.returncode}); target <= 4 s per 1M")
    print(f"baseline, reading all records once: {read:.2f} s; ratio {dt / read:.1f}x")
    print(
        f"trail size: {db.stat().st_size / 2**20:,.0f} MiB = "
        f"{db.stat().st_size / total * 1e6 / 2**30:.2f} GiB per million events"
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    d = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.gettempdir()) / f"bench-trail-{n}"
    main(n, d)

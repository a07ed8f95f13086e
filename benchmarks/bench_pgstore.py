"""PgStore ingest into PostgreSQL: validation + masking + chain + Merkle + one transaction per
round (binary COPY of the records, identities, traces projection, head), events/s, printed
beside PostgreSQL's own binary COPY of the very rows the store wrote, measured in the same
run, and the DuckDB Writer on the same events.

    JUPYTER_AUDIT_BENCH_PG_DSN=postgresql://postgres@127.0.0.1:55432/postgres \\
        python benchmarks/bench_pgstore.py [N]

Two producers submit batches of 1,000 (as two kernels' ingest, or a collector's forwarders,
do) and wait for every acknowledgement (= commit). A database of its own is created for the
run and dropped after it. The events are benchmarks/_events.py's realistic mix.
"""

import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _events import make_events  # noqa: E402
from _pg import copy_alone, reads, search_reads  # noqa: E402

from jupyter_audit.masking import MaskingEngine, load_or_create_key  # noqa: E402
from jupyter_audit.store.pool import MIN_BATCH  # noqa: E402
from jupyter_audit.store.signing import SigningKey  # noqa: E402


def _ingest(store, events: list) -> tuple[float, float]:
    """(wall, CPU) for two producers to submit all events in batches of 1,000 and see every
    one acknowledged."""
    store.prepare_many(events[:MIN_BATCH])  # start the prepare workers
    n = len(events)

    def produce(start: int) -> None:
        for f in [store.submit_batch(events[i : i + 1000]) for i in range(start, n, 2000)]:
            f.result()

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(2) as producers:
        list(producers.map(produce, (0, 1000)))
    return time.perf_counter() - t0, time.process_time() - c0


def _reads(dsn: str, checkpoints: Path) -> None:
    """`verify --pg`'s check of the whole trail, and the panel's two commonest reads
    (`_pg.reads`)."""
    from jupyter_audit.store.pg.verify import verify_dsn

    t0 = time.perf_counter()
    r = verify_dsn(dsn, checkpoint_files=[checkpoints])
    print(
        f"verify of the PostgreSQL trail ({r.events:,} records; one snapshot): "
        f"{time.perf_counter() - t0:.2f} s ({'intact' if r.ok else r.problem})"
    )
    reads(dsn)


def _line(label: str, n: int, wall: float, cpu: float) -> str:
    return (
        f"{label}: {n / wall:,.0f} events/s  "
        f"(wall {wall:.1f} s; CPU {cpu:.1f} s = {cpu / n * 1e6:.0f} µs/event)"
    )


def main(n: int) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from jupyter_audit.store.pg import PgStore
    from jupyter_audit.store.writer import Writer

    admin = os.environ.get("JUPYTER_AUDIT_BENCH_PG_DSN") or os.environ.get(
        "JUPYTER_AUDIT_TEST_PG_DSN"
    )
    if not admin:
        sys.exit("set JUPYTER_AUDIT_BENCH_PG_DSN to a PostgreSQL superuser DSN")
    events = make_events(n)
    gc.freeze()
    d = Path(tempfile.mkdtemp(prefix="bench-pgstore-"))
    name = "ja_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(**{**conninfo_to_dict(admin), "dbname": name})
    try:
        masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        key = SigningKey.load_or_create(d / "signing-key.pem")
        print(f"events: {n}; cores: {os.cpu_count()}")
        store = PgStore(dsn, masker, key, checkpoint_path=d / "pg.checkpoints").open()
        wall, cpu = _ingest(store, events)
        store.close()
        print(_line("PgStore (PostgreSQL)              ", n, wall, cpu))
        w = Writer(d / "trail.duckdb", masker, key).open()
        dwall, dcpu = _ingest(w, events)
        w.close()
        print(_line("Writer (DuckDB), same events      ", n, dwall, dcpu))
        _reads(dsn, d / "pg.checkpoints")
        search_reads(dsn)
        cwall, rows = copy_alone(dsn)
        print(
            f"PostgreSQL's own binary COPY of the same rows (2,500 per transaction, no "
            f"validation, masking or hashing): {rows / cwall:,.0f} rows/s"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 100_000)

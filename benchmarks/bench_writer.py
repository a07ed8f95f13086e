"""Writer ingest: validation + masking + chain + Merkle + batched insert, events/s, printed
beside naive row-at-a-time inserts of the same records measured in the same run.

    python benchmarks/bench_writer.py [N] [--no-cold]

Batches are prepared (validated, masked, encoded) by the Writer's prepare workers
(`store/pool.py`, one per core) while its thread chains and inserts, as the
server's kernel ingest does; a second run prepares in-process (``prepare_workers=0``).
Prints wall-clock rate and CPU time of this process (``time.process_time``: every thread,
DuckDB's included; the workers' CPU is not in it). The events
(benchmarks/_events.py) hold ~3,100 distinct cells, statements and commands that recur, as
real cells and statements do, and a unique URL and request body in every HTTP step: the
masking engine remembers the masked form of a text it sees again. A second run with that
result cache off shows the rate when every text is new (skip it with --no-cold).
"""

import gc
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _events import make_events  # noqa: E402

from jupyter_audit.masking import MaskingEngine, load_or_create_key  # noqa: E402
from jupyter_audit.store.pool import MIN_BATCH, default_workers  # noqa: E402
from jupyter_audit.store.signing import SigningKey  # noqa: E402
from jupyter_audit.store.writer import Writer  # noqa: E402


def _ingest(d: Path, name: str, events: list, workers=None, **engine) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for two producers (two kernels posting, as the server's
    ingest handlers do) to submit all events in batches of 1,000 and see every one
    acknowledged (committed)."""
    masker = MaskingEngine(load_or_create_key(d / "masking.key"), **engine)
    key = SigningKey.load_or_create(d / "signing-key.pem")
    w = Writer(d / name, masker, key, prepare_workers=workers).open()
    w.prepare_many(events[:MIN_BATCH])  # start the workers (a server starts them once)
    n = len(events)

    def produce(start: int) -> None:
        futs = [w.submit_batch(events[i : i + 1000]) for i in range(start, n, 2000)]
        for f in futs:
            f.result()

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(2) as producers:
        list(producers.map(produce, (0, 1000)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    w.close()
    return wall, cpu


def _storage_alone(d: Path) -> tuple[float, float, int]:
    """(wall, CPU, rows) to insert the trail's stored rows again into a fresh trail the way
    the writer does (column-wise from Arrow, one transaction per 2,500 rows), WAL folded in
    at the same threshold: what DuckDB alone costs per event on this machine."""
    import duckdb

    from jupyter_audit.store.schema import connect, initialise

    src = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
    table = src.sql("SELECT * FROM events ORDER BY seq").to_arrow_table()
    src.close()
    con = connect(d / "storage.duckdb")
    initialise(con)
    batches = table.to_batches(max_chunksize=2500)
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        con.execute("BEGIN")
        con.from_arrow(batch).insert_into("events")
        con.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    return wall, cpu, table.num_rows


def _line(label: str, n: int, wall: float, cpu: float) -> str:
    return (
        f"{label}: {n / wall:,.0f} events/s  "
        f"(wall {wall:.1f} s; CPU {cpu:.1f} s = {cpu / n * 1e6:.0f} µs/event)"
    )


def main(n: int = 200_000, cold: bool = True) -> None:
    events = make_events(n)
    # the input stays out of the cyclic GC's way (a server does not hold 200,000 events)
    gc.freeze()
    size = sum(len(str(e["payload"])) for e in events) / n
    d = Path(tempfile.mkdtemp(prefix="bench-writer-"))
    try:
        print(f"events: {n}, mean payload ~{size:.0f} bytes; cores: {os.cpu_count()}")
        wall, cpu = _ingest(d, "trail.duckdb", events)
        rate = n / wall
        print(_line(f"writer, {default_workers()} prepare worker(s)       ", n, wall, cpu))
        iwall, icpu = _ingest(d, "inproc.duckdb", events, workers=0)
        print(_line("  same, prepared in-process          ", n, iwall, icpu))
        if cold:
            cwall, ccpu = _ingest(d, "cold.duckdb", events, result_cache_size=0)
            print(_line("  same, masking result cache off     ", n, cwall, ccpu))

        # baseline: the same canonical records inserted one row per statement
        import duckdb

        con = duckdb.connect(str(d / "trail.duckdb"), read_only=True)
        rows = con.execute(
            "SELECT seq, kind, time, trace_id, kernel_id, notebook, msg_id, identity_id, "
            "event_id, hash, leaf, record FROM events ORDER BY seq LIMIT 20000"
        ).fetchall()
        con.close()
        naive = duckdb.connect(str(d / "naive.duckdb"))
        naive.execute(
            "CREATE TABLE events AS SELECT * FROM (VALUES (1::BIGINT, ''::VARCHAR, now()::TIMESTAMP, "
            "''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::VARCHAR, ''::BLOB, "
            "''::BLOB, ''::BLOB)) WHERE false"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for row in rows:
            naive.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
        nwall, ncpu = time.perf_counter() - t0, time.process_time() - c0
        naive_rate = len(rows) / nwall
        naive.close()
        print(
            f"naive row-at-a-time insert (no masking, no hashing): {naive_rate:,.0f} rows/s  "
            f"(wall {nwall:.1f} s; CPU {ncpu:.1f} s = {ncpu / len(rows) * 1e6:.0f} µs/row)"
        )
        swall, scpu, srows = _storage_alone(d)
        print(
            f"storage alone (the writer's sealed rows, Arrow insert + commit per 2,500, "
            f"no validation, masking or hashing): {srows / swall:,.0f} rows/s  "
            f"(CPU {scpu / srows * 1e6:.0f} µs/row)"
        )
        print(f"ratio writer / naive: {rate / naive_rate:.1f}x   (target: >= 50,000 events/s)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 200_000, cold="--no-cold" not in sys.argv)

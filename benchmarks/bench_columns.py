"""Bytes per event of each column of a trail's `events` table, from DuckDB's own account of
its storage (`pragma_storage_info`), beside the file's size and its unused blocks.

    python benchmarks/bench_columns.py TRAIL.duckdb [TRAIL2.duckdb ...]

A segment's bytes are the space up to the next segment in its block (or the block's end),
plus any whole blocks it spills into (`additional_block_ids`): what the column occupies in
the file, padding included. Segments not yet written to a block (in the WAL) count nothing:
run it on a closed trail.
"""

import sys
from collections import defaultdict

import duckdb


def column_bytes(con) -> tuple[dict[str, int], int]:
    """Bytes per column of `events` (validity masks included), and the row count."""
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    segs = con.execute(
        "SELECT column_name, block_id, block_offset, additional_block_ids "
        "FROM pragma_storage_info('events') WHERE persistent AND block_id >= 0"
    ).fetchall()
    by_block: dict[int, list[tuple[int, str]]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    for col, block, offset, extra in segs:
        by_block[block].append((offset, col))
        sizes[col] += block_size * len(extra or [])
    for entries in by_block.values():
        entries.sort()
        ends = [o for o, _ in entries[1:]] + [block_size]
        for (offset, col), end in zip(entries, ends, strict=True):
            sizes[col] += end - offset
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return dict(sizes), rows


def report(path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    try:
        sizes, rows = column_bytes(con)
        cols = [r[0] for r in con.execute("DESCRIBE events").fetchall()]
        compression = dict(
            con.execute(
                "SELECT column_name, string_agg(DISTINCT compression, '+') "
                "FROM pragma_storage_info('events') WHERE segment_type <> 'VALIDITY' GROUP BY 1"
            ).fetchall()
        )
        size = con.execute(
            "SELECT block_size, total_blocks, used_blocks, free_blocks FROM pragma_database_size()"
        ).fetchone()
    finally:
        con.close()
    block_size, total, used, free = size
    print(f"{path}: {rows:,} events")
    print(f"  {'column':12s} {'bytes/event':>12s} {'GiB/1M':>8s}  compression")
    for col in cols:
        b = sizes.get(col, 0)
        print(
            f"  {col:12s} {b / rows:12.1f} {b / rows * 1e6 / 2**30:8.3f}  {compression.get(col, '')}"
        )
    all_cols = sum(sizes.values())
    print(f"  {'all columns':12s} {all_cols / rows:12.1f} {all_cols / rows * 1e6 / 2**30:8.3f}")
    file_bytes = total * block_size
    print(
        f"  file blocks: {total} x {block_size // 1024} KiB = {file_bytes / rows:.1f} bytes/event "
        f"({file_bytes / rows * 1e6 / 2**30:.3f} GiB per million), {free} unused"
    )


if __name__ == "__main__":
    for p in sys.argv[1:]:
        report(p)

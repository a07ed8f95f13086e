"""Bytes per million events: the live trail, the live trail after archiving, the archive
(target <= 0.25 GiB per million), printed beside the live trail written by another commit's
code (default `main`) and the same records as plain zstd JSONL (a floor of sorts), in one run.

    python benchmarks/bench_storage.py [N] [--base REF] [DIR]

The events are benchmarks/_events.py's mix, written by the real Writer (`_seed.seed`) of this
tree and of REF (extracted with `git archive`, run in a process of its own). Archiving is
`jupyter audit archive --after 0d` on a copy of this tree's trail; the archive is then
verified with the live trail (`verify --archive --db`). Times are printed for orientation.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
GIB = 2**30


def per_million(nbytes: int, n: int) -> str:
    return f"{nbytes / n * 1e6 / GIB:6.3f} GiB per million ({nbytes / 2**20:,.1f} MiB)"


def seed_with(code: Path, d: Path, n: int) -> Path:
    """Seed a trail of n events with the Writer of the tree at `code`, in a process of its own."""
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); "
        f"from _seed import seed; seed(Path({str(d)!r}), {n})"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=code,
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return d / "trail.duckdb"


def tree_of(ref: str, dest: Path) -> Path:
    """The package and benchmarks of commit `ref`, extracted to `dest` (read-only use of git)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "jupyter_audit", "benchmarks"],
        capture_output=True,
        check=True,
    ).stdout
    tar = dest / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def live_bytes(db: Path) -> int:
    wal = db.with_name(db.name + ".wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def zstd_jsonl_bytes(db: Path, level: int) -> int:
    """The canonical records of the trail as JSONL, zstd-compressed in 64 MiB frames."""
    import duckdb
    import pyarrow as pa

    codec = pa.Codec("zstd", compression_level=level)
    con = duckdb.connect(str(db), read_only=True)
    total, buf = 0, bytearray()
    for batch in con.sql("SELECT record FROM events ORDER BY seq").to_arrow_reader(65536):
        for rec in batch.column(0).to_pylist():
            buf += rec
            buf += b"\n"
        if len(buf) > 64 * 2**20:
            total += len(codec.compress(bytes(buf), asbytes=True))
            buf.clear()
    if buf:
        total += len(codec.compress(bytes(buf), asbytes=True))
    con.close()
    return total


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_audit.cli", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    return time.perf_counter() - t0, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("dir", nargs="?", type=Path)
    ap.add_argument("--base", default="main", help="commit whose Writer is the baseline")
    args = ap.parse_args()
    n = args.n
    work = args.dir or Path(tempfile.gettempdir()) / f"bench-storage-{n}"
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    base_db = seed_with(tree_of(args.base, work / "base-code"), work / "base", n)
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    here_db = seed_with(REPO, work / "here", n)
    here_s = time.perf_counter() - t0

    copy = work / "archived"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(here_db.parent, copy)
    db = copy / "trail.duckdb"
    arch = copy / "archive"
    archive_s, p = cli("archive", "--db", str(db), "--to", str(arch), "--after", "0d")
    if p.returncode:
        sys.exit(f"archive failed: {p.stderr}")
    verify_s, v = cli("verify", "--archive", str(arch), "--db", str(db))
    parquet = sum(f.stat().st_size for f in arch.glob("*.parquet"))
    manifests = sum(f.stat().st_size for f in arch.glob("*.json"))
    floor1 = zstd_jsonl_bytes(here_db, 3)
    floor9 = zstd_jsonl_bytes(here_db, 9)

    print(f"{n:,} events (benchmarks/_events.py mix), bytes per million events:")
    print(f"  live trail, {args.base}'s code:           {per_million(live_bytes(base_db), n)}")
    print(f"  live trail, this tree:              {per_million(live_bytes(here_db), n)}")
    print(
        f"  archive (Parquet zstd + manifests): {per_million(parquet + manifests, n)}"
        "   target <= 0.25"
    )
    print(f"  live trail left after archiving:    {live_bytes(db) / 2**20:,.1f} MiB")
    print(f"  floor: records as JSONL, zstd -3:   {per_million(floor1, n)}")
    print(f"  floor: records as JSONL, zstd -9:   {per_million(floor9, n)}")
    print(
        f"seeding {base_s:.0f} s ({args.base}) / {here_s:.0f} s (this tree); archive run "
        f"{archive_s:.1f} s; verify --archive --db {verify_s:.1f} s (exit {v.returncode})"
    )
    print("  " + (v.stdout.strip().splitlines() or [v.stderr.strip()])[0])


if __name__ == "__main__":
    main()

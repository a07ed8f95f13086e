"""Seed a trail with N realistic events through the real Writer (reused across runs)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _events import make_events  # noqa: E402

from jupyter_audit.masking import MaskingEngine, load_or_create_key  # noqa: E402
from jupyter_audit.store.signing import SigningKey  # noqa: E402
from jupyter_audit.store.writer import Writer  # noqa: E402


def seed(
    d: Path, n: int, traces: int = 2000, long_trace_steps: int = 500, huge_trace_events: int = 0
) -> Path:
    """A trail of n events in d (kept: seeding millions takes minutes). One trace,
    `trace-long`, gets exactly `long_trace_steps` events spread over the whole trail; with
    `huge_trace_events`, one more, `trace-huge`, gets that many (every n // huge-th event)."""
    db = d / "trail.duckdb"
    marker = d / f"seeded-{n}"
    if marker.exists():
        return db
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    masker = MaskingEngine(load_or_create_key(d / "masking.key"))
    key = SigningKey.load_or_create(d / "signing-key.pem")
    t0 = time.perf_counter()
    chunk = 100_000
    every = max(1, n // long_trace_steps)
    huge_every = max(1, n // huge_trace_events) if huge_trace_events else 0
    with Writer(db, masker, key, verify_on_open=False) as w:
        done = 0
        while done < n:
            m = min(chunk, n - done)
            events = make_events(m, traces=traces, seed=done)
            for i in range(0, m, every):
                if (done + i) // every < long_trace_steps:
                    events[i]["trace_id"] = "trace-long"
            if huge_every:
                for i in range(1, m, huge_every):
                    if (done + i) // huge_every < huge_trace_events:
                        events[i]["trace_id"] = "trace-huge"
            futs = [w.submit_batch(events[i : i + 2000]) for i in range(0, m, 2000)]
            for f in futs:
                f.result()
            done += m
            print(
                f"  seeded {done:,} events ({done / (time.perf_counter() - t0):,.0f}/s)", flush=True
            )
    marker.touch()
    return db

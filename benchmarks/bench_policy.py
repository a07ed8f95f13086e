"""Micro-benchmark of the risk policy (a script, not a test).

    python benchmarks/bench_policy.py [--quick]

Prints CPU µs per call (process time: other load on a shared machine does not count), each
beside a baseline timed in the same run:
- server classification, cold (a Policy without a cache: lexing, every rule) and cached (the
  same statement again), for a 200-character SELECT (which, holding no write word, skips the
  lexer unless the deployment has SQL rules of its own), a SELECT calling replace() (a write
  word: the lexer must read it) and a 200-character risky UPDATE;
  baseline: sqlparse's own `parse()[0].get_type()`, the usual way to ask sqlparse;
- the kernel prefilter `might_write` on a 200-character SELECT (the path every harmless
  statement takes) and on one with write words inside strings and comments (the slow path);
  baseline: one case-insensitive regular expression for a single keyword.
Targets (issue 14): cold <= 1.5 ms, cached <= 5 µs, prefilter <= 5 µs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sqlparse  # noqa: E402

from jupyter_audit.kernel.prefilter import might_write  # noqa: E402
from jupyter_audit.policy import Policy  # noqa: E402

SELECT_200 = (
    "SELECT c.id, c.region, sum(o.amount) AS total FROM customers c JOIN orders o "
    "ON o.customer_id = c.id WHERE o.created_at > '2024-01-01' AND c.region = 'EU' "
    "GROUP BY 1, 2 ORDER BY total DESC LIMIT 100"
)
UPDATE_200 = (
    "UPDATE customers SET segment = 'churned', updated_at = now() -- WHERE id = 7\n"
    "/* reviewed? */ FROM orders o WHERE o.customer_id = customers.id OR 1 = 1 "
    "RETURNING customers.id, customers.segment, o.amount"
)
REPLACE_200 = (
    "SELECT c.id, replace(c.name, '-', ' ') AS name, sum(o.amount) AS total FROM customers c "
    "JOIN orders o ON o.customer_id = c.id WHERE o.created_at > '2024-01-01' GROUP BY 1, 2 "
    "ORDER BY total DESC"
)
QUOTED_200 = (
    "SELECT id, note FROM tickets WHERE note LIKE '%DROP TABLE%' OR note LIKE '%delete from%' "
    '-- find tickets that talk about update or truncate\n AND "insert" IS NOT NULL ORDER BY id'
)


def per_call(fn, number: int, repeat: int) -> float:
    """Median CPU µs per call over `repeat` runs of `number` calls. CPU time (not wall time):
    on a machine shared with other test runs, waiting for a core is not the code's cost."""
    runs = timeit.repeat(fn, number=number, repeat=repeat, timer=time.process_time)
    return statistics.median(t / number * 1e6 for t in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 3 if args.quick else 7
    cold_n, warm_n = (100, 20_000) if args.quick else (400, 100_000)
    for s in (SELECT_200, REPLACE_200, UPDATE_200, QUOTED_200):
        print(f"statement: {len(s)} chars: {s[:50]!r}…")
    print()
    cold = Policy(review_possible=True, cache_size=0)
    warm = Policy(review_possible=True)
    print(
        f"{'server classification':44} {'µs/call':>10} {'target':>9}   baseline (sqlparse parse+get_type)"
    )
    for name, s in (
        ("SELECT (no write word: no lexing)", SELECT_200),
        ("SELECT with replace() (lexed)", REPLACE_200),
        ("risky UPDATE", UPDATE_200),
    ):
        assert cold.check_sql(s).action == ("review" if name == "risky UPDATE" else "allow")
        base = per_call(lambda s=s: sqlparse.parse(s)[0].get_type(), cold_n // 4, repeat)
        t = per_call(lambda s=s: cold.check_sql(s), cold_n, repeat)
        print(f"  cold, {name:37} {t:10.1f} {'1500':>9}   {base:10.1f}")
        warm.check_sql(s)
        t = per_call(lambda s=s: warm.check_sql(s), warm_n, repeat)
        print(f"  cached, {name:35} {t:10.2f} {'5':>9}   {base:10.1f}")
    print()
    one = re.compile(r"\bdelete\b", re.IGNORECASE)
    print(
        f"{'kernel prefilter might_write':44} {'µs/call':>10} {'target':>9}   baseline (one-keyword regex)"
    )
    for name, s in (("plain SELECT", SELECT_200), ("write words in strings/comments", QUOTED_200)):
        assert might_write(s) is False
        base = per_call(lambda s=s: one.search(s), warm_n, repeat)
        t = per_call(lambda s=s: might_write(s), warm_n, repeat)
        print(f"  {name:42} {t:10.2f} {'5':>9}   {base:10.2f}")


if __name__ == "__main__":
    main()

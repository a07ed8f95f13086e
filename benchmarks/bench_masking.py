"""Micro-benchmark of the masking engine (a script, not a test).

    python benchmarks/bench_masking.py [--quick]

Prints µs per call of ``mask_text`` and ``mask()`` on realistic payloads, clean and with PII,
"full" (every recognizer's whole search, nothing remembered: ``prescreen=False``, result
cache disabled), "cold" (every text is new, with the exact pre-screens that skip searches
which cannot find anything) and "warm" (the same text again: served from the result cache, as
for a re-run cell or a statement executed in a loop; a text is remembered from its second
occurrence on), and the events/s of ``mask()`` on typical event payload dicts whose big field
differs every time. ``bench_sql_aware`` adds the SQL-aware (structure) step: µs per
``op.sql`` payload whose statement has literals or parameters, cold (a new statement every
time) and warm (a statement seen before: its reading is remembered).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jupyter_audit.masking import MaskingEngine  # noqa: E402

KEY = bytes(range(32))

CLEAN_CODE = """import pandas as pd
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.linear_model import LogisticRegression

df = pd.read_csv("data/customers_2024.csv", parse_dates=["signup_date"])
df = df.dropna(subset=["age", "income"])
df["income_k"] = df["income"] / 1000
df["tenure_months"] = (pd.Timestamp("2024-06-30") - df["signup_date"]).dt.days // 30
X = df[["age", "income_k", "tenure_months"]].values
y = df["churned"].astype(int).values
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

class ChurnModel:
    def __init__(self, c=1.0):
        self.clf = LogisticRegression(C=c, max_iter=500)

    @property
    def name(self):
        return "logreg"

    def fit(self, X, y):
        self.clf.fit(X, y)
        return self

model = ChurnModel(c=0.5).fit(X_train, y_train)
scores = model.clf.predict_proba(X_test)[:, 1]
print(f"{model.name}: auc={roc_auc_score(y_test, scores):.3f} n={len(y_test)}")
"""

CLEAN_SQL = """SELECT c.customer_id, c.region, c.segment, SUM(o.amount) AS total_amount,
       COUNT(*) AS n_orders, MAX(o.created_at) AS last_order_at
FROM sales.orders o
JOIN sales.customers c ON c.customer_id = o.customer_id
LEFT JOIN sales.returns r ON r.order_id = o.order_id
WHERE o.created_at >= DATE '2024-01-01' AND o.created_at < DATE '2024-07-01'
  AND o.status IN ('paid', 'shipped', 'delivered') AND r.order_id IS NULL
GROUP BY c.customer_id, c.region, c.segment
HAVING SUM(o.amount) > 1000
ORDER BY total_amount DESC
LIMIT 100;
WITH recent AS (
  SELECT user_id, event_type, ts FROM analytics.events WHERE ts > now() - INTERVAL '7 days'
)
SELECT event_type, COUNT(DISTINCT user_id) AS users, COUNT(*) AS events
FROM recent GROUP BY event_type ORDER BY events DESC;
UPDATE inventory.stock SET quantity = quantity - 1 WHERE sku = 'ABC-123' AND warehouse_id = 7;
"""

PII_CODE = CLEAN_CODE.replace(
    'df = pd.read_csv("data/customers_2024.csv", parse_dates=["signup_date"])',
    'engine = create_engine("postgresql://etl:Tr0ub4dor&3@db.internal:5432/sales")\n'
    "df = pd.read_sql(\"SELECT * FROM customers WHERE email = 'alice.smith@example.com'\", engine)",
).replace(
    'y = df["churned"].astype(int).values',
    'API_KEY = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a"\ny = df["churned"].astype(int).values',
)

PII_SQL = CLEAN_SQL.replace(
    "AND r.order_id IS NULL",
    "AND r.order_id IS NULL AND c.email IN ('bob@example.com', 'carol.jones@example.org')\n"
    "  AND c.card_number <> '4111 1111 1111 1111'",
)

FLOAT_BODY = (
    '{"features": [' + ", ".join(str((i * 0.6180339887498949) % 1) for i in range(60)) + "]}"
)
URL = "https://api.example.org/v1/score/12345?region=eu&page=2"

SHORT_FIELDS = [
    "psycopg2",
    "analytics",
    "SELECT",
    "sales.orders",
    "GET",
    "ok",
    "notebooks/churn.ipynb",
]


def _bench(fn, items, min_time: float) -> float:
    """µs per call of fn over items (cycled), best of 5 rounds of CPU time (process_time, so
    other processes competing for the CPU do not count)."""
    items = list(items)
    n = max(1, len(items))
    best = float("inf")
    for _ in range(5):
        calls = 0
        start = time.process_time()
        while True:
            for it in items:
                fn(it)
            calls += n
            elapsed = time.process_time() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best * 1e6


def _variants(text: str, count: int) -> list[str]:
    """Distinct texts of the same shape (so no cache answers)."""
    return [text.replace("100", str(100 + i), 1) + f"\n# run {i}" for i in range(count)]


def _events(count: int) -> list[dict]:
    out = []
    for i, kind in zip(range(count), itertools.cycle(("sql", "cell", "http")), strict=False):
        if kind == "sql":
            statement = CLEAN_SQL[: 300 + (i * 37) % 700].replace("100", str(i))
            out.append(
                {
                    "driver": "psycopg2",
                    "database": "analytics",
                    "statement": statement,
                    "params": [i, "paid", "2024-01-01"],
                    "statement_type": "SELECT",
                    "tables": ["sales.orders", "sales.customers"],
                    "rowcount": i % 500,
                    "duration_us": 1200 + i,
                    "error": None,
                }
            )
        elif kind == "cell":
            code = CLEAN_CODE[: 300 + (i * 53) % 900] + f"\nprint({i})"
            out.append({"code": code, "execution_count": i, "status": "ok"})
        else:
            out.append(
                {
                    "method": "GET",
                    "url": f"https://api.example.com/v1/items/{i}?page=2&api_key=k{i:08d}",
                    "status": 200,
                    "duration_us": 5400 + i,
                    "headers": {"Authorization": f"Bearer tok{i}", "Accept": "application/json"},
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    min_time = 0.05 if args.quick else 0.3

    full = MaskingEngine(KEY, result_cache_size=0, prescreen=False)
    cold = MaskingEngine(KEY, result_cache_size=0)
    warm = MaskingEngine(KEY)
    print(f"python {sys.version.split()[0]}, {len(cold.recognizers)} recognizers")
    print(f"{'payload':34} {'chars':>6} {'full µs':>9} {'cold µs':>9} {'warm µs':>9}")
    rows = [
        ("python code, clean", CLEAN_CODE),
        ("SQL, clean", CLEAN_SQL),
        ("python code, 4 PII items", PII_CODE),
        ("SQL, 3 PII items", PII_SQL),
        ("HTTP body of 60 floats", FLOAT_BODY),
        ("URL", URL),
    ]
    for label, text in rows:
        variants = _variants(text, 64)
        f = _bench(full.mask_text, variants, min_time)
        c = _bench(cold.mask_text, variants, min_time)
        w = _bench(warm.mask_text, [text], min_time)
        print(f"mask_text {label:24} {len(text):6d} {f:9.2f} {c:9.2f} {w:9.2f}")
    f = _bench(full.mask_text, SHORT_FIELDS, min_time)
    c = _bench(cold.mask_text, SHORT_FIELDS, min_time)
    w = _bench(warm.mask_text, SHORT_FIELDS, min_time)
    avg = sum(map(len, SHORT_FIELDS)) // len(SHORT_FIELDS)
    print(f"mask_text {'short field (avg)':24} {avg:6d} {f:9.2f} {c:9.2f} {w:9.2f}")
    # 10 MB
    big = (CLEAN_SQL + PII_CODE) * (10_000_000 // len(CLEAN_SQL + PII_CODE))
    start = time.perf_counter()
    cold.mask_text(big)
    print(f"mask_text 10 MB mixed text: {(time.perf_counter() - start) * 1000:.0f} ms")

    events = _events(3000)
    sizes = [len(str(e)) for e in events]
    print(
        f"\nmask() on {len(events)} distinct event payloads (sql/cell/http), "
        f"{min(sizes)}-{max(sizes)} chars, mean {sum(sizes) // len(sizes)}:"
    )
    for label, engine in (
        ("default engine", MaskingEngine(KEY)),
        ("no result cache", cold),
        ("full (reference)", full),
    ):
        per = _bench(engine.mask, events, min_time)
        print(f"  {label:16} {per:7.2f} µs/event  {1e6 / per:10,.0f} events/s")
    pii_event = {
        "driver": "psycopg2",
        "database": "analytics",
        "statement": PII_SQL,
        "params": ["bob@example.com", 42],
        "statement_type": "SELECT",
        "tables": ["sales.orders"],
        "rowcount": 3,
        "duration_us": 1500,
        "error": None,
    }
    per = _bench(cold.mask, [pii_event], min_time)
    print(f"  {'SQL event w/ PII':16} {per:7.2f} µs/event  {1e6 / per:10,.0f} events/s (cold)")


SQL_AWARE = [
    (
        "INSERT, 6 columns, params",
        "INSERT INTO crm.customers (customer_id, first_name, last_name, email, phone, "
        "card_number) VALUES (?, ?, ?, ?, ?, ?)",
        [100, "Ann", "Lee", "ann.lee@example.com", "+1 415 555 0100", "4111111111111111"],
    ),
    (
        "SELECT, literals",
        "SELECT c.customer_id, c.segment, SUM(o.amount) FROM sales.orders o JOIN crm.customers c "
        "ON c.customer_id = o.customer_id WHERE c.last_name = 'Lee' AND c.email LIKE '%@x.io' "
        "AND o.status IN ('paid', 'shipped') AND o.amount > 100 GROUP BY 1, 2",
        None,
    ),
    (
        "UPDATE, named params",
        "UPDATE crm.customers SET full_name = %(name)s, phone = %(phone)s, updated_at = now() "
        "WHERE customer_id = %(id)s AND account_id = %(account)s",
        {"name": "Ann Lee", "phone": "555 0100", "id": 100, "account": 7},
    ),
    (
        "SELECT, no sensitive column",
        "SELECT order_id, amount FROM sales.orders WHERE created_at >= ? AND status = 'paid' "
        "AND amount > 100",
        ["2024-01-01"],
    ),
]


def bench_sql_aware(min_time: float) -> None:
    """µs per op.sql payload through the structure step alone (``mask_structure``) and
    through both steps (``mask(mask_structure(...))``) beside ``mask()`` alone, cold and
    warm. Budget: <= 500 µs per statement with literals or parameters."""
    print("\nSQL-aware masking, µs per op.sql payload (budget 500 µs for the structure step):")
    print(f"{'statement':30} {'chars':>5} {'struct cold':>11} {'struct warm':>11} "
          f"{'both cold':>9} {'text only':>9}")  # fmt: skip
    for label, statement, params in SQL_AWARE:
        payloads = [
            {"driver": "psycopg2", "statement": v, "params": params}
            for v in _variants(statement, 64)
        ]
        cold = MaskingEngine(KEY, result_cache_size=0)
        structure = cold._structure.sql  # noqa: SLF001 - its reading cache, cleared for "cold"

        def struct_cold(p, cold=cold, structure=structure):
            structure._cache.clear()  # noqa: SLF001
            return cold.mask_structure("op.sql", p)

        def both_cold(p, cold=cold, structure=structure):
            structure._cache.clear()  # noqa: SLF001
            return cold.mask(cold.mask_structure("op.sql", p))

        sc = _bench(struct_cold, payloads, min_time)
        warm = MaskingEngine(KEY)
        sw = _bench(lambda p, warm=warm: warm.mask_structure("op.sql", p), payloads[:1], min_time)
        bc = _bench(both_cold, payloads, min_time)
        tc = _bench(cold.mask, payloads, min_time)
        print(f"{label:30} {len(statement):5d} {sc:11.1f} {sw:11.1f} {bc:9.1f} {tc:9.1f}")


if __name__ == "__main__":
    main()
    bench_sql_aware(0.05 if "--quick" in sys.argv else 0.3)

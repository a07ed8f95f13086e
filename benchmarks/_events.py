"""Realistic synthetic events for the benchmarks: cells, SQL, HTTP and shell steps with
300-2,000-byte payloads, a little PII, several users and traces."""

import random

USERS = [
    {
        "username": f"user{i}",
        "email": f"user{i}@example.org",
        "auth_method": "oidc",
        "issuer": "https://idp.example.org",
        "subject": f"sub-{i}",
        "groups": ["data-science"],
    }
    for i in range(20)
]

CODE = """import pandas as pd
df = pd.read_sql('SELECT customer_id, region, SUM(amount) AS total FROM sales.orders '
                 'WHERE order_date >= %(start)s GROUP BY 1, 2', con, params={'start': start})
model = fit_churn(df, features=['tenure', 'plan', 'region'], target='churned')
print(model.summary())  # contact: analyst.team@example.org
"""

SQL = (
    "SELECT o.order_id, o.customer_id, c.segment, o.amount, o.currency, o.created_at "
    "FROM sales.orders o JOIN crm.customers c ON c.id = o.customer_id "
    "WHERE o.created_at BETWEEN ? AND ? AND c.segment IN ('enterprise', 'smb') "
    "ORDER BY o.created_at DESC LIMIT 500"
)


def make_events(n: int, traces: int = 200, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = rnd.randrange(traces)
        who = USERS[t % len(USERS)]
        base = {
            "identity": who,
            "trace_id": f"trace-{t:05d}",
            "kernel_id": f"kernel-{t:05d}",
            "notebook": f"projects/p{t % 37}/analysis-{t}.ipynb",
            "msg_id": f"msg-{t}-{i // 5}",
            "op_index": i,
        }
        r = i % 4
        if r == 0:
            code = CODE * rnd.randint(1, 4)
            out.append(
                {
                    **base,
                    "kind": "cell.finished",
                    "payload": {
                        "code": code[: rnd.randint(300, 2000)],
                        "execution_count": i,
                        "status": "ok",
                        "duration_us": rnd.randint(100, 10**7),
                    },
                }
            )
        elif r == 1:
            stmt = SQL + " -- " + "x" * rnd.randint(0, 1400)
            out.append(
                {
                    **base,
                    "kind": "op.sql",
                    "payload": {
                        "driver": "psycopg",
                        "database": "postgresql://analytics@db/prod",
                        "statement": stmt,
                        "params": ["2026-01-01", "2026-06-30"],
                        "rowcount": rnd.randint(0, 500),
                        "duration_us": rnd.randint(50, 10**6),
                    },
                }
            )
        elif r == 2:
            out.append(
                {
                    **base,
                    "kind": "op.http",
                    "payload": {
                        "method": "POST",
                        "url": f"https://api.example.org/v1/score/{i}?region=eu",
                        "status": 200,
                        "duration_us": rnd.randint(1000, 10**6),
                        "request_body": (
                            '{"features": ['
                            + ", ".join(str(rnd.random()) for _ in range(rnd.randint(10, 90)))
                            + "]}"
                        ),
                    },
                }
            )
        else:
            out.append(
                {
                    **base,
                    "kind": "op.shell",
                    "payload": {
                        "command": "python scripts/train.py --epochs 10 --out models/m.pkl "
                        + " ".join(f"--opt{k}=v{k}" for k in range(rnd.randint(10, 80))),
                        "exit_code": 0,
                        "duration_us": rnd.randint(10**4, 10**7),
                    },
                }
            )
    return out

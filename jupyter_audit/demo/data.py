"""The demo world's sample database: a sqlite shop of fake customers and their orders.

The e-mail addresses and phone numbers are fake (example.com, the 555-01xx range) but shaped
like real ones, so the notebook's queries show masking at work: none of them, and none of the
names (masked by their column), may ever be found unmasked in the trail
(tests/e2e/test_demo.py reads the trail file's bytes for them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# (id, name, email, phone, country)
CUSTOMERS = [
    (1, "Jane Doe", "jane.doe@example.com", "+1 415 555 0142", "US"),
    (2, "Omar Haddad", "omar.haddad@example.com", "+1 212 555 0187", "US"),
    (3, "Mei Tanaka", "mei.tanaka@example.com", "+44 20 7946 0958", "GB"),
    (4, "Lucas Moreau", "lucas.moreau@example.com", "+1 646 555 0110", "US"),
    (5, "Ana Souza", "ana.souza@example.com", "+44 20 7946 0321", "GB"),
    (6, "Tom Becker", "tom.becker@example.com", "+1 303 555 0164", "US"),
]

# (id, customer_id, amount, status)
ORDERS = [
    (101, 1, 120.50, "paid"),
    (102, 1, 89.99, "paid"),
    (103, 2, 1540.00, "chargeback"),
    (104, 3, 42.00, "paid"),
    (105, 2, 980.00, "chargeback"),
    (106, 4, 15.25, "paid"),
    (107, 5, 310.00, "refunded"),
    (108, 6, 77.70, "paid"),
    (109, 2, 2200.00, "pending"),
]

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    amount REAL NOT NULL, status TEXT NOT NULL
);
-- a scratch copy of flagged orders the analysis builds; the notebook empties it at the end
CREATE TABLE review_queue (order_id INTEGER PRIMARY KEY, reason TEXT NOT NULL);
"""


def fake_pii() -> list[str]:
    """Every name, e-mail address and phone number in the sample data."""
    return [value for c in CUSTOMERS for value in c[1:4]]


def create_shop(path: Path) -> Path:
    """Write the sample shop database at `path` (replacing an earlier one)."""
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.executescript(SCHEMA)
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ORDERS)
        con.commit()
    finally:
        con.close()
    return path

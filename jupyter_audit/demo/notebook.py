"""The demo world's notebooks and script, written with nbformat into the notebooks folder.

`reasoning_chain.ipynb` (the data scientist's): queries that print customers' e-mails and
phones (masked in the trail), a lookup by e-mail, a call to the risk API, a shell script,
and a `DELETE` without `WHERE` that waits for a reviewer's approval. `contractor_job.ipynb`
(run by the contractor's service token): a query and a POST of scores to the API.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

REASONING_CHAIN = "reasoning_chain.ipynb"
CONTRACTOR_JOB = "contractor_job.ipynb"
REPORT_SCRIPT = "report.sh"

_INTRO = """# Why are this customer's orders held for review?

A small reasoning chain through the demo shop: who has chargebacks, what the risk API says
about them, a report script, and a clean-up. Run the cells in order (Shift+Enter). Every
cell, query, API call and command is recorded against your sign-in; customers' names,
e-mail addresses and phone numbers are masked in the trail. The last step, a `DELETE`
without `WHERE`, waits until a reviewer (not you) approves it: open the audit trail panel
in the left sidebar."""


def _setup(api_url: str) -> str:
    return (
        "import csv\nimport json\nimport sqlite3\nimport urllib.request\n\n"
        f'API = "{api_url}"  # the demo\'s risk-scoring service (a local stub)\n'
        'con = sqlite3.connect("shop.db")'
    )


_CHARGEBACKS = '''# 1. who has chargebacks? (names, e-mails, phones printed: the trail masks them)
rows = con.execute("""
    SELECT c.id, c.name, c.email, c.phone, count(*) AS chargebacks, sum(o.amount) AS total
    FROM customers c JOIN orders o ON o.customer_id = c.id
    WHERE o.status = 'chargeback' GROUP BY c.id ORDER BY total DESC
""").fetchall()
for row in rows:
    print(row)'''

_LOOKUP = """# 2. the customer a colleague asked about, by e-mail
customer = con.execute(
    "SELECT id, name FROM customers WHERE email = ?", ("omar.haddad@example.com",)
).fetchone()
customer"""

_RISK = """# 3. what does the risk service say?
with urllib.request.urlopen(f"{API}/risk-score?customer_id={customer[0]}") as response:
    risk = json.load(response)
risk"""

_QUEUE = """# 4. queue the customer's chargebacks for review; write them out for the report
con.execute(
    "INSERT INTO review_queue SELECT id, 'chargeback' FROM orders "
    "WHERE customer_id = ? AND status = 'chargeback'",
    (customer[0],),
)
con.commit()
queued = con.execute("SELECT order_id, reason FROM review_queue").fetchall()
with open("flagged.csv", "w", newline="") as f:
    csv.writer(f).writerows(queued)
queued"""

_REPORT = """# 5. the team's report script
!bash report.sh flagged.csv"""

_DELETE = """# 6. the review team has the list: empty the queue. A DELETE without WHERE is risky:
# this cell waits here until a reviewer approves it (the audit trail panel, or the CLI)
removed = con.execute("DELETE FROM review_queue").rowcount
con.commit()
print("removed", removed, "row(s) from the review queue")"""

_CONCLUSION = """# 7. the decision, for the record
print(f"customer {customer[0]}: risk {risk['band']} ({risk['score']}); orders held for review")"""

_REPORT_SH = """#!/bin/bash
# The demo's report script: how many orders a CSV file lists, and when it was made.
set -eu
echo "review report $(date -u +%Y-%m-%dT%H:%MZ)"
echo "orders flagged: $(wc -l < "$1")"
"""


def _contractor_cells(api_url: str) -> list[str]:
    return [
        _setup(api_url),
        "# nightly scoring job: paid totals per customer\n"
        "totals = con.execute(\n"
        "    \"SELECT customer_id, sum(amount) FROM orders WHERE status = 'paid' \"\n"
        '    "GROUP BY customer_id"\n'
        ").fetchall()\n"
        'scores = [{"customer_id": c, "score": round(min(t / 500, 1), 2)} for c, t in totals]',
        "# push the scores to the scoring service\n"
        "request = urllib.request.Request(\n"
        '    f"{API}/scores",\n'
        "    data=json.dumps(scores).encode(),\n"
        '    headers={"Content-Type": "application/json"},\n'
        '    method="POST",\n'
        ")\n"
        "with urllib.request.urlopen(request) as response:\n"
        "    print(json.load(response))",
    ]


def _notebook(markdown: str | None, cells: list[str]):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    nb.cells += [nbformat.v4.new_code_cell(code) for code in cells]
    return nb


def write_notebooks(folder: Path, api_url: str) -> dict[str, Path]:
    """Write the demo notebooks and the report script into `folder`."""
    chain = _notebook(
        _INTRO,
        [_setup(api_url), _CHARGEBACKS, _LOOKUP, _RISK, _QUEUE, _REPORT, _DELETE, _CONCLUSION],
    )
    job = _notebook(None, _contractor_cells(api_url))
    paths = {
        "chain": folder / REASONING_CHAIN,
        "contractor": folder / CONTRACTOR_JOB,
        "script": folder / REPORT_SCRIPT,
    }
    nbformat.write(chain, str(paths["chain"]))
    nbformat.write(job, str(paths["contractor"]))
    paths["script"].write_text(_REPORT_SH)
    paths["script"].chmod(0o755)
    return paths

"""policy/: which operations are risky and what happens to them (allow, warn, review, deny).

Pure: no tornado, no trail. `Policy.check_sql/check_shell/check_http` -> `Decision`; the
SQL classifier (sql.py over sqlparser.py, the one module that uses sqlparse), the shell
classifier (shell.py) and configured rules (rules.py). docs/policy.md lists the rule ids.
"""

from __future__ import annotations

from .decision import ACTIONS, Decision, Reason
from .engine import REVIEW_HINT, Policy
from .rules import RuleError

__all__ = ["ACTIONS", "REVIEW_HINT", "Decision", "Policy", "Reason", "RuleError"]

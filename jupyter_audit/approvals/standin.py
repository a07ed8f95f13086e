"""A stand-in for `jupyter_audit.policy` (branch i14-policy) while that package is not merged:
the same names and signatures (Reason, Decision, Policy.check_sql/check_shell/check_http,
`review_possible`), a crude keyword rule set. Deleted once the policy package lands; nothing
imports it when `jupyter_audit.policy` exists."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from traitlets import Bool
from traitlets.config import LoggingConfigurable


@dataclass(frozen=True)
class Reason:
    rule: str
    message: str
    action: str
    tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[Reason, ...]
    min_approvals: int = 1

    def to_json(self) -> dict:
        return {
            "decision": self.action,
            "reasons": [
                {"rule": r.rule, "message": r.message, "action": r.action, "tables": list(r.tables)}
                for r in self.reasons
            ],
            "min_approvals": self.min_approvals,
        }


_DELETE = re.compile(r"^\s*delete\s+from\s+(\w+)\s*;?\s*$", re.I)
_DROP = re.compile(r"^\s*drop\s+table\s+(\w+)", re.I)


class Policy(LoggingConfigurable):
    review_possible = Bool(False, help="Set by the server: someone else can decide.")

    def _outcome(self, reason: Reason) -> Decision:
        if reason.action == "review" and not self.review_possible:
            return Decision("warn", (Reason(reason.rule, reason.message, "warn", reason.tables),))
        return Decision(reason.action, (reason,))

    def check_sql(self, statement: str, *, groups: Sequence[str] = (), database=None) -> Decision:
        if m := _DELETE.match(statement):
            t = m.group(1)
            return self._outcome(
                Reason("statement.where-required", f"DELETE without WHERE on {t}", "review", (t,))
            )
        if m := _DROP.match(statement):
            t = m.group(1)
            return self._outcome(Reason("table.drop", f"DROP TABLE {t}", "review", (t,)))
        return Decision("allow", ())

    def check_shell(self, command: str, *, groups: Sequence[str] = ()) -> Decision:
        if "rm -rf" in command:
            return self._outcome(Reason("shell.rm-recursive", "rm -rf", "review"))
        return Decision("allow", ())

    def check_http(self, method: str, url: str, *, groups: Sequence[str] = ()) -> Decision:
        if method.upper() == "DELETE":
            return self._outcome(Reason("http.delete", f"DELETE {url}", "review"))
        return Decision("allow", ())

"""What the policy answers: a Decision (allow, warn, review, deny) and the Reasons for it.

Pure values, shared with the approval broker, the kernel protocol and the CLI; `to_json()` is
the wire and `--json` shape (shared/DESIGN.md). Messages name rules, statement kinds and
tables, never literal values, so a reason can be shown or recorded without masking.
"""

from __future__ import annotations

from dataclasses import dataclass

# in increasing severity: a decision is the most severe of its reasons' actions
ACTIONS: tuple[str, ...] = ("allow", "warn", "review", "deny")
SEVERITY: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that matched: `rule` is a stable id (`statement.where-required`)."""

    rule: str
    message: str
    action: str
    tables: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "message": self.message,
            "action": self.action,
            "tables": list(self.tables),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer for one operation (all statements of a SQL string together)."""

    action: str
    reasons: tuple[Reason, ...] = ()
    min_approvals: int = 1

    def __post_init__(self) -> None:
        if self.action not in SEVERITY:
            raise ValueError(f"unknown action {self.action!r}; one of {', '.join(ACTIONS)}")

    @property
    def rules(self) -> tuple[str, ...]:
        """The ids of the rules behind the decision, once each, in order."""
        return tuple(dict.fromkeys(r.rule for r in self.reasons))

    def to_json(self) -> dict:
        return {
            "decision": self.action,
            "reasons": [r.to_json() for r in self.reasons],
            "min_approvals": self.min_approvals,
        }
